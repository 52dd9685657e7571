//! A PostgreSQL journal whose server goes away and comes back (its own test binary: it stops
//! the binary's throw-away server). While the server is down every call fails with an error
//! naming the (redacted) location, none panics; once it is back the same handle connects again
//! at its next transaction and goes on writing, and what was written before is all there.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "postgres")]

use crate::common::*;
use vmove_core::Selection;

#[test]
fn a_journal_handle_outlives_a_server_restart() {
    let Some(server) = pg_server::outage_server() else {
        eprintln!("skipped: no PostgreSQL");
        return;
    };
    let url = server.fresh_database("outage");
    let path = std::path::Path::new(&url);
    let clock = clock();
    let mut j = open_as(path, &clock, other(1));
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let steps = script("r1", "u", 2);
    let half = steps.len() / 2;
    let mut ids = Vec::new();
    write_steps(&mut j, "r1", &steps[..half], &mut ids);

    server.stop();
    // The first call finds the connection closed (the server's own words: "terminating
    // connection due to administrator command"); the next ones cannot connect again and say
    // which journal.
    let first = j.refresh_lease("r1").unwrap_err().chain();
    assert!(first.starts_with("PostgreSQL: "), "{first}");
    for _ in 0..3 {
        let e = j.refresh_lease("r1").unwrap_err().chain();
        assert!(
            e.contains(&vmove_journal::location::redact(&url)),
            "the error names the journal: {e}"
        );
        assert!(j.runs().is_err());
    }

    server.restart();
    j.refresh_lease("r1").unwrap();
    write_steps(&mut j, "r1", &steps[half..], &mut ids);
    let rec = j.load_run("r1").unwrap();
    assert_eq!(rec.entries.len(), steps.len());
    assert_consistent(&rec);
    // Another process sees the same.
    let other = open_as(path, &clock, other(2));
    assert_eq!(other.load_run("r1").unwrap().entries.len(), steps.len());
}
