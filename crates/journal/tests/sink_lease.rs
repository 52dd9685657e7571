//! The journal sink across an outage longer than the lease (fencing): a lease that expired
//! while the journal could not be written, and that nobody took, is renewed by the next step,
//! which is written; a lease another process took is a lasting sink error (the runtime stops
//! the run at once: this process must not act again), and nothing of the step is written.
#![cfg(feature = "sink")]
#![allow(clippy::unwrap_used)]

use crate::common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmove_core::{Command, Selection, Time};
use vmove_journal::Holder;
use vmove_journal::sink::JournalSink;
use vmove_runtime::EventSink;

fn me() -> Holder {
    Holder {
        pid: 100,
        host: "this-host".into(),
        started: None,
        boot: None,
    }
}

#[tokio::test]
async fn an_expired_lease_is_renewed_and_a_lease_taken_over_is_a_lasting_sink_error() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut first = open_as(&path, &clock, me());
    first.create_run(&new_run("r1", Selection::All)).unwrap();
    let journal = Arc::new(Mutex::new(first));
    let mut sink = JournalSink::new(Arc::clone(&journal), "r1");
    let refresh = |h: &str| Command::RefreshHost { host: h.into() };

    // Longer than the 30 s lease without a write (the database was away); nobody took it.
    clock.advance(Duration::from_secs(45));
    sink.on_step(Time(1), &[refresh("a")]).await.unwrap();
    let written = journal
        .lock()
        .unwrap()
        .load_run("r1")
        .unwrap()
        .entries
        .len();
    assert_eq!(written, 1);

    // Away longer again, and this time another process took the run over.
    clock.advance(Duration::from_secs(45));
    let mut second = open_as(&path, &clock, other(200));
    second.acquire("r1").unwrap();
    let err = sink.on_step(Time(2), &[refresh("b")]).await.unwrap_err();
    assert!(err.is_lasting(), "{err}");
    assert!(err.message().contains("taken over by process 200"), "{err}");
    // Nothing of the refused step was written.
    assert_eq!(second.load_run("r1").unwrap().entries.len(), written);
}
