//! End to end: the real `vmove` binary evacuates a fake Hyper-V host of 20 VMs over HTTP + NTLM
//! sealing (some backing up for a while, some off, one failing twice then succeeding, its failed
//! job leaving partial disk copies on the destination, and the folders it created for them,
//! that are removed before the retry), and
//! the empty folders left on the source are removed while a non-empty one is kept.
//!
//! Needs the CLI binary: `VMOVE_BIN=/path/to/vmove cargo test -p vmove-driver-hyperv
//! --features test-util --test cli_e2e`. Skipped, loudly, without it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;
use vmove_driver_hyperv::fake::world::key;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmove_evacuate_of_a_20_vm_fake_host_over_ntlm() {
    let Some(bin) = std::env::var_os("VMOVE_BIN") else {
        assert!(
            std::env::var("VMOVE_REQUIRE_CLI_E2E").is_err(),
            "VMOVE_BIN is required"
        );
        eprintln!("\n*** SKIPPED cli_e2e: set VMOVE_BIN to the vmove binary ***\n");
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
    w.tick();
    let (fake, _) = common::start(w).await;
    let _clock = fake.run_clock(1.0);

    let dir = std::env::temp_dir().join(format!("vmove-hv-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = format!(
        r#"[defaults]
poll_interval = "2s"
recheck_interval = "1s"
job_start_timeout = "2s"
progress_interval = "500ms"
backoff_initial = "1s"
backoff_max = "2s"
backoff_jitter = 0.0
max_attempts = 3
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
    std::fs::write(dir.join("vmove.toml"), cfg).unwrap();
    let child = tokio::process::Command::new(bin)
        .args(["--config"])
        .arg(dir.join("vmove.toml"))
        .args(["evacuate", "hv1", "--to", "hv2", "--plain"])
        .current_dir(&dir)
        .env("VMOVE_HYPERV_USER", common::USER)
        .env("VMOVE_HYPERV_PASSWORD", common::PASSWORD)
        .output();
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
                    (16 + 7) << 20
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
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
