//! The driver and client against the fake: auth, paging, faults, layouts and the clean-up.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;
use vmove_driver::*;
use vmove_driver_hyperv::HyperVDriver;
use vmove_driver_hyperv::fake::world::key;
use vmove_driver_hyperv::wsman::Credentials;

fn req(
    vm: &str,
    name: &str,
    mode: MigrationMode,
    layout: PathLayout,
    attempt: u32,
) -> MigrationRequest {
    MigrationRequest {
        vm: VmId::new(vm),
        vm_name: name.into(),
        source: HostId::new("hv1"),
        destination: HostId::new("hv2"),
        mode,
        layout,
        attempt,
        run_id: "t".into(),
    }
}

fn base(p: &str) -> PathLayout {
    PathLayout {
        base: Some(p.into()),
        put_in_subfolder: false,
        preserve_drive_letter: false,
    }
}

#[tokio::test]
async fn wrong_password_is_refused_as_permanent_and_never_printed() {
    let (fake, _) = common::start(common::world()).await;
    let bad = HyperVDriver::new(vec![(
        HostId::new("hv1"),
        common::host_config(&fake, "hv1", 5),
        Credentials::new(common::USER, "wrong-password-xyz"),
    )]);
    let err = bad.list_vms(&HostId::new("hv1")).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent, "{err}");
    assert!(
        err.message.contains("401") || err.message.contains("refused"),
        "{err}"
    );
    assert!(!err.message.contains("wrong-password-xyz"));
    assert!(!format!("{bad:?}").contains("wrong-password-xyz"));
}

#[tokio::test]
async fn enumeration_pulls_every_page_and_reports_status() {
    let mut w = common::world();
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(w.add_vm(
            "hv1",
            &format!("vm{i:02}"),
            i % 3 != 0,
            1024,
            &[10],
            &format!("E:\\VMs\\vm{i:02}"),
        ));
    }
    // one stuck backing up, one degraded
    w.hosts
        .get_mut("hv1")
        .unwrap()
        .vms
        .get_mut(&ids[1])
        .unwrap()
        .op_status = vec![11, 32776];
    w.hosts
        .get_mut("hv1")
        .unwrap()
        .vms
        .get_mut(&ids[2])
        .unwrap()
        .op_status = vec![3];
    w.hosts.get_mut("hv1").unwrap().migration_limit = 4;
    let (fake, d) = common::start(w).await;
    let vms = d.list_vms(&HostId::new("hv1")).await.unwrap();
    assert_eq!(vms.len(), 12, "page size 5 means two Pulls");
    assert!(
        fake.with(|w| w.enumerations.is_empty()),
        "every enumeration was pulled to its end"
    );
    let by = |g: &str| vms.iter().find(|v| v.id.as_str() == g).unwrap().clone();
    assert_eq!(by(&ids[0]).power, PowerState::Off);
    assert_eq!(by(&ids[1]).activity, Activity::BackingUp);
    assert_eq!(by(&ids[2]).health, Health::Bad("degraded".into()));
    assert_eq!(by(&ids[4]).memory_bytes, 1024 << 20);
    assert_eq!(by(&ids[4]).disk_bytes, 10 << 20);
    let info = d.host_info(&HostId::new("hv1")).await.unwrap();
    assert_eq!(info.migration_limit, Some(4));
    assert_eq!(info.active_migrations, 0);
    // A VM stuck backing up is refused as busy (transient).
    let r = req(&ids[1], "vm01", MigrationMode::Live, base("E:\\New"), 1);
    assert_eq!(
        d.start_migration(&r).await.unwrap_err().class,
        ErrorClass::Transient
    );
}

