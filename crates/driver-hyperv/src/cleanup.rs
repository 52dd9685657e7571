//! Clean-up: the driver's leftovers (what a failed attempt left on the destination, or a
//! finished move on the source; listed, then each checked again and removed), and how a folder
//! is removed through WMI without deleting what someone puts into it after the check.
//!
//! # The finding (issue 13, defect 10)
//! Whether `Win32_Directory.Delete` refuses a folder that is not empty is **not proven**, and
//! the sources lean the other way:
//! - Microsoft's page for the method (`desktop-src/CIMWin32Prov/delete-method-in-class-
//!   win32-directory.md`) says only that it "will delete the logical file (or directory)
//!   specified in the object path" and that the folder "is immediately removed"; return value
//!   14 "The directory is not empty" is one line of the table every `CIM_LogicalFile` method
//!   shares (the same table is on `CIM_DataFile.Delete`, where it cannot apply), not a
//!   statement about this method;
//! - its sibling `DeleteEx` (same class, "an extended version of the Delete method") takes a
//!   `StartFileName`, "the child file (or directory) to use as a starting point", and answers a
//!   `StopFileName`, "the file (or directory) where the method failed": a method that walks
//!   the folder's children and deletes them, resumable where it stopped. A method that only
//!   removed an empty folder would have no child to start from or stop at;
//! - no independent report we could find (searches of public code, issues and Q&A pages) shows
//!   it answering 14 for a folder with files, and the class page's own example deletes
//!   `C:\Scripts` without emptying it first.
//!
//! So vmove assumes it may recurse. A check that a folder is empty followed by that call could
//! then delete whatever someone put into the folder between the check and the call. WMI offers
//! no folder removal with `rmdir` semantics (the file system's `RemoveDirectory`, which refuses
//! a non-empty folder); the only other way would be running a program on the host
//! (`Win32_Process.Create` of `cmd /c rd`), which needs rights vmove does not ask for and hands
//! a path to a command interpreter.
//!
//! # What vmove does
//! It never deletes a folder under a name anyone else knows:
//! 1. the folder is checked empty (no subfolder, no file) as before;
//! 2. it is renamed (`Win32_Directory.Rename`, one rename in the file system: atomic) to
//!    `<name>.vmove-removing-<random>`, in the same parent. From then on nothing can be put
//!    into it by path: the old path no longer exists (a program that writes there creates a new
//!    folder of that name, untouched by what follows), and the new name is known to no one.
//!    Windows refuses to rename a folder while a file in it is open;
//! 3. the renamed folder is checked empty again, and only then deleted
//!    (`Win32_Directory.Delete`). Whatever the delete may take along is what this last check
//!    saw: nothing;
//! 4. if the second check finds anything (it arrived between 1 and 2), the folder is renamed
//!    back and kept; if that rename fails, the error names both paths for a person.
//!
//! What remains is a program that held the folder itself open from before the rename and
//! creates a file through that handle between 3 and the delete: no WMI call can exclude it,
//! and the window is one request long.
//!
//! Files are unaffected: `CIM_DataFile.Delete` deletes one file, the one the driver checked.

use crate::cim::{CIMV2, CimInstance, CimValue, Epr, V2, class_uri};
use crate::driver::HyperVDriver;
use crate::error::{RV_COMPLETED, RV_JOB_STARTED, rv_error, write_err};
use crate::paths::{self, wql_str};
use crate::wsman::Param;
use vmove_driver::*;

/// The name a folder is set aside under before its removal (same parent, so the rename never
/// moves data between volumes).
pub fn aside_name(path: &str, token: &str) -> String {
    format!("{}.vmove-removing-{token}", path.trim_end_matches('\\'))
}

/// The words for a person when a set-aside folder could not be handled.
pub fn put_back_words(aside: &str, path: &str) -> String {
    format!("it is kept as {aside}; rename it back to {path} (or remove it) by hand")
}

impl HyperVDriver {
    /// Why a failed attempt's files on the destination must not be touched now, if they must
    /// not: the VM must be on the source, not on the destination, and not moving.
    pub(crate) async fn failed_attempt_hold(
        &self,
        req: &MigrationRequest,
    ) -> DriverResult<Option<String>> {
        if self.vm_instance(&req.destination, &req.vm).await?.is_some() {
            return Ok(Some(format!(
                "VM {} is on {}: its files there are its own",
                req.vm, req.destination
            )));
        }
        if self.vm_instance(&req.source, &req.vm).await?.is_none() {
            return Ok(Some(format!(
                "VM {} is not on {} either: the destination copies may be all there is",
                req.vm, req.source
            )));
        }
        if let Some(job) = self.running_job_of(&req.source, req.vm.as_str()).await? {
            return Ok(Some(format!(
                "a migration of VM {} is running ({job})",
                req.vm
            )));
        }
        Ok(None)
    }

