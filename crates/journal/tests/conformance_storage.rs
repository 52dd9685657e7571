//! The journal's conformance suite, in-process: schema migration, a journal from a newer vmove,
//! WAL mode with full sync, a torn WAL, and a concurrent reader.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use std::time::Duration;
use vmove_core::{EventKind, Phase, Selection, Time, VmId};
use vmove_journal::{Holder, Journal, JournalError, WallTime, schema};

fn me() -> Holder {
    Holder {
        pid: 100,
        host: "this-host".into(),
        started: None,
        boot: None,
    }
}

#[test]
fn migration_from_schema_1_keeps_the_data_and_backfills_the_status_table() {
    let (_dir, path) = temp_path();
    let clock = clock();
    // Build a version-1 journal by hand, as an older vmove wrote it.
    let steps = script("r1", "u", 2);
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(schema::migrate_to(&mut conn, 1, WallTime(1)).unwrap(), 1);
        let spec_json = serde_json::to_string(&spec("r1", Selection::All)).unwrap();
        conn.execute(
            "INSERT INTO runs (id, created_at, config_format, config, spec, state, driver_host, driver_pid, last_seq)
             VALUES ('r1', 5, 'toml', '', ?1, 'running', 'h', 42, ?2)",
            rusqlite::params![spec_json, steps.len() as i64],
        )
        .unwrap();
        let mut intents = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let seq = i as i64 + 1;
            let (kind, body, answers) = match step {
                Step::Intent(c) => {
                    intents.push(seq);
                    ("intent", serde_json::to_string(c).unwrap(), None)
                }
                Step::Outcome(k, input) => (
                    "outcome",
                    serde_json::to_string(input).unwrap(),
                    Some(intents[*k]),
                ),
                Step::Input(input) => ("input", serde_json::to_string(input).unwrap(), None),
                Step::Event(e) => ("event", serde_json::to_string(e).unwrap(), None),
            };
            conn.execute(
                "INSERT INTO entries (run_id, seq, kind, at, name, answers, body, written_at) VALUES ('r1', ?1, ?2, ?3, 'x', ?4, ?5, 0)",
                rusqlite::params![seq, kind, step_time(step, i).0 as i64, answers, body],
            )
            .unwrap();
        }
    }
    let j = open_as(&path, &clock, me());
    assert_eq!(j.schema_version().unwrap(), schema::LATEST);
    let rec = j.load_run("r1").unwrap();
    assert_eq!(rec.entries.len(), steps.len());
    assert_eq!(
        rec.vms.len(),
        2,
        "the status table is rebuilt from the events"
    );
    assert!(rec.vms.iter().all(|v| v.phase == Phase::Moved));
    assert_consistent(&rec);
    assert_eq!(j.stop_requested("r1").unwrap(), None);
    // Reopening does not migrate twice.
    drop(j);
    let j = open_as(&path, &clock, me());
    assert_eq!(j.schema_version().unwrap(), schema::LATEST);
}

#[test]
fn a_journal_from_a_newer_vmove_is_refused() {
    let (_dir, path) = temp_path();
    let clock = clock();
    drop(open_as(&path, &clock, me()));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_version (version, applied_at, description) VALUES (99, 0, 'future')",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Journal::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::SchemaTooNew {
                found: 99,
                supported: schema::LATEST
            }
        ),
        "{err}"
    );
}

#[test]
fn the_journal_is_in_wal_mode_with_full_sync() {
    let (_dir, path) = temp_path();
    let j = Journal::open(&path).unwrap();
    drop(j);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "WAL mode persists in the file");
}

