//! End to end: the real `vmove` binary evacuates a fake Hyper-V host of 20 VMs over HTTP + NTLM
//! sealing (some backing up for a while, some off, one failing twice then succeeding, its failed
//! job leaving partial disk copies on the destination, and the folders it created for them,
//! that are removed before the retry), and
//! the empty folders left on the source are removed while a non-empty one is kept. And a run
//! killed (SIGKILL) after a failed attempt left copies and folders on the destination: `vmove
//! resume`, a new process, removes exactly those (from the attempt's record on the destination)
//! and moves the VM.
//!
//! Needs the CLI binary: `VMOVE_BIN=/path/to/vmove cargo test -p vmove-driver-hyperv
//! --features test-util --test integration cli_e2e::`. Skipped, loudly, without it.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;
use vmove_driver_hyperv::fake::model::{SUBTYPE_DVD, SUBTYPE_FLOPPY};
use vmove_driver_hyperv::fake::world::key;
use vmove_driver_hyperv::fake::{FakeHyperV, Locale};

/// The `vmove` binary, or None (the test is skipped, loudly, unless it is required).
fn vmove_bin() -> Option<PathBuf> {
    let Some(bin) = std::env::var_os("VMOVE_BIN") else {
        assert!(
            std::env::var("VMOVE_REQUIRE_CLI_E2E").is_err(),
            "VMOVE_BIN is required"
        );
        eprintln!("\n*** SKIPPED cli_e2e: set VMOVE_BIN to the vmove binary ***\n");
        return None;
    };
    Some(bin.into())
}