#[tokio::test]
async fn in_flight_migrations_count_on_both_hosts_and_vm_shows_migrating() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10], "E:\\VMs\\web");
    w.hosts.get_mut("hv2").unwrap().foreign_migrations = 1;
    let (fake, d) = common::start(w).await;
    let r = req(&g, "web", MigrationMode::Live, base("E:\\New"), 1);
    let h = d.start_migration(&r).await.unwrap();
    assert_eq!(d.host_info(&r.source).await.unwrap().active_migrations, 1);
    assert_eq!(
        d.host_info(&r.destination).await.unwrap().active_migrations,
        2,
        "someone else's migration counts too"
    );
    fake.advance(Duration::from_millis(1600));
    let on_src = d
        .list_vms(&r.source)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.id.as_str() == g)
        .unwrap();
    assert_eq!(on_src.activity, Activity::MigratingOut);
    assert_eq!(on_src.health, Health::InService);
    assert!(
        matches!(d.migration_status(&r, &h).await.unwrap(), MigrationStatus::Running(p) if p.percent == Some(53))
    );
    assert_eq!(
        common::run_to_end(&fake, &d, &r, &h).await,
        MigrationStatus::Completed
    );
    assert!(d.verify(&r).await.unwrap().is_proof());
    assert_eq!(d.host_info(&r.source).await.unwrap().active_migrations, 0);
}

#[tokio::test]
async fn return_values_32768_and_32775_and_job_exception_are_failures_to_retry() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "flaky", true, 512, &[10], "E:\\VMs\\flaky");
    w.faults
        .migrate_return
        .insert(g.clone(), [32768, 32775].into());
    w.faults.job_exception.insert(g.clone(), 1);
    let (fake, d) = common::start(w).await;
    let r = req(&g, "flaky", MigrationMode::Live, base("E:\\New"), 1);
    let e1 = d.start_migration(&r).await.unwrap_err();
    assert_eq!((e1.class, e1.code), (ErrorClass::Transient, Some(32768)));
    let e2 = d
        .start_migration(&req(&g, "flaky", MigrationMode::Live, base("E:\\New"), 2))
        .await
        .unwrap_err();
    assert_eq!((e2.class, e2.code), (ErrorClass::Transient, Some(32775)));
    let r3 = req(&g, "flaky", MigrationMode::Live, base("E:\\New"), 3);
    let h3 = d.start_migration(&r3).await.unwrap();
    match common::run_to_end(&fake, &d, &r3, &h3).await {
        MigrationStatus::Failed(f) => {
            assert_eq!(f.class, ErrorClass::Transient);
            assert!(
                f.message.contains("failed at migration source"),
                "{}",
                f.message
            );
        }
        other => panic!("JobState 10 gave {other:?}"),
    }
    assert!(d.locate(&r3).await.unwrap().on_source.is_some());
    let r4 = req(&g, "flaky", MigrationMode::Live, base("E:\\New"), 4);
    let h4 = d.start_migration(&r4).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r4, &h4).await,
        MigrationStatus::Completed
    );
}

#[tokio::test]
async fn http_500_401_timeouts_and_timeout_faults_are_classified() {
    let (fake, d) = common::start(common::world()).await;
    let hv1 = HostId::new("hv1");
    fake.with(|w| w.faults.http_status.insert("hv1".into(), [500].into()));
    assert_eq!(
        d.host_info(&hv1).await.unwrap_err().class,
        ErrorClass::Transient
    );
    fake.with(|w| w.faults.timeout_fault.insert("hv1".into(), 1));
    let e = d.list_vms(&hv1).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("2150858793"), "{e}");
    fake.with(|w| w.faults.http_status.insert("hv1".into(), [401].into()));
    assert_eq!(
        d.list_vms(&hv1).await.unwrap_err().class,
        ErrorClass::Permanent
    );
    // and after each failure the next call works on a fresh, re-authenticated connection
    assert!(d.list_vms(&hv1).await.is_ok());
}

#[tokio::test]
async fn a_host_that_never_answers_times_out_as_transient() {
    let (fake, _) = common::start(common::world()).await;
    let d = HyperVDriver::new(vec![(
        HostId::new("hv1"),
        common::host_config(&fake, "hv1", 1),
        common::creds(),
    )]);
    assert!(d.list_vms(&HostId::new("hv1")).await.is_ok());
    fake.with(|w| w.faults.hang.insert("hv1".into(), 1));
    let e = d.list_vms(&HostId::new("hv1")).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("did not answer"), "{e}");
}

#[tokio::test]
async fn unmigratable_vm_is_refused_before_any_move() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "pinned", true, 512, &[10], "E:\\VMs\\pinned");
    w.faults.unmigratable.insert(g.clone());
    let (fake, d) = common::start(w).await;
    let e = d
        .start_migration(&req(&g, "pinned", MigrationMode::Live, base("E:\\New"), 1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::DestinationRefused);
    assert!(!fake.with(|w| {
        w.calls
            .invokes
            .iter()
            .any(|(_, m)| m == "MigrateVirtualSystemToHost")
    }));
}