/// A torn last write: the WAL of a live writer is copied (as a crash would leave it) and cut at
/// many offsets, frame boundaries and mid-frame. Each cut must open, and hold a prefix of what
/// was written: whole transactions, never a part of one.
#[test]
fn a_torn_wal_reopens_to_a_consistent_prefix() {
    let (dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let steps = script("r1", "u", 6);
    write_steps(&mut j, "r1", &steps, &mut Vec::new());
    let full = j.load_run("r1").unwrap();
    let wal = std::fs::read(path.with_extension("sqlite-wal")).unwrap();
    let db = std::fs::read(&path).unwrap();
    assert!(
        wal.len() > 32 + 4096,
        "the WAL holds frames ({} bytes)",
        wal.len()
    );
    const PAGE: usize = 4096;
    const FRAME: usize = 24 + PAGE;
    let frames = (wal.len() - 32) / FRAME;
    // About 40 frames, evenly spread, each cut at its boundary and in the middle of its page.
    let step = (frames / 40).max(1);
    let mut cuts: Vec<usize> = (0..=frames)
        .step_by(step)
        .flat_map(|f| [32 + f * FRAME, 32 + f * FRAME + 24 + 100])
        .collect();
    cuts.push(wal.len());
    cuts.retain(|&c| c <= wal.len());
    cuts.sort();
    let mut last = 0usize;
    let mut lengths = Vec::new();
    for (i, &cut) in cuts.iter().enumerate() {
        let crash = dir.path().join(format!("crash-{i}"));
        std::fs::create_dir_all(&crash).unwrap();
        let p = crash.join("journal.sqlite");
        std::fs::write(&p, &db).unwrap();
        std::fs::write(p.with_extension("sqlite-wal"), &wal[..cut]).unwrap();
        let reopened = open_as(&p, &clock, me());
        let n = match reopened.load_run("r1") {
            Ok(rec) => {
                assert_consistent(&rec);
                assert_eq!(
                    rec.entries,
                    full.entries[..rec.entries.len()],
                    "cut at {cut}: not a prefix"
                );
                rec.entries.len()
            }
            // The run's own row was in the cut-off part.
            Err(JournalError::UnknownRun(_)) => 0,
            Err(e) => panic!("cut at {cut}: {e}"),
        };
        eprintln!("torn-wal cut {cut}: {n} entries");
        assert!(
            n >= last,
            "cut at {cut}: {n} entries, fewer than the {last} of a shorter cut"
        );
        last = n;
        lengths.push(n);
    }
    assert_eq!(
        last,
        full.entries.len(),
        "the whole WAL gives back everything"
    );
    assert!(
        lengths.windows(2).any(|w| w[0] < w[1]) && lengths[0] < full.entries.len(),
        "cuts lost some entries: {lengths:?}"
    );
}

/// A reader (`vmove status` in another terminal) reads while the driver writes: never blocked,
/// never an error, and every read is a consistent snapshot that only moves forward.
fn a_concurrent_reader_sees_consistent_snapshots_while_the_writer_writes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut w = open_as(&path, &clock, me());
    w.create_run(&new_run("r1", Selection::All)).unwrap();
    let Step::Event(sel) = script("r1", "u", 1).remove(0) else {
        panic!()
    };
    w.record_event("r1", &sel).unwrap();
    let vm = VmId::new("u-0");
    let writes = 150u64;
    // The writer pauses every 30 writes until the reader has read once more, so reads are
    // guaranteed to fall between writes however the threads are scheduled.
    let reads = Arc::new(AtomicU64::new(0));
    let reads_w = Arc::clone(&reads);
    let writer = std::thread::spawn(move || {
        for i in 1..=writes {
            if i % 30 == 0 {
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while reads_w.load(Ordering::SeqCst) < i / 30
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let e = vmove_core::Event {
                at: Time(i),
                kind: EventKind::Progress {
                    vm: vm.clone(),
                    attempt: 1,
                    bytes_done: i,
                    bytes_total: writes,
                    bytes_remaining: writes - i,
                },
            };
            w.record_event("r1", &e).unwrap();
        }
        w
    });
    let reader = open_as(&path, &clock, other(400));
    let mut last_done = 0;
    let mut last_entries = 0;
    let mut partial_reads = 0;
    loop {
        let finished = writer.is_finished();
        let status = reader.vm_status("r1").unwrap();
        let done = status[0]
            .progress
            .as_ref()
            .map(|p| p.bytes_done)
            .unwrap_or(0);
        assert!(
            done >= last_done,
            "progress went back from {last_done} to {done}"
        );
        last_done = done;
        let rec = reader.load_run("r1").unwrap();
        assert_consistent(&rec);
        assert!(rec.entries.len() >= last_entries);
        last_entries = rec.entries.len();
        if done > 0 && done < writes {
            partial_reads += 1;
        }
        reads.fetch_add(1, Ordering::SeqCst);
        if finished {
            break;
        }
    }
    let _w = writer.join().unwrap();
    assert_eq!(
        reader.vm_status("r1").unwrap()[0]
            .progress
            .as_ref()
            .map(|p| p.bytes_done),
        Some(writes)
    );
    assert!(
        partial_reads >= 4,
        "the reader read between writes: {partial_reads} times"
    );
}

on_both_backends!(a_concurrent_reader_sees_consistent_snapshots_while_the_writer_writes,);

#[test]
fn an_empty_file_opened_as_an_existing_journal_reads_no_runs_and_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    std::fs::write(&path, b"").unwrap();
    let mut j = Journal::open_existing(&path).unwrap();
    assert!(j.is_blank());
    assert!(j.runs().unwrap().is_empty());
    assert!(matches!(
        j.request_stop("r1", false),
        Err(JournalError::UnknownRun(_))
    ));
    drop(j);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "nothing beside it: {files:?}");
    // A missing file is an error, and is not created.
    let missing = dir.path().join("missing.sqlite");
    let err = Journal::open_existing(&missing).unwrap_err();
    assert!(err.to_string().contains("missing.sqlite"), "{err}");
    assert!(!missing.exists());
    // A journal opens as one (not blank); a run's open of the empty file makes it a journal.
    let j = Journal::open(&path).unwrap();
    assert!(!j.is_blank());
    drop(j);
    let j = Journal::open_existing(&path).unwrap();
    assert!(!j.is_blank());
    assert_eq!(j.schema_version().unwrap(), schema::LATEST);
}