/// Writes `<dir>/vmove.toml` for the fake's two hosts (hv1 -> hv2, into `E:\Moved`), with these
/// `[defaults]` lines.
fn write_config(fake: &FakeHyperV, dir: &Path, defaults: &str) -> PathBuf {
    let cfg = format!(
        r#"[defaults]
{defaults}
put_in_subfolder = true

[hosts.hv1]
driver = "hyperv"
address = "127.0.0.1"
port = {p1}
transport = "http"
auth = "ntlm"
request_timeout_secs = 10

[hosts.hv2]
driver = "hyperv"
address = "127.0.0.1"
port = {p2}
transport = "http"
auth = "ntlm"
host_name = "HV2"
path = 'E:\Moved'
"#,
        p1 = fake.addr("hv1").unwrap().port(),
        p2 = fake.addr("hv2").unwrap().port()
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("vmove.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// `vmove --config <cfg> <args> --plain`, run in `dir` with the fake's credentials and its
/// journal in `dir` (never the user's own journal under `$HOME`).
fn vmove(bin: &Path, cfg: &Path, dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin);
    c.arg("--config")
        .arg(cfg)
        .args(args)
        .arg("--plain")
        .current_dir(dir)
        .env("VMOVE_JOURNAL", dir.join("journal.db"))
        .env("VMOVE_HYPERV_USER", common::USER)
        .env("VMOVE_HYPERV_PASSWORD", common::PASSWORD)
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmove_evacuate_of_a_20_vm_fake_host_over_ntlm() {
    evacuate_twenty(false).await;
}

/// The same evacuation from hosts that show their captions in Swedish, with VMs that have
/// checkpoints (standard and recovery: differencing chains), DVD and floppy images from a
/// shared library, and vm07's failed job also leaving a planned VM of it on the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmove_evacuate_in_swedish_with_checkpoints_isos_and_a_planned_vm_left() {
    evacuate_twenty(true).await;
}

const ISO: &str = "E:\\ISO\\install.iso";
const VFD: &str = "E:\\ISO\\drivers.vfd";

async fn evacuate_twenty(foreign: bool) {
    let Some(bin) = vmove_bin() else {
        return;
    };
    let mut w = common::world();
    w.migration_ms = 4000;
    w.hosts.get_mut("hv1").unwrap().migration_limit = 3;
    let mut ids = Vec::new();
    for i in 0..20 {
        let running = i % 5 != 4; // 4 powered off
        let g = w.add_vm(
            "hv1",
            &format!("vm{i:02}"),
            running,
            512,
            &[16 + i],
            &format!("E:\\VMs\\vm{i:02}"),
        );
        ids.push(g);
    }
    // two VMs backing up for a while (virtual time), one failing twice then succeeding
    w.faults.backup_ends_ms.insert(ids[1].clone(), 6_000);
    w.faults.backup_ends_ms.insert(ids[2].clone(), 9_000);
    w.faults
        .migrate_return
        .insert(ids[7].clone(), [32768].into());
    w.faults.job_exception.insert(ids[7].clone(), 1);
    w.faults.failure_leaves_copies.insert(ids[7].clone());
    // one job completes with warnings (JobState 32768): a success, its words shown on stderr
    w.faults.completes_with_warnings.insert(
        ids[5].clone(),
        "The network adapter could not be connected to switch 'LAN' on the destination".into(),
    );
    // a file of the same name as vm07's disk elsewhere on the destination: never touched
    w.hosts
        .get_mut("hv2")
        .unwrap()
        .write_file("E:\\Archive\\vm07_0.vhdx", 5);
    // someone else's file in vm03's folder: that folder must stay
    w.hosts
        .get_mut("hv1")
        .unwrap()
        .write_file("E:\\VMs\\vm03\\keep-me.txt", 10);
    if foreign {
        w.set_locale(Locale::Swedish);
        w.add_checkpoint("hv1", &ids[10], "before patch", false);
        w.add_checkpoint("hv1", &ids[10], "after patch", false);
        w.add_checkpoint("hv1", &ids[11], "Veeam", true);
        w.add_checkpoint("hv1", &ids[14], "off", false);
        w.add_drive("hv1", &ids[12], SUBTYPE_DVD, ISO);
        w.add_drive("hv1", &ids[13], SUBTYPE_DVD, ISO);
        w.add_drive("hv1", &ids[13], SUBTYPE_FLOPPY, VFD);
        w.hosts.get_mut("hv2").unwrap().write_file(ISO, 700 << 20);
        // The destination has the floppy image too (pre-flight blocks an image it lacks).
        w.hosts.get_mut("hv2").unwrap().write_file(VFD, 1440 << 10);
        w.faults.failure_leaves_planned.insert(ids[7].clone());
    }
    w.tick();
    let (fake, _) = common::start(w).await;
    let _clock = fake.run_clock(1.0);

    let tmp = tempfile::Builder::new()
        .prefix(if foreign {
            "vmove-hv-e2e-sv-"
        } else {
            "vmove-hv-e2e-en-"
        })
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let cfg = write_config(
        &fake,
        &dir,
        r#"poll_interval = "2s"
recheck_interval = "1s"
job_start_timeout = "2s"
progress_interval = "500ms"
backoff_initial = "1s"
backoff_max = "2s"
backoff_jitter = 0.0
max_attempts = 3"#,
    );
    let child = vmove(&bin, &cfg, &dir, &["evacuate", "hv1", "--to", "hv2"]).output();
    let out = tokio::time::timeout(Duration::from_secs(300), child)
        .await
        .expect("vmove did not finish in 5 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- vmove stdout ---\n{stdout}\n--- vmove stderr ---\n{stderr}");
    assert!(
        !stdout.contains(common::PASSWORD) && !stderr.contains(common::PASSWORD),
        "the password was printed"
    );
    assert_eq!(out.status.code(), Some(0), "vmove evacuate failed");
    // The job that completed with warnings moved its VM, and its warning reached the user
    // (the drivers' `tracing` warnings go to stderr).
    assert!(
        stderr.contains("completed with warnings") && stderr.contains("switch 'LAN'"),
        "the job's warning was not shown: {stderr}"
    );
    fake.with(|w| {
        let (src, dst) = (&w.hosts["hv1"], &w.hosts["hv2"]);
        assert!(
            src.vms.is_empty(),
            "VMs left on the source: {:?}",
            src.vms.keys().collect::<Vec<_>>()
        );
        assert_eq!(dst.vms.len(), 20);
        for (i, g) in ids.iter().enumerate() {
            let vm = &dst.vms[g];
            assert_eq!(vm.config_root, format!("E:\\Moved\\vm{i:02}"));
            assert_eq!(
                vm.enabled_state,
                if i % 5 != 4 { 2 } else { 3 },
                "vm{i:02} power state"
            );
        }
        // folders left on the source: the empty ones are gone, the non-empty one stays
        for i in [0usize, 5, 7, 19] {
            assert!(
                !src.dir_exists(&format!("E:\\VMs\\vm{i:02}")),
                "empty folder of vm{i:02} not removed"
            );
        }
        assert!(src.dir_exists("E:\\VMs\\vm03"));
        assert!(src.files.contains_key(&key("E:\\VMs\\vm03\\keep-me.txt")));
        assert!(
            !src.dir_exists("E:\\VMs\\vm03\\Virtual Machines"),
            "vm03's empty subfolders stay"
        );
        assert!(
            src.dir_exists("E:\\VMs"),
            "a first-level folder was removed"
        );
        // vm07's failed job left a half copy of its disk; it was removed before the retry, which
        // then put the whole disk there (and nothing else of vm07's lies around).
        let vm07: Vec<(String, u64)> = dst
            .files
            .iter()
            .filter(|(k, _)| k.ends_with(".vhdx") && k.contains("vm07"))
            .map(|(_, f)| (f.path.clone(), f.size))
            .collect();
        assert_eq!(
            vm07,
            vec![
                ("E:\\Archive\\vm07_0.vhdx".to_string(), 5),
                (
                    "E:\\Moved\\vm07\\Virtual Hard Disks\\vm07_0.vhdx".to_string(),
                    ((16 + 7) << 20) + w.live_disk_growth
                ),
            ]
        );
        let deletes = w
            .calls
            .invokes
            .iter()
            .filter(|(h, m)| h == "hv2" && m == "Delete")
            .count();
        // The copy, then the three folders the failed attempt had created for vm07 (E:\Moved\vm07,
        // its `Virtual Hard Disks` and `Virtual Machines`), each once; the retry made them again.
        assert_eq!(
            deletes, 4,
            "the failed attempt's copy and its three new folders were removed once"
        );
        let migrates = w
            .calls
            .invokes
            .iter()
            .filter(|(_, m)| m == "MigrateVirtualSystemToHost")
            .count();
        assert!(
            migrates >= 22,
            "vm07 needed three attempts: {migrates} migrate calls"
        );
        if foreign {
            // Every link of every checkpoint chain moved under the VM's new folder.
            for i in [10usize, 11, 14] {
                let vm = &dst.vms[&ids[i]];
                let mut all = vm.disks.clone();
                for c in &vm.checkpoints {
                    all.extend(c.disks.clone());
                }
                assert!(all.len() > 1, "vm{i:02} has its chain");
                for p in all {
                    assert!(
                        p.starts_with(&format!("E:\\Moved\\vm{i:02}\\Virtual Hard Disks\\")),
                        "vm{i:02}: {p}"
                    );
                    assert!(dst.files.contains_key(&key(&p)), "vm{i:02}: {p} missing");
                }
            }
            // The images stayed in the library, and the VMs still name them.
            assert!(src.files.contains_key(&key(ISO)) && src.files.contains_key(&key(VFD)));
            assert_eq!(dst.vms[&ids[13]].drives.len(), 2);
            assert!(
                dst.vms[&ids[13]]
                    .drives
                    .iter()
                    .all(|d| d.path.starts_with("E:\\ISO\\"))
            );
            // vm07's planned VM was removed before its retry, and nothing else destroyed.
            assert!(dst.planned.is_empty());
            assert_eq!(
                w.calls.destroyed,
                [(
                    "hv2".to_owned(),
                    "Msvm_PlannedComputerSystem".to_owned(),
                    ids[7].clone()
                )]
            );
        }
    });
    drop(tmp);
}

/// Regression guard: after vmove crashed, what a failed attempt had left on the destination (its
/// disk copies and the folders it created) stayed there, and the resumed run's retry was refused
/// on them (the record of them was in the killed process's memory). vmove is killed (SIGKILL)
/// right after the migration job failed, before it noticed; `vmove resume` removes exactly
/// those copies and folders, from the attempt's record on the destination, and moves the VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmove_resume_after_a_kill_removes_what_the_failed_attempt_left_and_moves_the_vm() {
    let Some(bin) = vmove_bin() else {
        return;
    };
    let mut w = common::world();
    w.migration_ms = 3000;
    let g = w.add_vm("hv1", "web", true, 512, &[10, 20], "E:\\VMs\\web");
    w.faults.job_exception.insert(g.clone(), 1);
    w.faults.failure_leaves_copies.insert(g.clone());
    // Beside where web goes: someone's file and an empty folder, which must stay.
    let readme = "E:\\Moved\\readme.txt";
    {
        let h = w.hosts.get_mut("hv2").unwrap();
        h.write_file(readme, 10);
        h.mkdirs("E:\\Moved\\retired");
    }
    let (fake, _) = common::start(w).await;
    let _clock = fake.run_clock(1.0);
    let copy0 = "E:\\Moved\\web\\Virtual Hard Disks\\web_0.vhdx";
    let copy1 = "E:\\Moved\\web\\Virtual Hard Disks\\web_1.vhdx";
    let web_dirs = [
        "E:\\Moved\\web\\Virtual Hard Disks",
        "E:\\Moved\\web\\Virtual Machines",
        "E:\\Moved\\web",
    ];

    let tmp = tempfile::Builder::new()
        .prefix("vmove-hv-kill-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let journal = dir.join("journal.db");
    // Polls far apart: the job fails (3 s) long before vmove would look at it again (15 s; the
    // resumed run keeps these settings).
    let cfg = write_config(
        &fake,
        &dir,
        &format!(
            r#"journal = '{}'
journal_lease = "1s"
poll_interval = "15s"
recheck_interval = "15s"
job_start_timeout = "15s"
progress_interval = "15s"
stall_timeout = "10m"
backoff_initial = "1s"
backoff_max = "2s"
backoff_jitter = 0.0
max_attempts = 3"#,
            journal.display()
        ),
    );
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let mut child = vmove(&bin, &cfg, &dir, &["evacuate", "hv1", "--to", "hv2"])
        .stdout(log("run.out"))
        .stderr(log("run.err"))
        .spawn()
        .unwrap();
    let job_failed = || {
        fake.with(|w| {
            w.hosts["hv1"]
                .jobs
                .values()
                .any(|j| j.vm == g && j.state == 10)
        })
    };
    let mut waited = Duration::ZERO;
    while !job_failed() {
        assert!(
            waited < Duration::from_secs(60),
            "web's migration job never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let run_err = std::fs::read_to_string(dir.join("run.err")).unwrap();
    fake.with(|w| {
        let dst = &w.hosts["hv2"];
        assert!(
            dst.files.contains_key(&key(copy0)) && dst.files.contains_key(&key(copy1)),
            "the failed attempt's copies were gone before the kill: nothing left for the resume\n{run_err}"
        );
        assert!(w.hosts["hv1"].vms.contains_key(&g));
    });

    // `vmove resume`, a new process, once the killed run's 1 s lease has run out.
    let mut tries = 0;
    let out = loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            vmove(&bin, &cfg, &dir, &["resume"]).output(),
        )
        .await
        .expect("vmove resume did not finish in 2 minutes")
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        tries += 1;
        if err.contains("lease valid until") && tries < 5 {
            continue;
        }
        break out;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- vmove resume stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "vmove resume did not move web");
    fake.with(|w| {
        let (src, dst) = (&w.hosts["hv1"], &w.hosts["hv2"]);
        assert!(!src.vms.contains_key(&g), "web is still on hv1");
        let vm = &dst.vms[&g];
        assert_eq!(vm.disks, vec![copy0.to_string(), copy1.to_string()]);
        // The whole disks (the half copy was removed, then the retry copied them again; the
        // running VM's dynamic disks grew during the move).
        assert_eq!(dst.files[&key(copy0)].size, (10 << 20) + w.live_disk_growth);
        assert_eq!(dst.files[&key(copy1)].size, (20 << 20) + w.live_disk_growth);
        // Removed once each: the two copies and the three folders the failed attempt created.
        let deleted: Vec<&String> = w
            .calls
            .invokes
            .iter()
            .filter(|(h, m)| h == "hv2" && m == "Delete")
            .map(|(_, m)| m)
            .collect();
        assert_eq!(deleted.len(), 5, "{deleted:?}");
        for d in web_dirs {
            assert!(dst.dir_exists(d), "{d} (made again by the retry)");
        }
        // Nothing beside it was touched, and no attempt record of web is left.
        assert_eq!(dst.files[&key(readme)].size, 10);
        assert!(dst.dir_exists("E:\\Moved\\retired") && dst.dir_exists("E:\\Moved"));
        assert!(
            dst.registry
                .keys()
                .all(|k| !k.contains(&g.to_ascii_lowercase())),
            "{:?}",
            dst.registry.keys().collect::<Vec<_>>()
        );
    });
    drop(tmp);
}