#[tokio::test]
async fn preserve_drive_letter_and_subfolder_layouts_land_where_the_seed_puts_them() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "db", false, 512, &[10, 20], "E:\\VMs\\db");
    // move the second disk to C: on the source
    {
        let h = w.hosts.get_mut("hv1").unwrap();
        let vm = h.vms.get_mut(&g).unwrap();
        let old = vm.disks[1].clone();
        vm.disks[1] = "C:\\Data\\db\\db_1.vhdx".into();
        let f = h.files.remove(&key(&old)).unwrap();
        h.write_file("C:\\Data\\db\\db_1.vhdx", f.size);
    }
    let (fake, d) = common::start(w).await;
    let layout = PathLayout {
        base: Some("E:\\Hyper-V".into()),
        put_in_subfolder: true,
        preserve_drive_letter: true,
    };
    let r = req(&g, "db", MigrationMode::Offline, layout, 1);
    let h = d.start_migration(&r).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r, &h).await,
        MigrationStatus::Completed
    );
    let fp = d.footprint(&r.destination, &r.vm).await.unwrap();
    let paths: Vec<_> = fp.disks.iter().map(|d| d.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            "E:\\Hyper-V\\db\\db_0.vhdx".to_string(),
            "C:\\Hyper-V\\db\\db_1.vhdx".into()
        ]
    );
    assert_eq!(fp.config_paths, vec!["E:\\Hyper-V\\db".to_string()]);
    let v = d.verify(&r).await.unwrap();
    assert!(v.is_proof(), "{v:?}");
    let off = d
        .list_vms(&r.destination)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.id == r.vm)
        .unwrap();
    assert_eq!(off.power, PowerState::Off, "a powered-off VM stays off");
}