#[test]
fn another_applications_sqlite_file_is_refused_as_not_a_journal_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE runs (x); CREATE TABLE \"a\nb\" (y);")
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    for existing in [false, true] {
        let err = if existing {
            Journal::open_existing(&path)
        } else {
            Journal::open(&path)
        }
        .unwrap_err();
        assert!(
            matches!(&err, JournalError::NotAJournal { path: p, .. } if *p == path),
            "{err:?}"
        );
        let msg = err.chain();
        assert!(msg.contains("is not a vmove journal"), "{msg}");
        assert!(msg.contains("`runs`") && msg.contains("`a\\nb`"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
    }
}

#[test]
fn an_error_from_a_statement_sqlite_refused_names_its_words_without_the_statement() {
    // vmove's marker, but a table in the way of the first migration.
    let (_dir, path) = temp_path();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER, description TEXT);
             CREATE TABLE runs (x);",
        )
        .unwrap();
    }
    let msg = Journal::open(&path).unwrap_err().chain();
    assert!(msg.contains("journal.sqlite"), "{msg}");
    assert!(msg.contains("table runs already exists"), "{msg}");
    assert!(!msg.contains('\n') && !msg.contains("CREATE"), "{msg}");
    assert!(msg.len() < 400, "{msg}");
}

/// A number vmove never writes below 0, edited to one (an entry's run time, the intent an
/// outcome answers, the entry a status was set by), is refused when the
/// run is read, naming the run, the number and where it is; nothing is changed. Before, each
/// was read as an unsigned number: a run time of -5 became one near 2^64, and a resumed run
/// started there, with every watchdog of its migrations in flight long past.
#[test]
fn a_negative_time_or_number_edited_into_an_entry_is_refused_when_the_run_is_read() {
    let edits: [(&str, &str, &str); 3] = [
        (
            "UPDATE entries SET at = -5 WHERE run_id = 'r1' AND seq = 3",
            "-5 as the run time of entry 3",
            "at",
        ),
        (
            "UPDATE entries SET answers = -2 WHERE run_id = 'r1' AND kind = 'outcome' \
             AND seq = (SELECT MIN(seq) FROM entries WHERE run_id = 'r1' AND kind = 'outcome')",
            "-2 as the intent entry",
            "answers",
        ),
        (
            "UPDATE vm_state SET updated_seq = -1 WHERE run_id = 'r1'",
            "-1 as the entry a VM's status was last set by",
            "updated_seq",
        ),
    ];
    for (sql, said, column) in edits {
        refused_after_edit(sql, column, |_, err| {
            assert!(
                matches!(&err, JournalError::Negative { run, .. } if run == "r1"),
                "{column}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(said), "{column}: {msg}");
            assert!(msg.contains("run r1") && msg.contains("below 0"), "{msg}");
        });
    }
}

/// Writes a three-step run `r1` to a fresh journal, edits the file behind the journal's back
/// with `sql` (which must hit a row), opens it again and reads the run: `check` is given the
/// journal and the refusal; the file's bytes must not have changed.
fn refused_after_edit(sql: &str, what: &str, check: impl FnOnce(&Journal, JournalError)) {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    write_steps(&mut j, "r1", &script("r1", "u", 3), &mut Vec::new());
    j.load_run("r1").expect("the run reads before the edit");
    drop(j);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert!(
            conn.execute(sql, []).unwrap() > 0,
            "{what}: the edit hit a row"
        );
    }
    let bytes = std::fs::read(&path).unwrap();
    let j = Journal::open_existing(&path).unwrap();
    let Err(err) = j.load_run("r1") else {
        panic!("{what}: the edited run was read")
    };
    check(&j, err);
    drop(j);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "{what}: nothing changed"
    );
}