    /// Checks that `folder` on `host` is one an attempt of the VM created on its destination (an
    /// attempt record names it), claimed by no other VM's attempt, and that the VM is safe on the
    /// source; why not, if not.
    pub(crate) async fn attempt_folder_refusal(
        &self,
        req: &MigrationRequest,
        host: &HostId,
        folder: &str,
    ) -> DriverResult<Option<String>> {
        if let Some(why) = self.not_recorded(req, host, folder, "folder").await? {
            return Ok(Some(why));
        }
        if Self::folder_claimed_by_another_vm(&self.others_records(req, host).await?, folder) {
            return Ok(Some(format!(
                "{folder} on {host} may receive another VM's move: kept"
            )));
        }
        Ok(self
            .failed_attempt_hold(req)
            .await?
            .map(|why| format!("{folder} kept: {why}")))
    }

    /// Deletes a failed attempt's disk copy on the destination after checking again that it is
    /// one, that the VM is safe on the source, and that no VM on the destination uses the file.
    pub(crate) async fn remove_attempt_copy(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
    ) -> DriverResult<()> {
        let host = &leftover.host;
        let path = leftover.what.as_str();
        if self.file_size(host, path).await?.is_none() {
            // Already gone (removed by an earlier call whose answer was lost, or by someone):
            // nothing to prove, nothing touched.
            self.forget_removed(req, host, path).await;
            return Ok(());
        }
        if let Some(why) = self.not_recorded(req, host, path, "file").await? {
            return Err(DriverError::permanent(why));
        }
        if Self::claimed_by_another_vm(&self.others_records(req, host).await?, path) {
            return Err(DriverError::permanent(format!(
                "{path} on {host} is also a target of another VM's move: kept"
            )));
        }
        if let Some(why) = self.failed_attempt_hold(req).await? {
            return Err(DriverError::permanent(format!("{path} kept: {why}")));
        }
        if self
            .disks_in_use(host)
            .await?
            .contains(&path.to_ascii_lowercase())
        {
            return Err(DriverError::permanent(format!(
                "{path} on {host} is used by a VM there: kept"
            )));
        }
        match self.cim_delete(host, "CIM_DataFile", path).await? {
            Some(0) => {
                self.forget_removed(req, host, path).await;
                Ok(())
            }
            Some(rv) => Err(DriverError::permanent(format!(
                "CIM_DataFile.Delete of {path} on {host} returned {rv}: kept"
            ))
            .with_code(rv as i64)),
            None => Err(DriverError::indeterminate(
                "CIM_DataFile.Delete returned no ReturnValue",
            )),
        }
    }

    /// Removes an empty folder without ever deleting what someone puts into it meanwhile
    /// (cleanup.rs): renames it to a name of its own (`Win32_Directory.Rename`, atomic), checks
    /// that folder empty, and deletes it; when it is not empty it is renamed back and kept.
    pub(crate) async fn remove_empty_folder(&self, host: &HostId, path: &str) -> DriverResult<()> {
        let aside = crate::cleanup::aside_name(path, &uuid::Uuid::new_v4().simple().to_string());
        match self.cim_rename(host, path, &aside).await? {
            Some(0) => {}
            Some(rv) => {
                return Err(DriverError::permanent(format!(
                    "{path} on {host} could not be set aside for removal (Win32_Directory.Rename returned {rv}): kept"
                ))
                .with_code(rv as i64));
            }
            None => {
                return Err(DriverError::indeterminate(
                    "Win32_Directory.Rename returned no ReturnValue",
                ));
            }
        }
        let empty = matches!(
            self.folder_contents(host, &aside).await,
            Ok(Some((ref subdirs, 0))) if subdirs.is_empty()
        );
        if empty {
            return match self.cim_delete(host, "Win32_Directory", &aside).await? {
                Some(0) => Ok(()),
                Some(rv) => Err(DriverError::permanent(format!(
                    "Win32_Directory.Delete of {aside} (set aside from {path}) on {host} returned {rv}: {}",
                    crate::cleanup::put_back_words(&aside, path)
                ))
                .with_code(rv as i64)),
                None => Err(DriverError::indeterminate(
                    "Win32_Directory.Delete returned no ReturnValue",
                )),
            };
        }
        // Something arrived before the rename: back under its name, kept.
        match self.cim_rename(host, &aside, path).await {
            Ok(Some(0)) => Err(DriverError::permanent(format!(
                "{path} on {host} is not empty: kept"
            ))),
            _ => Err(DriverError::permanent(format!(
                "{path} on {host} is not empty and could not be renamed back: {}",
                crate::cleanup::put_back_words(&aside, path)
            ))),
        }
    }

