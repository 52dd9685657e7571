//! The live suite: ignored unless environment variables name a real Hyper-V host.
//!
//! ```text
//! VMOVE_HYPERV_LIVE_HOST=hv1.lab.example      # source host (required)
//! VMOVE_HYPERV_LIVE_DEST=hv2.lab.example      # destination host (for the move test)
//! VMOVE_HYPERV_LIVE_TRANSPORT=https|http      # default https
//! VMOVE_HYPERV_LIVE_AUTH=negotiate|ntlm|basic|kerberos # default negotiate
//! VMOVE_HYPERV_LIVE_REALM=CORP.EXAMPLE        # Kerberos realm (negotiate then uses Kerberos)
//! VMOVE_HYPERV_LIVE_KDC=dc1.corp.example:88   # optional (else krb5.conf / DNS SRV)
//! VMOVE_HYPERV_LIVE_CA_FILE=/path/ca.pem      # optional
//! VMOVE_HYPERV_LIVE_VM=<GUID>                 # a DISPOSABLE VM on the source to move (move test)
//! VMOVE_HYPERV_LIVE_PATH='E:\vmove-live'      # destination base folder (move test)
//! VMOVE_HYPERV_LIVE_CLEANUP=1                 # also remove the empty source folders
//! VMOVE_HYPERV_USER / VMOVE_HYPERV_PASSWORD   # credentials (never on the command line)
//! cargo test -p vmove-driver-hyperv --test live -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use vmove_driver::*;
use vmove_driver_hyperv::HyperVDriver;

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn host_table(address: &str) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("address".into(), address.into());
    t.insert(
        "transport".into(),
        env("VMOVE_HYPERV_LIVE_TRANSPORT")
            .unwrap_or("https".into())
            .into(),
    );
    t.insert(
        "auth".into(),
        env("VMOVE_HYPERV_LIVE_AUTH")
            .unwrap_or("negotiate".into())
            .into(),
    );
    if let Some(ca) = env("VMOVE_HYPERV_LIVE_CA_FILE") {
        t.insert("ca_file".into(), ca.into());
    }
    if let Some(realm) = env("VMOVE_HYPERV_LIVE_REALM") {
        t.insert("realm".into(), realm.into());
    }
    if let Some(kdc) = env("VMOVE_HYPERV_LIVE_KDC") {
        t.insert("kdc".into(), kdc.into());
    }
    t
}

fn driver() -> Option<(HyperVDriver, HostId, Option<HostId>)> {
    let Some(src) = env("VMOVE_HYPERV_LIVE_HOST") else {
        eprintln!("*** live suite skipped: VMOVE_HYPERV_LIVE_HOST is not set ***");
        return None;
    };
    let mut hosts = vec![(HostId::new("live-src"), host_table(&src))];
    let dst = env("VMOVE_HYPERV_LIVE_DEST").map(|d| {
        hosts.push((HostId::new("live-dst"), host_table(&d)));
        HostId::new("live-dst")
    });
    Some((
        HyperVDriver::from_config(&hosts).unwrap(),
        HostId::new("live-src"),
        dst,
    ))
}

#[tokio::test]
#[ignore = "needs a real Hyper-V host (VMOVE_HYPERV_LIVE_HOST)"]
async fn live_read_only_calls() {
    let Some((d, src, dst)) = driver() else {
        return;
    };
    for h in std::iter::once(src.clone()).chain(dst) {
        let info = d.host_info(&h).await.unwrap();
        eprintln!("{h}: {info:?}");
        assert!(
            info.migration_limit.is_some(),
            "MaximumActiveVirtualSystemMigration was not read"
        );
        let vms = d.list_vms(&h).await.unwrap();
        eprintln!("{h}: {} VMs", vms.len());
        if let Some(v) = vms.first() {
            let fp = d.footprint(&h, &v.id).await.unwrap();
            eprintln!("{}: {fp:?}", v.name);
            assert!(!fp.config_paths.is_empty());
        }
    }
}

#[tokio::test]
#[ignore = "moves a disposable VM between two real Hyper-V hosts"]
async fn live_move_of_a_disposable_vm() {
    let Some((d, src, Some(dst))) = driver() else {
        return;
    };
    let (Some(vm), Some(path)) = (env("VMOVE_HYPERV_LIVE_VM"), env("VMOVE_HYPERV_LIVE_PATH"))
    else {
        eprintln!("*** live move skipped: set VMOVE_HYPERV_LIVE_VM and VMOVE_HYPERV_LIVE_PATH ***");
        return;
    };
    let info = d
        .list_vms(&src)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.id.as_str().eq_ignore_ascii_case(&vm))
        .unwrap();
    let req = MigrationRequest {
        vm: info.id.clone(),
        vm_name: info.name.clone(),
        source: src.clone(),
        destination: dst.clone(),
        mode: if info.power.is_live() {
            MigrationMode::Live
        } else {
            MigrationMode::Offline
        },
        layout: PathLayout {
            base: Some(path),
            put_in_subfolder: true,
            preserve_drive_letter: false,
        },
        attempt: 1,
        run_id: "live".into(),
    };
    let h = d.start_migration(&req).await.unwrap();
    let end = loop {
        match d.migration_status(&req, &h).await.unwrap() {
            MigrationStatus::Pending | MigrationStatus::Running(_) => {
                tokio::time::sleep(Duration::from_secs(5)).await
            }
            end => break end,
        }
    };
    assert_eq!(end, MigrationStatus::Completed);
    let v = d.verify(&req).await.unwrap();
    assert!(v.is_proof(), "{v:?}");
    let left = d
        .leftovers(&req, LeftoverContext::AfterSuccess)
        .await
        .unwrap();
    eprintln!("source leftovers: {left:?}");
    if env("VMOVE_HYPERV_LIVE_CLEANUP").is_some() {
        for l in &left {
            d.remove_leftover(&req, l, LeftoverContext::AfterSuccess)
                .await
                .unwrap();
        }
    }
}