#[tokio::test]
async fn cleanup_removes_only_empty_source_folders_and_never_first_level_ones() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "app", true, 512, &[10], "E:\\VMs\\app");
    // someone's file in the VM's folder: that folder (and so E:\VMs\app) must stay
    w.hosts
        .get_mut("hv1")
        .unwrap()
        .write_file("E:\\VMs\\app\\Virtual Hard Disks\\notes.txt", 5);
    let (fake, d) = common::start(w).await;
    let r = req(&g, "app", MigrationMode::Live, base("E:\\New\\app"), 1);
    let h = d.start_migration(&r).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r, &h).await,
        MigrationStatus::Completed
    );
    let left = d
        .leftovers(&r, LeftoverContext::AfterSuccess)
        .await
        .unwrap();
    let whats: Vec<_> = left.iter().map(|l| l.what.to_ascii_lowercase()).collect();
    assert!(
        whats.contains(&"e:\\vms\\app\\virtual machines".to_string()),
        "{whats:?}"
    );
    assert!(
        whats.contains(&"e:\\vms\\app\\snapshots".to_string()),
        "{whats:?}"
    );
    assert!(
        !whats
            .iter()
            .any(|w| w == "e:\\vms\\app\\virtual hard disks"),
        "a folder holding a file is listed"
    );
    assert!(
        !whats.iter().any(|w| w == "e:\\vms\\app"),
        "a folder with a non-empty subfolder is listed"
    );
    assert!(
        !whats.iter().any(|w| w == "e:\\vms"),
        "a first-level folder is listed"
    );
    assert!(
        left.iter()
            .all(|l| l.kind == LeftoverKind::EmptyFolder && l.host == r.source)
    );
    for l in &left {
        d.remove_leftover(&r, l, LeftoverContext::AfterSuccess)
            .await
            .unwrap();
    }
    fake.with(|w| {
        let h = &w.hosts["hv1"];
        assert!(!h.dir_exists("E:\\VMs\\app\\Virtual Machines"));
        assert!(!h.dir_exists("E:\\VMs\\app\\Snapshots"));
        assert!(h.dir_exists("E:\\VMs\\app\\Virtual Hard Disks"));
        assert!(
            h.files
                .contains_key(&key("E:\\VMs\\app\\Virtual Hard Disks\\notes.txt"))
        );
        assert!(h.dir_exists("E:\\VMs\\app"));
        assert!(h.dir_exists("E:\\VMs"));
    });
    // Asking to remove a non-empty or first-level folder is refused, and nothing is deleted.
    for what in ["E:\\VMs\\app", "E:\\VMs"] {
        let l = Leftover {
            host: HostId::new("hv1"),
            kind: LeftoverKind::EmptyFolder,
            what: what.into(),
        };
        assert!(
            d.remove_leftover(&r, &l, LeftoverContext::AfterSuccess)
                .await
                .is_err()
        );
    }
    assert!(fake.with(|w| w.hosts["hv1"].dir_exists("E:\\VMs\\app")));
    // CIM_DataFile was asked with the drive letter kept out of Path (the seed's bug).
    let q = fake.with(|w| w.calls.queries.clone());
    assert!(
        q.iter().any(|(_, q)| q
            .contains("CIM_DataFile WHERE Drive='E:' AND Path='\\\\vms\\\\app\\\\snapshots\\\\'")),
        "{:?}",
        q.iter()
            .filter(|(_, q)| q.contains("CIM_DataFile WHERE Drive"))
            .take(3)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn from_config_reads_a_private_credentials_file_and_refuses_unknown_keys() {
    let (fake, _) = common::start(common::world()).await;
    let dir = tempfile::tempdir().unwrap();
    let cf = dir.path().join("hv.toml");
    std::fs::write(
        &cf,
        format!(
            "user = 'LAB\\vmove-ops'\npassword = '{}'\n",
            common::PASSWORD
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cf, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let port = fake.addr("hv1").unwrap().port();
    let table: toml::Table = format!(
        "driver = 'hyperv'\nmax_migrations = 2\npath = 'E:\\VMs'\naddress = '127.0.0.1'\nport = {port}\ntransport = 'http'\nauth = 'negotiate'\ncredentials_file = '{}'\n",
        cf.display()
    )
    .parse()
    .unwrap();
    let d = HyperVDriver::from_config(&[(HostId::new("hv1"), table.clone())]).unwrap();
    assert!(d.host_info(&HostId::new("hv1")).await.is_ok());
    let mut bad = table;
    bad.insert("pasword".into(), toml::Value::String("x".into()));
    let e = HyperVDriver::from_config(&[(HostId::new("hv1"), bad)]).unwrap_err();
    assert!(e.message.contains("pasword"), "{e}");
}

#[tokio::test]
async fn one_connection_per_host_session_carries_every_request() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "one", true, 256, &[8], "E:\\VMs\\one");
    let (fake, d) = common::start(w).await;
    let hv1 = HostId::new("hv1");
    d.host_info(&hv1).await.unwrap();
    d.list_vms(&hv1).await.unwrap();
    d.footprint(&hv1, &VmId::new(g)).await.unwrap();
    let (conns, queries) = fake.with(|w| {
        (
            w.calls.connections.get("hv1").copied(),
            w.calls.queries.len(),
        )
    });
    assert!(queries > 5);
    assert_eq!(
        conns,
        Some(1),
        "NTLM binds to the TCP connection: one per session"
    );
    // NTLM's sealing header is its 16-byte signature.
    let lens = fake.with(|w| w.calls.sealed_header_lens.clone());
    assert_eq!(
        lens.get(vmove_driver_hyperv::wsman::sealing::PROTOCOL)
            .map(|s| s.iter().copied().collect::<Vec<_>>()),
        Some(vec![16]),
        "{lens:?}"
    );
}

#[tokio::test]
async fn list_vms_reuses_disk_sizes_it_read_recently() {
    let mut w = common::world();
    for i in 0..4 {
        w.add_vm(
            "hv1",
            &format!("c{i}"),
            true,
            256,
            &[8],
            &format!("E:\\VMs\\c{i}"),
        );
    }
    let (fake, d) = common::start(w).await;
    let hv1 = HostId::new("hv1");
    let count = || {
        fake.with(|w| {
            w.calls
                .queries
                .iter()
                .filter(|(_, q)| q.contains("CIM_DataFile WHERE Name"))
                .count()
        })
    };
    let first = d.list_vms(&hv1).await.unwrap();
    let after_first = count();
    let second = d.list_vms(&hv1).await.unwrap();
    assert_eq!(after_first, 4);
    assert_eq!(count(), 4, "the second listing asked for the sizes again");
    assert_eq!(first, second);
}