    /// Invokes `Rename(FileName)` on the root\cimv2 `Win32_Directory` named `path`.
    pub(crate) async fn cim_rename(
        &self,
        host: &HostId,
        path: &str,
        to: &str,
    ) -> DriverResult<Option<u32>> {
        let epr = Epr::new(
            class_uri(CIMV2, "Win32_Directory"),
            vec![("Name".into(), path.to_ascii_lowercase())],
        );
        let out = self
            .host(host)?
            .client
            .invoke(
                &epr,
                "Rename",
                &[(
                    "FileName".into(),
                    Param::Value(CimValue::String(to.to_owned())),
                )],
            )
            .await
            .map_err(|e| write_err(host, "Win32_Directory.Rename", e))?;
        Ok(out.get_u32("ReturnValue"))
    }

    /// Invokes `Delete` on the root\cimv2 instance of `class` named `path` (a file, or a folder
    /// set aside and checked empty: remove_empty_folder); its ReturnValue, which the caller reads.
    pub(crate) async fn cim_delete(
        &self,
        host: &HostId,
        class: &str,
        path: &str,
    ) -> DriverResult<Option<u32>> {
        let epr = Epr::new(
            class_uri(CIMV2, class),
            vec![("Name".into(), path.to_ascii_lowercase())],
        );
        let out = self
            .host(host)?
            .client
            .invoke(&epr, "Delete", &[])
            .await
            .map_err(|e| write_err(host, &format!("{class}.Delete"), e))?;
        Ok(out.get_u32("ReturnValue"))
    }

    /// Removes a planned VM of `req.vm` (same GUID) from the destination, the leftover of a
    /// failed attempt that blocks the next one, as Move-VM does before a move and os-win's
    /// `destroy_existing_planned_vm` (migrationutils.py) with
    /// `Msvm_VirtualSystemManagementService.DestroySystem` (destroysystem-msvm-
    /// virtualsystemmanagementservice.md; a planned VM: msvm-plannedcomputersystem.md).
    /// Only while the VM is realized on the source and not on the destination, and no
    /// migration of it runs: then a planned VM of its GUID there can only be an attempt's
    /// leftover (a move in progress would show). `DestroySystem` removes the definition, not
    /// its disks (os-win vmutils.py `destroy_vm`).
    pub(crate) async fn remove_planned_leftover(&self, req: &MigrationRequest) -> DriverResult<()> {
        let (src, dst) = (&req.source, &req.destination);
        let q = format!(
            "SELECT * FROM Msvm_PlannedComputerSystem WHERE Name={}",
            wql_str(req.vm.as_str())
        );
        let found: Vec<CimInstance> = self
            .query(dst, V2, &q)
            .await?
            .into_iter()
            .filter(|p| {
                p.get_str("Name")
                    .is_some_and(|n| n.eq_ignore_ascii_case(req.vm.as_str()))
            })
            .collect();
        let Some(planned) = found.into_iter().next() else {
            return Ok(());
        };
        if self.vm_instance(dst, &req.vm).await?.is_some() {
            return Err(DriverError::permanent(format!(
                "VM {} is on {dst} already, and a planned VM of it too: left for a person",
                req.vm
            )));
        }
        if self.vm_instance(src, &req.vm).await?.is_none() {
            return Err(DriverError::permanent(format!(
                "VM {} is not on {src}: its planned VM on {dst} is not removed",
                req.vm
            )));
        }
        if let Some(job) = self.running_job_of(src, req.vm.as_str()).await? {
            return Err(DriverError::transient(format!(
                "a migration of VM {} is running ({job}): its planned VM on {dst} stays",
                req.vm
            )));
        }
        let target = planned.epr.clone().unwrap_or_else(|| {
            Epr::new(
                class_uri(V2, "Msvm_PlannedComputerSystem"),
                vec![
                    (
                        "CreationClassName".into(),
                        "Msvm_PlannedComputerSystem".into(),
                    ),
                    ("Name".into(), req.vm.as_str().to_owned()),
                ],
            )
        });
        let vmms = crate::cim::management_service_epr(&self.host_name(dst).await?);
        tracing::info!(vm = %req.vm, host = %dst, "removing the planned VM a failed attempt left");
        let out = self
            .host(dst)?
            .client
            .invoke(
                &vmms,
                "DestroySystem",
                &[("AffectedSystem".into(), Param::Ref(target))],
            )
            .await
            .map_err(|e| {
                let mut e = write_err(dst, "DestroySystem of a planned VM", e);
                // Nothing was asked of the migration service: the VM did not move.
                if e.class == ErrorClass::Indeterminate {
                    e.class = ErrorClass::Transient;
                }
                e
            })?;
        match out.get_u32("ReturnValue") {
            Some(RV_COMPLETED) => Ok(()),
            Some(RV_JOB_STARTED) => {
                // A job removes it: the start is asked again once it is gone.
                Err(DriverError::transient(format!(
                    "the planned VM of {} on {dst} is being removed",
                    req.vm
                )))
            }
            Some(rv) => Err(rv_error("DestroySystem of a planned VM", rv)),
            None => Err(DriverError::transient(
                "DestroySystem returned no ReturnValue",
            )),
        }
    }

