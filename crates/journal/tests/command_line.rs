//! The command line that started a run is kept with it (schema 6), without secrets.
#![allow(clippy::unwrap_used)]

use crate::common;

use vmove_core::Selection;
use vmove_journal::Journal;

#[test]
fn a_run_keeps_the_command_line_that_started_it_without_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path().join("j.db")).unwrap();
    let mut new = common::new_run("r1", Selection::All);
    new.command =
        "vmove evacuate kvm1 --to kvm2 --journal 'qemu+tcp://admin:s3cr3t@10.0.0.1/system'".into();
    j.create_run(&new).unwrap();
    let s = j.run_summary("r1").unwrap();
    assert!(
        s.command.starts_with("vmove evacuate kvm1 --to kvm2"),
        "{}",
        s.command
    );
    assert!(!s.command.contains("s3cr3t"), "{}", s.command);
    assert!(s.command.contains("10.0.0.1"), "{}", s.command);
    let runs = j.runs().unwrap();
    assert_eq!(runs[0].command, s.command);
}
