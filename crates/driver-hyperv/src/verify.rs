//! A move's proof: its disk half as a pure function, and the driver's `verify` around it.
//!
//! A move is proven from the destination VM's own disk entries: the `HostResource` paths of
//! its `Msvm_StorageAllocationSettingData` on the destination, each of which must exist there
//! (`CIM_DataFile`), and, when this process started the move, every target path it gave
//! `MigrateVirtualSystemToHost` must be one of them.
//!
//! Sizes are NOT compared with the source's. A dynamically expanding or differencing VHDX grows
//! while a running VM writes to it, and during a live shared-nothing move the writes keep
//! reaching the disk (Hyper-V mirrors them to the destination copy before the switch-over), so
//! the destination's file is routinely larger than the size read from the source before the
//! start: `Msvm_VirtualHardDiskSettingData.Type` 3 (dynamic) and 4 (differencing) are
//! expanding formats (class reference), and dynamic is `New-VHD`'s default. The file's existence at the path
//! the destination VM itself uses is what Hyper-V's own completion means for storage; its
//! size says nothing more.

use crate::driver::HyperVDriver;
use vmove_driver::*;

/// What [`prove_disks`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskProof {
    /// Every disk is where the destination VM says it is.
    pub disks_present: bool,
    /// What is wrong, for the verification's detail.
    pub detail: Vec<String>,
}

/// Judges the destination VM's disks.
///
/// - `entries`: each disk path the destination VM's own settings name, with whether a file
///   exists at it on the destination;
/// - `expected`: the target paths this process gave the move, when it started it (after a
///   restart they are unknown: the VM's own entries alone then prove it).
pub fn prove_disks(
    host: &str,
    entries: &[(String, bool)],
    expected: Option<&[String]>,
) -> DiskProof {
    let mut detail = Vec::new();
    for (p, exists) in entries {
        if !exists {
            detail.push(format!("{p} (a disk of the VM on {host}) is missing"));
        }
    }
    if let Some(want) = expected {
        if entries.len() < want.len() {
            detail.push(format!(
                "{} disks on {host}, {} expected",
                entries.len(),
                want.len()
            ));
        }
        for t in want {
            if !entries.iter().any(|(p, _)| p.eq_ignore_ascii_case(t)) {
                detail.push(format!("{t} is not one of the VM's disks on {host}"));
            }
        }
    }
    DiskProof {
        disks_present: detail.is_empty(),
        detail,
    }
}

impl HyperVDriver {
    /// `Driver::verify`: the move's proof (verify.rs for the disk half).
    pub(crate) async fn prove(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        let dst = self.info_of(&req.destination, &req.vm).await?;
        let src = self.info_of(&req.source, &req.vm).await?;
        let mut detail = Vec::new();
        let on_destination = match (&dst, req.mode) {
            (Some(v), MigrationMode::Live) => {
                if v.power != PowerState::Running {
                    detail.push(format!("on {} but {:?}", req.destination, v.power));
                }
                v.power == PowerState::Running
            }
            (Some(_), MigrationMode::Offline) => true,
            (None, _) => {
                detail.push(format!("not on {}", req.destination));
                false
            }
        };
        let mut disks_present = on_destination;
        if on_destination {
            // The destination VM's own disk entries, each checked present there; never sizes
            // compared with the source's (a dynamic disk grows during a live move: verify.rs).
            let mut entries = Vec::new();
            for p in self
                .vhds(&req.destination, req.vm.as_str())
                .await?
                .iter()
                .filter_map(|s| s.get_array("HostResource").into_iter().next())
            {
                let exists = self.file_size(&req.destination, &p).await?.is_some();
                entries.push((p, exists));
            }
            let expected: Option<Vec<String>> = self
                .recall(req)
                .map(|m| m.disks.iter().map(|(_, t, _)| t.clone()).collect());
            let proof =
                crate::verify::prove_disks(req.destination.as_str(), &entries, expected.as_deref());
            disks_present = proof.disks_present;
            detail.extend(proof.detail);
        }
        let stopped_on_source = src.as_ref().is_none_or(|v| !v.power.is_live());
        if !stopped_on_source {
            detail.push(format!("still running on {}", req.source));
        }
        let v = Verification {
            on_destination,
            disks_present,
            stopped_on_source,
            detail: detail.join("; "),
            // Msvm_MigrationJob has no figure of the switchover's pause (its properties:
            // Microsoft's class reference, docs/hyperv.md).
            downtime_ms: None,
        };
        if v.is_proof() {
            // The VM's files on the destination are its own now, proven by the VM itself: its
            // attempt records there go, so that they can never make them look like leftovers
            // (deleting a record is always safe: it can only keep a file; docs/drivers/hyperv.md,
            // Attempt records).
            self.drop_records_after_proof(req).await;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(p: &str, exists: bool) -> (String, bool) {
        (p.to_owned(), exists)
    }

    #[test]
    fn disks_present_at_the_vm_s_own_paths_prove_the_move_whatever_their_size() {
        let want = vec!["E:\\New\\a.vhdx".to_owned(), "E:\\New\\b.vhdx".to_owned()];
        let got = prove_disks(
            "hv2",
            &[e("e:\\new\\A.vhdx", true), e("E:\\New\\b.vhdx", true)],
            Some(&want),
        );
        assert!(got.disks_present, "{got:?}");
        assert!(got.detail.is_empty());
    }

    #[test]
    fn a_missing_file_an_unexpected_path_or_a_lost_disk_is_no_proof() {
        let want = vec!["E:\\New\\a.vhdx".to_owned(), "E:\\New\\b.vhdx".to_owned()];
        let missing = prove_disks(
            "hv2",
            &[e("E:\\New\\a.vhdx", true), e("E:\\New\\b.vhdx", false)],
            Some(&want),
        );
        assert!(!missing.disks_present);
        assert!(missing.detail[0].contains("b.vhdx"), "{missing:?}");
        let elsewhere = prove_disks(
            "hv2",
            &[e("E:\\New\\a.vhdx", true), e("E:\\Old\\b.vhdx", true)],
            Some(&want),
        );
        assert!(!elsewhere.disks_present);
        assert!(
            elsewhere
                .detail
                .iter()
                .any(|d| d.contains("E:\\New\\b.vhdx")),
            "{elsewhere:?}"
        );
        let lost = prove_disks("hv2", &[e("E:\\New\\a.vhdx", true)], Some(&want));
        assert!(!lost.disks_present);
        assert!(
            lost.detail.iter().any(|d| d.contains("1 disks")),
            "{lost:?}"
        );
    }

    #[test]
    fn without_a_record_of_the_start_the_vm_s_own_entries_decide() {
        assert!(prove_disks("hv2", &[e("E:\\x.vhdx", true)], None).disks_present);
        assert!(!prove_disks("hv2", &[e("E:\\x.vhdx", false)], None).disks_present);
        assert!(prove_disks("hv2", &[], None).disks_present);
    }
}
