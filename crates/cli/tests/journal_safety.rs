//! The journal's safety with the real binary (issue 12, sections 3 and 5): a password in a
//! libvirt URI reaches no output, report or journal row; the journal is created 0600 in a 0700
//! folder; a journal on a real full file system (a small tmpfs, root only) stops new moves,
//! names the cause once, watches running moves to their end, and the run resumes once there is
//! room.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory with its own HOME; every file a test makes is in it.
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("vmove-jsafe-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        Sandbox { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vmove"));
        c.args(args)
            .arg("--plain")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("VMOVE_") {
                c.env_remove(k);
            }
        }
        c.env("HOME", self.dir.join("home"));
        c.env("XDG_CONFIG_HOME", self.dir.join("home/.config"));
        c
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = self.cmd(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A loopback TCP port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Every byte of the files in `dir` whose name starts with `prefix` (the journal and its
/// -wal/-shm), as text.
fn bytes_of(dir: &Path, prefix: &str) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with(prefix) {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()));
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

const PASSWORD: &str = "Hunter2SecretPw";

#[test]
#[cfg_attr(
    not(feature = "libvirt"),
    ignore = "needs the libvirt driver (default feature)"
)]
fn a_password_in_a_libvirt_uri_reaches_no_output_report_or_journal_row() {
    let sb = Sandbox::new("secret");
    // Two libvirt hosts on loopback ports nobody listens on: every call fails, with the URI
    // in the driver's words. A run from the unreachable kvm1 is refused before it starts (its
    // VMs cannot be listed); a run from the simulated host `a` to kvm2 starts, journals its
    // config and waits for the destination, whose every failure names its URI.
    let cfg = format!(
        "[defaults]\njournal = \"{j}\"\nmax_attempts = 1\n\n\
         [hosts.a]\ndriver = \"sim\"\nstate_file = \"{st}\"\nvms = [ {{ name = \"web-1\", memory_gib = 1, disk_gib = 1 }} ]\n\n\
         [hosts.kvm1]\ndriver = \"libvirt\"\nuri = \"qemu+tcp://admin:{PASSWORD}@127.0.0.1:{p1}/system\"\nkeepalive_interval_s = 1\nkeepalive_count = 1\n\n\
         [hosts.kvm2]\ndriver = \"libvirt\"\nuri = \"qemu+tcp://admin:{PASSWORD}@127.0.0.1:{p2}/system\"\nkeepalive_interval_s = 1\nkeepalive_count = 1\n",
        j = sb.path("state/journal.db").display(),
        st = sb.path("sim.state").display(),
        p1 = closed_port(),
        p2 = closed_port(),
    );
    std::fs::write(sb.path("vmove.toml"), cfg).unwrap();
    let mut outputs = Vec::new();
    let (code, out, err) = sb.run(&["migrate", "web-1", "--from", "kvm1", "--to", "kvm2"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    outputs.push(format!(
        "$ vmove migrate web-1 --from kvm1 ...\n{out}\n{err}"
    ));
    // An unreachable destination is waited for (the run goes on until stopped): let it try for
    // a few seconds, then stop it with Ctrl-C (SIGINT) as a user would.
    let out = std::fs::File::create(sb.path("run.out")).unwrap();
    let err = std::fs::File::create(sb.path("run.err")).unwrap();
    let mut child = sb
        .cmd(&[
            "migrate",
            "web-1",
            "--from",
            "a",
            "--to",
            "kvm2",
            "--report",
            "report.json",
            "--call-timeout",
            "5s",
        ])
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run did not stop"
        );
    };
    assert!(!status.success());
    outputs.push(format!(
        "$ vmove migrate ...\n{}\n{}",
        std::fs::read_to_string(sb.path("run.out")).unwrap(),
        std::fs::read_to_string(sb.path("run.err")).unwrap()
    ));
    for args in [
        &["status"][..],
        &["history"],
        &["report", "--report", "report2.md"],
        &["config"],
        &["resume"],
    ] {
        let (_, out, err) = sb.run(args);
        outputs.push(format!("$ vmove {}\n{out}\n{err}", args.join(" ")));
    }
    let all = outputs.join("\n");
    // The URIs are there, without their user information.
    assert!(all.contains("qemu+tcp://***@127.0.0.1:"), "{all}");
    assert!(!all.contains(PASSWORD), "{all}");
    for f in ["report.json", "report2.md"] {
        let text = std::fs::read_to_string(sb.path(f)).unwrap_or_default();
        assert!(!text.contains(PASSWORD), "{f}: {text}");
    }
    let db = bytes_of(&sb.path("state"), "journal.db");
    assert!(!db.is_empty());
    assert!(!db.contains(PASSWORD), "the journal holds the password");
    assert!(
        db.contains("qemu+tcp://***@127.0.0.1:"),
        "the journal keeps the URI"
    );
    // A new folder 0700, the journal and its side files 0600.
    assert_eq!(mode(&sb.path("state")), 0o700);
    for e in std::fs::read_dir(sb.path("state")).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

/// A sim cluster config: `n` VMs of 2 GiB memory and `disk` GiB on `a`, destination `b`, the
/// journal at `journal`, the hosts' state in the sandbox.
fn sim_config(sb: &Sandbox, journal: &Path, n: usize, disk: u64, speed: u64) -> PathBuf {
    let mut cfg = format!(
        "[defaults]\njournal = \"{}\"\n\n[hosts.a]\ndriver = \"sim\"\nspeed = {speed}\nstate_file = \"{s}\"\nvms = [\n",
        journal.display(),
        s = sb.path("sim.state").display()
    );
    for i in 0..n {
        cfg.push_str(&format!(
            "  {{ name = \"vm-{i}\", memory_gib = 2, disk_gib = {disk} }},\n"
        ));
    }
    cfg.push_str(&format!(
        "]\n\n[hosts.b]\ndriver = \"sim\"\nspeed = {speed}\nmemory_gib = 256\nstate_file = \"{}\"\n",
        sb.path("sim.state").display()
    ));
    let p = sb.path("vmove.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

#[test]
fn a_new_journal_is_created_0600_in_a_0700_folder_and_an_existing_folder_is_left_alone() {
    let sb = Sandbox::new("modes");
    sim_config(&sb, &sb.path("new/deeper/journal.db"), 2, 1, 50);
    let (code, _, err) = sb.run(&["evacuate", "a", "--to", "b"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(mode(&sb.path("new")), 0o700);
    assert_eq!(mode(&sb.path("new/deeper")), 0o700);
    assert_eq!(mode(&sb.path("new/deeper/journal.db")), 0o600);
    // An existing folder others may write in keeps its mode, and vmove says so.
    std::fs::create_dir(sb.path("shared")).unwrap();
    std::fs::set_permissions(sb.path("shared"), std::fs::Permissions::from_mode(0o777)).unwrap();
    // (The VMs went to b: this run brings them back, journaled in the shared folder.)
    let (code, _, err) = sb.run(&[
        "evacuate",
        "b",
        "--to",
        "a",
        "--journal",
        "shared/journal.db",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(mode(&sb.path("shared")), 0o777);
    assert!(
        err.contains("may be written by other users"),
        "a warning: {err}"
    );
    assert_eq!(mode(&sb.path("shared/journal.db")), 0o600);
}

/// A small tmpfs mounted in the sandbox for one test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts one, or says why not (not root, no `mount`).
    fn mount(dir: PathBuf, size: &str) -> Result<Tmpfs, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not root".into());
        }
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err(format!("mount failed: {ok}"));
        }
        Ok(Tmpfs { dir })
    }

    /// Fills it to the last byte (dd stops at ENOSPC).
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", self.dir.join("filler").display()))
            .stderr(Stdio::null())
            .status();
    }

    fn make_room(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_journal_on_a_full_tmpfs_stops_new_moves_names_disk_full_once_and_resumes_once_there_is_room() {
    let sb = Sandbox::new("tmpfs");
    let fs = match Tmpfs::mount(sb.path("small"), "64m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: a real full file system needs a tmpfs mount ({why})");
            return;
        }
    };
    let journal = fs.dir.join("journal.db");
    // 8 VMs, 2 at a time (the sim's default slots), each a few seconds.
    sim_config(&sb, &journal, 8, 30, 10);
    let out = std::fs::File::create(sb.path("run.out")).unwrap();
    let err = std::fs::File::create(sb.path("run.err")).unwrap();
    // A journal that stays full: the run waits `journal_wait` for it, then ends resumable.
    let mut child = sb
        .cmd(&["evacuate", "a", "--to", "b", "--journal-wait", "5s"])
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    // Fill the file system once some moves are running.
    let t0 = Instant::now();
    loop {
        let (_, status, _) = sb.run(&["status"]);
        if status.contains("moving (attempt") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    fs.fill();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the run did not end"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = std::fs::read_to_string(sb.path("run.out")).unwrap();
    let err = std::fs::read_to_string(sb.path("run.err")).unwrap();
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    let cause = format!("journal {}: disk full (SQLITE_FULL)", journal.display());
    assert_eq!(
        err.matches(&cause).count(),
        1,
        "said once on stderr:\n{err}"
    );
    assert!(out.contains(&cause), "and in the summary:\n{out}");
    assert!(err.contains("vmove resume"), "{err}");
    assert!(out.contains(" 0 unmigratable,"), "{out}");
    for verdict in ["watchdog", "stalled", "left for a person"] {
        assert!(
            !out.contains(verdict) && !err.contains(verdict),
            "no verdict caused by the journal ({verdict}):\n{out}\n{err}"
        );
    }
    // Room again: resume finishes the run; every VM moved.
    fs.make_room();
    let (code, out, err) = sb.run(&["resume"]);
    let df = Command::new("df").arg(&fs.dir).output().unwrap();
    let ls = Command::new("ls").arg("-l").arg(&fs.dir).output().unwrap();
    assert_eq!(
        code,
        Some(0),
        "{out}\n{err}\n{}\n{}",
        String::from_utf8_lossy(&df.stdout),
        String::from_utf8_lossy(&ls.stdout)
    );
    let (_, status, _) = sb.run(&["status"]);
    assert!(status.contains("8 VMs: 8 moved"), "{status}");
    let (_, history, _) = sb.run(&["history"]);
    assert!(history.contains("finished"), "{history}");
    drop(fs);
}

#[test]
fn a_damaged_journal_is_refused_naming_its_path_and_sqlites_cause() {
    let sb = Sandbox::new("corrupt");
    std::fs::write(sb.path("journal.db"), vec![0x5a_u8; 8192]).unwrap();
    for args in [&["history"][..], &["status"], &["resume"]] {
        let mut a = args.to_vec();
        a.extend(["--journal", "journal.db"]);
        let (code, _, err) = sb.run(&a);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("journal.db")
                && err.contains("not a journal database (SQLITE_NOTADB)")
                && err.contains("file is not a database"),
            "the path and SQLite's own words: {err}"
        );
    }
    // Nothing was written over it.
    assert_eq!(
        std::fs::read(sb.path("journal.db")).unwrap(),
        vec![0x5a_u8; 8192]
    );
}

#[test]
fn a_lease_over_an_hour_is_refused_naming_the_setting_and_the_maximum() {
    let sb = Sandbox::new("lease");
    for args in [
        &["config", "--journal-lease", "100000h"][..],
        &["history", "--journal", "j.db", "--journal-lease", "61m"],
    ] {
        let (code, _, err) = sb.run(args);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("`journal_lease` must be at most 1h"),
            "{args:?}: {err}"
        );
    }
    assert!(!sb.path("j.db").exists(), "nothing was created");
    let (code, out, err) = sb.run(&["config", "--journal-lease", "1h"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("journal_lease = \"1h\""), "{out}");
}

/// The files in the sandbox's top folder, sorted (what a command left there).
fn files_in(sb: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&sb.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn read_only_commands_leave_an_empty_journal_file_empty_and_say_it_holds_no_run() {
    let sb = Sandbox::new("empty");
    std::fs::write(sb.path("journal.db"), b"").unwrap();
    let before = files_in(&sb);
    let cases: [(&[&str], i32, &str); 6] = [
        (&["history"], 0, "no runs in"),
        (&["history", "--json"], 0, "{\"runs\":[]}"),
        (&["status"], 1, "the journal holds no run"),
        (&["report"], 1, "the journal holds no run"),
        (&["resume"], 1, "the journal holds no unfinished run"),
        (&["serve", "--port", "0"], 1, "is an empty file"),
    ];
    for (args, want, says) in cases {
        let mut a = args.to_vec();
        a.extend(["--journal", "journal.db"]);
        let (code, out, err) = sb.run(&a);
        assert_eq!(code, Some(want), "{args:?}: {out}{err}");
        assert!(
            out.contains(says) || err.contains(says),
            "{args:?}: {out}{err}"
        );
        assert_eq!(
            std::fs::metadata(sb.path("journal.db")).unwrap().len(),
            0,
            "{args:?} wrote into the empty file"
        );
        assert_eq!(files_in(&sb), before, "{args:?} made files beside it");
    }
}

#[test]
fn another_applications_sqlite_file_is_refused_in_one_line_as_not_a_vmove_journal_and_left_unchanged()
 {
    let sb = Sandbox::new("foreign");
    let other = sb.path("other.db");
    {
        let conn = rusqlite::Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE runs (x); CREATE TABLE accounts (id INTEGER, name TEXT);")
            .unwrap();
    }
    let bytes = std::fs::read(&other).unwrap();
    let config = sim_config(&sb, &other, 2, 1, 50);
    let state = std::fs::read(sb.path("sim.state")).ok();
    for args in [
        &["history"][..],
        &["status"],
        &["report"],
        &["resume"],
        &["abort", "r1"],
        &["serve", "--port", "0"],
        &["evacuate", "a", "--to", "b"],
    ] {
        let mut a = args.to_vec();
        a.extend([
            "--config",
            config.to_str().unwrap(),
            "--journal",
            "other.db",
        ]);
        let (code, out, err) = sb.run(&a);
        assert_eq!(code, Some(1), "{args:?}: {out}{err}");
        let line = err.trim_end();
        assert!(
            line.contains("other.db is not a vmove journal")
                && line.contains("name another file as the journal (--journal"),
            "{args:?}: {err}"
        );
        assert!(!line.contains('\n'), "{args:?}: one line: {err}");
        assert!(!line.contains("CREATE TABLE"), "{args:?}: no SQL: {err}");
        assert_eq!(std::fs::read(&other).unwrap(), bytes, "{args:?} changed it");
        assert!(!out.contains("moved"), "{args:?}: nothing was done: {out}");
    }
    // The evacuation touched no host.
    assert_eq!(std::fs::read(sb.path("sim.state")).ok(), state);
    assert!(!sb.path("other.db-wal").exists() && !sb.path("other.db-shm").exists());
}
