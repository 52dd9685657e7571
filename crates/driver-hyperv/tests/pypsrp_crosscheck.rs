//! An independent client (pypsrp, from PyPI) against the fake over HTTP + NTLM encryption, so the
//! fake is not only agreeing with our own client. Skipped, loudly, when Python or PyPI is missing.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_enumerates_and_invokes_against_the_fake_over_ntlm_encryption() {
    let py = match common::python_venv(
        "pypsrp-venv",
        "import pypsrp",
        &["pypsrp>=0.8"],
        "is PyPI reachable?",
    ) {
        Ok(p) => p,
        Err(e) => {
            // CI sets VMOVE_REQUIRE_PYPSRP=1 so that a skip cannot pass unnoticed.
            assert!(
                std::env::var("VMOVE_REQUIRE_PYPSRP").is_err(),
                "pypsrp is required: {e}"
            );
            eprintln!("\n*** SKIPPED pypsrp cross-check: {e} ***\n");
            return;
        }
    };
    let mut w = common::world();
    let mut guid = String::new();
    for i in 0..7 {
        let g = w.add_vm(
            "hv1",
            &format!("py{i}"),
            true,
            256,
            &[8],
            &format!("E:\\VMs\\py{i}"),
        );
        if i == 3 {
            guid = g;
        }
    }
    let (fake, _driver) = common::start(w).await;
    let port = fake.addr("hv1").unwrap().port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/pypsrp_check.py");
    let out = tokio::process::Command::new(py)
        .arg(script)
        .args([port.to_string(), guid.clone(), "HV2".into(), "HV1".into()])
        .env("VMOVE_HYPERV_USER", common::USER)
        .env("VMOVE_HYPERV_PASSWORD", common::PASSWORD)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pypsrp failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let vms: Vec<String> = v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(vms, (0..7).map(|i| format!("py{i}")).collect::<Vec<_>>());
    assert!(
        v["pulls"].as_u64().unwrap() >= 1,
        "7 VMs in pages of 5 need a Pull"
    );
    assert_eq!(v["return_value"], 4096);
    assert_eq!(v["job_state"].as_u64().unwrap(), 3, "a new job is starting");
    assert_eq!(
        v["job_class"].as_str(),
        Some("Msvm_MigrationJob"),
        "the returned reference names the job's class"
    );
    assert!(
        v["fault_code"].as_u64().is_some(),
        "pypsrp did not read the WSManFault code: {v}"
    );
    // The fake really started a migration from what pypsrp sent.
    let job = v["job_id"].as_str().unwrap().to_owned();
    let lines = vec![
        "vmove attempt record 1".to_owned(),
        "folder=E:\\Hyper-V\\py0".to_owned(),
    ];
    fake.with(|w| {
        let j = &w.hosts["hv1"].jobs[&job];
        assert_eq!(j.vm, guid);
        assert_eq!(j.destination, "hv2");
        // And stored the registry value pypsrp wrote, each string as sent.
        let key = format!("SOFTWARE\\vmove\\AttemptRecords\\{guid}");
        assert_eq!(
            w.hosts["hv1"].reg_value(&key, "run py attempt 1"),
            Some(&lines)
        );
    });
    let reg = &v["registry"];
    assert_eq!(reg["create"], "0", "{v}");
    assert_eq!(reg["set"], "0", "{v}");
    assert_eq!(reg["names"], serde_json::json!(["run py attempt 1"]), "{v}");
    assert_eq!(reg["value"], serde_json::json!(lines), "{v}");
    assert_eq!(reg["missing"], "2", "{v}");
}