/// An entry deleted from a run (in the middle, or its last), or one added past the run's
/// count, is refused when the run is read, naming the entries and the run, with nothing
/// changed. Before, the run was read without them: an intent whose outcome was deleted
/// replayed as a step still under way, and an entry after the run's count was replayed too.
#[test]
fn a_run_missing_an_entry_or_holding_one_past_its_last_is_refused_when_read() {
    let edits: [(&str, &str); 3] = [
        (
            "DELETE FROM entries WHERE run_id = 'r1' AND seq IN (4, 5)",
            "lacks entries 4 to 5",
        ),
        (
            "DELETE FROM entries WHERE run_id = 'r1' \
             AND seq = (SELECT last_seq FROM runs WHERE id = 'r1')",
            "lacks entry ",
        ),
        (
            "INSERT INTO entries (run_id, seq, kind, at, vm, attempt, name, answers, body, \
             written_at) SELECT run_id, seq + 100, kind, at, vm, attempt, name, answers, body, \
             written_at FROM entries WHERE run_id = 'r1' AND seq = 1",
            "past its last",
        ),
    ];
    for (sql, said) in edits {
        refused_after_edit(sql, said, |j, err| {
            assert!(
                matches!(&err, JournalError::Gap { run, .. } if run == "r1"),
                "{said}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(said), "{msg}");
            assert!(
                msg.contains("run r1") && msg.contains("nothing was changed"),
                "{msg}"
            );
            // A reader that tails the run meets the same refusal past the gap, not a shorter
            // run.
            assert!(j.entries_after("r1", 0).is_err(), "{said}: entries_after");
        });
    }
}

/// Processes that start at the same moment on one journal file that does not exist yet each
/// open it: none is refused as "locked by another process". Seen in CI (the lab's ledger
/// script, two `vmove` runs started together): one of them failed at the open with SQLITE_BUSY,
/// which SQLite returns at once, without waiting, to a connection that read the file before
/// another one changed it (the switch to WAL mode, the schema's first migration). An open
/// that meets it now tries again from the start, within the busy timeout.
#[test]
fn journals_opened_at_once_on_a_new_file_all_open() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Journal::open(&path).map(|_| ())
                })
            })
            .collect();
        for o in opens {
            let r = o.join().unwrap();
            assert!(r.is_ok(), "round {round}: {}", r.unwrap_err().chain());
        }
    }
}

/// A journal path that is a folder, a FIFO or a character device is refused by every open and
/// by the check a run makes first, naming what it is, with nothing created beside it. Before,
/// SQLite opened a device as a database file: it wrote its header over a block device's first
/// bytes, made `/dev/null-journal` beside `/dev/null`, and a FIFO gave "disk I/O error" or
/// "no journal" (found by an audit).
#[cfg(unix)]
#[test]
fn a_journal_path_that_is_a_folder_a_fifo_or_a_device_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut cases = vec![(folder, "a folder"), (fifo, "a FIFO (named pipe)")];
    // A character device of the test's own (the null device's numbers), where it may make one.
    let null = dir.path().join("null");
    if std::process::Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        cases.push((null, "a character device"));
    }
    for (path, kind) in cases {
        let refused = |r: Result<(), JournalError>, how: &str| {
            let e = r.unwrap_err();
            assert!(
                matches!(&e, JournalError::NotAFile { kind: k, .. } if *k == kind),
                "{how} {kind}: {e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains("is not a regular file but") && msg.contains(kind),
                "{msg}"
            );
        };
        refused(Journal::open(&path).map(drop), "open");
        refused(Journal::open_existing(&path).map(drop), "open_existing");
        refused(Journal::check_location(&path), "check_location");
        let mut beside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        beside.sort();
        assert!(
            beside
                .iter()
                .all(|n| !n.contains("-journal") && !n.contains("-wal")),
            "{kind}: {beside:?}"
        );
    }
}

/// A journal path on one of the kernel's file systems (`/proc/version`: a size of 0, data when
/// read) is refused by every open and by the check a run makes first, as not a vmove journal,
/// without the file being opened. Before, SQLite (which goes by the size) read it as an empty
/// journal: `vmove --journal /proc/version history` said "no runs" (found by an audit). A truly
/// empty file is still an empty journal.
#[cfg(target_os = "linux")]
#[test]
fn a_file_of_the_kernels_is_refused_as_not_a_journal() {
    for (file, fs) in [
        ("/proc/version", "proc"),
        ("/sys/kernel/mm/transparent_hugepage/enabled", "sysfs"),
    ] {
        let path = std::path::Path::new(file);
        if !path.exists() {
            continue;
        }
        let refused = |r: Result<(), JournalError>, how: &str| {
            let e = r.unwrap_err();
            assert!(
                matches!(&e, JournalError::KernelFile { fs: f, .. } if *f == fs),
                "{file} {how}: {e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!(
                    "`{file}` is not a vmove journal: it is a file the kernel makes up (on a {fs} file system)"
                )),
                "{file} {how}: {msg}"
            );
        };
        refused(Journal::open_existing(path).map(drop), "open_existing");
        refused(Journal::open(path).map(drop), "open");
        refused(Journal::check_location(path), "check_location");
    }
    // An empty file of one's own is an empty journal, as before.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    Journal::check_location(&empty).unwrap();
    assert!(Journal::open_existing(&empty).unwrap().is_blank());
}