    /// How a planned VM of `vm` is named as a leftover.
    pub(crate) fn planned_what(vm: &VmId) -> String {
        format!("planned VM {vm}")
    }

    /// The planned VM of `req.vm` on its destination as a leftover of a failed attempt, when
    /// there is one and the VM is safe on its source (on the source, not on the destination,
    /// not migrating: `failed_attempt_hold`).
    pub(crate) async fn planned_leftover(
        &self,
        req: &MigrationRequest,
    ) -> DriverResult<Vec<Leftover>> {
        let q = format!(
            "SELECT * FROM Msvm_PlannedComputerSystem WHERE Name={}",
            wql_str(req.vm.as_str())
        );
        let found = self.query(&req.destination, V2, &q).await?.iter().any(|p| {
            p.get_str("Name")
                .is_some_and(|n| n.eq_ignore_ascii_case(req.vm.as_str()))
        });
        if !found || self.failed_attempt_hold(req).await?.is_some() {
            return Ok(Vec::new());
        }
        Ok(vec![Leftover {
            host: req.destination.clone(),
            kind: LeftoverKind::Definition,
            what: Self::planned_what(&req.vm),
        }])
    }

    /// `Driver::leftovers`: what a failed attempt left on the destination, or a finished
    /// move on the source.
    pub(crate) async fn list_leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        match context {
            LeftoverContext::AfterFailedAttempt => {
                // Only what an attempt record of the VM on the destination names, each file and
                // folder only while nothing else may use it, then a planned VM of it (removed by
                // `remove_planned_leftover`): docs/drivers/hyperv.md, "Clean-up of the
                // destination after a failed attempt", tells the rules and why.
                let planned = self.planned_leftover(req).await?;
                let rec = self.own_record(req).await?;
                if rec.is_empty() {
                    tracing::debug!(vm = %req.vm, host = %req.destination, "no attempt record of the VM on its destination: no file or folder listed");
                    return Ok(planned);
                }
                if let Some(why) = self.failed_attempt_hold(req).await? {
                    tracing::info!(vm = %req.vm, "no destination leftovers listed: {why}");
                    return Ok(Vec::new());
                }
                let others = self.others_records(req, &req.destination).await?;
                let used = self.disks_in_use(&req.destination).await?;
                let mut out = Vec::new();
                for d in &rec.disks {
                    if used.contains(&d.to_ascii_lowercase())
                        || Self::claimed_by_another_vm(&others, d)
                    {
                        continue;
                    }
                    if self.file_size(&req.destination, d).await?.is_some() {
                        out.push(Leftover {
                            host: req.destination.clone(),
                            kind: LeftoverKind::DiskImage,
                            what: d.clone(),
                        });
                    }
                }
                // Then the folders the attempt created, deepest first, each only when it will be
                // empty when its turn comes: its files are all listed copies, its subfolders all
                // listed folders.
                let mut listed: Vec<String> = Vec::new();
                let mut folders = Vec::new();
                for f in &rec.folders {
                    if Self::folder_claimed_by_another_vm(&others, f) {
                        continue;
                    }
                    let Some((subdirs, files)) = self.folder_contents(&req.destination, f).await?
                    else {
                        continue;
                    };
                    let copies_here = out
                        .iter()
                        .filter(|l| {
                            paths::parent(&l.what).is_some_and(|p| p.eq_ignore_ascii_case(f))
                        })
                        .count();
                    if files == copies_here && subdirs.iter().all(|d| listed.contains(d)) {
                        listed.push(f.to_ascii_lowercase());
                        folders.push(Leftover {
                            host: req.destination.clone(),
                            kind: LeftoverKind::EmptyFolder,
                            what: f.clone(),
                        });
                    }
                }
                out.extend(folders);
                out.extend(planned);
                Ok(out)
            }
            LeftoverContext::AfterSuccess => {
                let Some(m) = self.recall(req) else {
                    tracing::warn!(vm = %req.vm, "no record of the source layout (started before a restart?): no folders listed");
                    return Ok(Vec::new());
                };
                if self.vm_instance(&req.source, &req.vm).await?.is_some() {
                    // Still defined on the source: nothing of it may go.
                    return Ok(Vec::new());
                }
                let disks: Vec<String> = m.disks.iter().map(|(s, _, _)| s.clone()).collect();
                // Deepest first: a folder is listed only when it holds no file and every
                // subfolder of it is itself listed (so it will be empty when its turn comes).
                let mut out: Vec<Leftover> = Vec::new();
                let mut listed: Vec<String> = Vec::new();
                for f in paths::cleanup_candidates(
                    &m.guid,
                    &m.config_root,
                    &m.snapshot_root,
                    &m.swap_root,
                    &disks,
                ) {
                    let Some((subdirs, files)) = self.folder_contents(&req.source, &f).await?
                    else {
                        continue;
                    };
                    if files == 0 && subdirs.iter().all(|d| listed.contains(d)) {
                        listed.push(f.to_ascii_lowercase());
                        out.push(Leftover {
                            host: req.source.clone(),
                            kind: LeftoverKind::EmptyFolder,
                            what: f,
                        });
                    }
                }
                Ok(out)
            }
        }
    }

    /// `Driver::remove_leftover`: one listed leftover, each checked again first.
    pub(crate) async fn remove_one_leftover(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        if context == LeftoverContext::AfterFailedAttempt
            && leftover.kind == LeftoverKind::DiskImage
        {
            return self.remove_attempt_copy(req, leftover).await;
        }
        if context == LeftoverContext::AfterFailedAttempt
            && leftover.kind == LeftoverKind::Definition
        {
            if leftover.host != req.destination || leftover.what != Self::planned_what(&req.vm) {
                return Err(DriverError::permanent(format!(
                    "{} on {} is not a planned VM of {} on its destination: kept",
                    leftover.what, leftover.host, req.vm
                )));
            }
            // Checks again that it is the VM's and that the VM is safe on its source; a planned
            // VM already gone is success.
            return self.remove_planned_leftover(req).await;
        }
        if leftover.kind != LeftoverKind::EmptyFolder {
            return Err(DriverError::permanent(format!(
                "the Hyper-V driver removes empty folders, and disk copies and folders of a failed attempt, not {:?} ({context:?})",
                leftover.kind
            )));
        }
        let host = &leftover.host;
        let path = leftover.what.trim_end_matches('\\');
        let failed_attempt = context == LeftoverContext::AfterFailedAttempt;
        if failed_attempt && !self.folder_exists(host, path).await? {
            // Already gone: nothing to prove, nothing touched.
            self.forget_removed(req, host, path).await;
            return Ok(());
        }
        if failed_attempt {
            if let Some(why) = self.attempt_folder_refusal(req, host, path).await? {
                return Err(DriverError::permanent(why));
            }
        }
        if paths::depth(path) < 2 || paths::drive(path).is_none() {
            return Err(DriverError::permanent(format!(
                "{path} is a volume or a first-level folder: never removed"
            )));
        }
        if host == &req.source && self.vm_instance(host, &req.vm).await?.is_some() {
            return Err(DriverError::permanent(format!(
                "VM {} is still defined on {host}: its folders stay",
                req.vm
            )));
        }
        match self.folder_contents(host, path).await? {
            None => {
                // Already gone.
                if failed_attempt {
                    self.forget_removed(req, host, path).await;
                }
                Ok(())
            }
            Some((subdirs, files)) if !subdirs.is_empty() || files > 0 => Err(
                DriverError::permanent(format!("{path} on {host} is not empty: kept")),
            ),
            // Empty now: set aside under a name nobody else knows, checked empty there, and
            // only then deleted (Win32_Directory.Delete may take along what it holds:
            // cleanup.rs).
            Some(_) => {
                self.remove_empty_folder(host, path).await?;
                if failed_attempt {
                    self.forget_removed(req, host, path).await;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_set_aside_beside_itself_under_a_name_of_its_own() {
        assert_eq!(
            aside_name("E:\\VMs\\app\\Snapshots\\", "0f1e"),
            "E:\\VMs\\app\\Snapshots.vmove-removing-0f1e"
        );
        assert!(put_back_words("E:\\a.x", "E:\\a").contains("rename it back to E:\\a"));
    }
}
