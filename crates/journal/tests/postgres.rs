//! The PostgreSQL backend's own cases (beside the conformance suite both backends pass): used
//! from inside a tokio runtime, and the locations it refuses with a clear error.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "postgres")]

use crate::common::*;
use vmove_core::Selection;
use vmove_journal::{Backend, Journal, JournalError};

fn server() -> Option<&'static pg_server::Server> {
    let s = pg_server::server();
    if s.is_none() {
        eprintln!("skipped: no PostgreSQL");
    }
    s
}

/// The CLI calls the journal from its main task: the blocking client must work there.
#[tokio::test(flavor = "current_thread")]
async fn a_postgres_journal_works_from_inside_a_tokio_runtime() {
    let Some(s) = server() else { return };
    let url = s.fresh_database("inside_tokio");
    let clock = clock();
    let mut j = open_as(std::path::Path::new(&url), &clock, other(1));
    assert_eq!(j.backend(), Backend::Postgres);
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    assert_eq!(j.runs().unwrap().len(), 1);
    assert_eq!(j.schema_version().unwrap(), vmove_journal::schema::LATEST);
}

#[test]
fn an_unreachable_server_is_a_clear_error_naming_the_location() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgresql://vmove@/journal?host={}", dir.path().display());
    let e = Journal::open(&url).unwrap_err();
    assert!(matches!(e, JournalError::OpenDatabase { .. }), "{e:?}");
    let msg = e.chain();
    assert!(
        msg.starts_with(&format!(
            "could not open the journal at {}: error connecting to server",
            vmove_journal::location::redact(&url)
        )),
        "{msg}"
    );
}

#[test]
fn a_password_in_the_location_is_refused_before_connecting_and_never_shown() {
    for url in [
        "postgresql://vmove:hunter2@127.0.0.1:1/journal",
        "postgres://vmove@127.0.0.1:1/journal?password=hunter2",
    ] {
        let e = Journal::open(url).unwrap_err();
        assert!(
            matches!(e, JournalError::PasswordInLocation { .. }),
            "{e:?}"
        );
        let msg = e.chain();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(
            msg.contains("PGPASSWORD") && msg.contains(".pgpass"),
            "{msg}"
        );
    }
}

#[test]
fn reopening_a_migrated_database_keeps_its_version_and_runs() {
    let Some(s) = server() else { return };
    let url = s.fresh_database("reopen");
    let clock = clock();
    {
        let mut j = open_as(std::path::Path::new(&url), &clock, other(1));
        j.create_run(&new_run("r1", Selection::All)).unwrap();
    }
    let j = Journal::open(&url).unwrap();
    assert_eq!(j.schema_version().unwrap(), vmove_journal::schema::LATEST);
    assert_eq!(j.runs().unwrap()[0].id, "r1");
    // Shown with its user information hidden, like every URI vmove writes.
    assert_eq!(j.location(), vmove_journal::location::redact(&url));
    assert!(!j.location().contains("vmove@"));
}
