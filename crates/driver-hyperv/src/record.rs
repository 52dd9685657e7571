//! Attempt records: durable proof, kept on the destination host itself, of what one attempt of
//! a move may create there.
//!
//! After a failed shared-nothing move the destination may hold the VHD copies Hyper-V made in the
//! paths vmove gave it, and the folders it created for them. Only those may be removed, and only
//! a record made BEFORE `MigrateVirtualSystemToHost` can tell them from files and folders that
//! were there already. The process that started the attempt knows; a process started after a
//! crash of vmove does not, unless the record outlives it. So the driver writes it into the
//! destination's registry through WMI's standard registry provider (`StdRegProv`, static
//! methods invoked over WS-Management like every other call of the driver):
//!
//! - key `HKEY_LOCAL_MACHINE\SOFTWARE\vmove\AttemptRecords\<VM GUID>`,
//! - one `REG_MULTI_SZ` value per attempt, named `run <run id> attempt <n>`, whose strings are
//!   [`HEADER`], then `disk=<path>` for each destination disk path (each checked absent) and
//!   `folder=<path>` for each folder above them that did not exist (deepest first).
//!
//! A value is written whole or not at all (`RegSetValueEx`), so a record is never half there.
//! The order of operations in `start_migration` (prepare.rs), what a crash at each step leaves,
//! and when records are dropped: docs/drivers/hyperv.md, "What the driver does", Attempt
//! records (the full story, told once there).

use crate::cim::{CimInstance, CimValue, Epr, class_uri};
use crate::driver::HyperVDriver;
use crate::error::{read_err, write_err};
use crate::paths;
use crate::wsman::{Param, WsmanClient};
use vmove_driver::*;

/// The namespace of the registry provider (it is also in `root\cimv2` since Windows Vista).
const NS: &str = "root/default";
/// `HKEY_LOCAL_MACHINE`.
const HKLM: u32 = 0x8000_0002;
/// The key under which each VM with records has a subkey named by its GUID.
pub const KEY: &str = "SOFTWARE\\vmove\\AttemptRecords";
/// The first string of every record; a record that does not start with it proves nothing.
pub const HEADER: &str = "vmove attempt record 1";
/// Win32 `ERROR_FILE_NOT_FOUND`: no such key or value.
const NOT_FOUND: u32 = 2;

/// What one attempt (or, merged, several attempts of one VM) may have created on a host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Destination disk paths, each absent when the attempt checked it.
    pub disks: Vec<String>,
    /// Folders above them that did not exist when the attempt checked, deepest first.
    pub folders: Vec<String>,
}

impl AttemptRecord {
    /// The record's strings.
    pub fn to_lines(&self) -> Vec<String> {
        let mut out = vec![HEADER.to_owned()];
        out.extend(self.disks.iter().map(|d| format!("disk={d}")));
        out.extend(self.folders.iter().map(|f| format!("folder={f}")));
        out
    }

    /// Reads a record's strings; anything it does not know makes it prove nothing (an error).
    pub fn from_lines(lines: &[String]) -> Result<AttemptRecord, String> {
        let Some((first, rest)) = lines.split_first() else {
            return Err("empty".into());
        };
        if first != HEADER {
            return Err(format!("starts with '{first}', not '{HEADER}'"));
        }
        let mut r = AttemptRecord::default();
        for l in rest {
            // A disk is a file on a volume; a folder is never a volume nor a first-level folder
            // of one (the seed's rule: those are never removed).
            let valid =
                |p: &str, depth: usize| paths::drive(p).is_some() && paths::depth(p) >= depth;
            match l.split_once('=') {
                Some(("disk", p)) if valid(p, 1) => r.disks.push(p.to_owned()),
                Some(("folder", p)) if valid(p, 2) => r.folders.push(p.to_owned()),
                _ => return Err(format!("unknown line '{l}'")),
            }
        }
        Ok(r)
    }

    /// Whether it names nothing.
    pub fn is_empty(&self) -> bool {
        self.disks.is_empty() && self.folders.is_empty()
    }

    /// Adds what `other` names (no duplicates); folders kept deepest first.
    pub fn merge(&mut self, other: &AttemptRecord) {
        for d in &other.disks {
            if !self.disks.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                self.disks.push(d.clone());
            }
        }
        for f in &other.folders {
            if !self.folders.iter().any(|x| x.eq_ignore_ascii_case(f)) {
                self.folders.push(f.clone());
            }
        }
        self.folders
            .sort_by_key(|f| std::cmp::Reverse(paths::depth(f)));
    }

    /// Drops `path` (a disk or a folder); whether it was named.
    pub fn forget(&mut self, path: &str) -> bool {
        let before = self.disks.len() + self.folders.len();
        let p = path.trim_end_matches('\\');
        self.disks.retain(|d| !d.eq_ignore_ascii_case(p));
        self.folders
            .retain(|f| !f.trim_end_matches('\\').eq_ignore_ascii_case(p));
        before != self.disks.len() + self.folders.len()
    }
}

/// The name of attempt `req`'s record.
pub fn value_name(req: &MigrationRequest) -> String {
    format!("run {} attempt {}", req.run_id, req.attempt)
}

/// The key of a VM's records; refused for an id that cannot be one key name.
fn vm_key(vm: &VmId) -> DriverResult<String> {
    let id = vm.as_str();
    if id.is_empty() || id.len() > 200 || id.contains(['\\', '\0']) {
        return Err(DriverError::permanent(format!(
            "VM id '{id}' cannot name an attempt record"
        )));
    }
    Ok(format!("{KEY}\\{id}"))
}

/// One host's registry, through `StdRegProv`.
#[derive(Debug)]
pub struct Registry<'a> {
    /// The host's client.
    pub client: &'a WsmanClient,
    /// The host (for messages).
    pub host: &'a HostId,
}

/// A record as stored: its value name and what it names.
pub type Named = (String, AttemptRecord);

impl Registry<'_> {
    async fn call(
        &self,
        method: &str,
        key: &str,
        extra: Vec<(String, Param)>,
        writes: bool,
    ) -> DriverResult<(u32, CimInstance)> {
        let epr = Epr::new(class_uri(NS, "StdRegProv"), Vec::new());
        let mut params = vec![
            ("hDefKey".to_owned(), Param::Value(CimValue::U32(HKLM))),
            (
                "sSubKeyName".to_owned(),
                Param::Value(CimValue::String(key.to_owned())),
            ),
        ];
        params.extend(extra);
        let what = format!("StdRegProv.{method} of HKLM\\{key}");
        let out = self
            .client
            .invoke(&epr, method, &params)
            .await
            .map_err(|e| {
                if writes {
                    write_err(self.host, &what, e)
                } else {
                    read_err(self.host, &what, e)
                }
            })?;
        match out.get_u32("ReturnValue") {
            Some(rv) => Ok((rv, out)),
            None if writes => Err(DriverError::indeterminate(format!(
                "{what} on {} returned no ReturnValue",
                self.host
            ))),
            None => Err(DriverError::transient(format!(
                "{what} on {} returned no ReturnValue",
                self.host
            ))),
        }
    }

    fn failed(&self, what: &str, rv: u32) -> DriverError {
        let msg = format!("StdRegProv.{what} on {} returned {rv}", self.host);
        // 5: access denied (the account may not write HKLM\SOFTWARE).
        if rv == 5 {
            DriverError::permanent(format!("{msg} (access denied)")).with_code(rv as i64)
        } else {
            DriverError::transient(msg).with_code(rv as i64)
        }
    }

    /// The names of a key's values or subkeys (`EnumValues` / `EnumKey`); empty when the key
    /// does not exist.
    async fn names(&self, method: &str, key: &str) -> DriverResult<Vec<String>> {
        match self.call(method, key, Vec::new(), false).await? {
            (0, out) => Ok(out.get_array("sNames")),
            (NOT_FOUND, _) => Ok(Vec::new()),
            (rv, _) => Err(self.failed(method, rv)),
        }
    }

    /// The records of `vm` on this host, in name order. A value that is not a record (or cannot
    /// be read) proves nothing: skipped, with a warning.
    pub async fn records(&self, vm: &VmId) -> DriverResult<Vec<Named>> {
        let key = vm_key(vm)?;
        let mut names = self.names("EnumValues", &key).await?;
        names.sort();
        let mut out = Vec::new();
        for n in names {
            let extra = vec![(
                "sValueName".to_owned(),
                Param::Value(CimValue::String(n.clone())),
            )];
            let lines = match self.call("GetMultiStringValue", &key, extra, false).await? {
                (0, o) => o.get_array("sValue"),
                (NOT_FOUND, _) => continue, // removed meanwhile
                (rv, _) => {
                    tracing::warn!(host = %self.host, vm = %vm, value = %n, rv, "an attempt record cannot be read: it proves nothing");
                    continue;
                }
            };
            match AttemptRecord::from_lines(&lines) {
                Ok(r) => out.push((n, r)),
                Err(why) => {
                    tracing::warn!(host = %self.host, vm = %vm, value = %n, "not an attempt record ({why}): it proves nothing");
                }
            }
        }
        Ok(out)
    }

    /// The records of every VM on this host but `vm`.
    pub async fn others(&self, vm: &VmId) -> DriverResult<Vec<AttemptRecord>> {
        let mut out = Vec::new();
        for g in self.names("EnumKey", KEY).await? {
            let other = VmId::new(g);
            if other.as_str().eq_ignore_ascii_case(vm.as_str()) {
                continue;
            }
            out.extend(self.records(&other).await?.into_iter().map(|(_, r)| r));
        }
        Ok(out)
    }

    /// Writes (or replaces) the record `name` of `vm`.
    pub async fn write(&self, vm: &VmId, name: &str, rec: &AttemptRecord) -> DriverResult<()> {
        let key = vm_key(vm)?;
        match self.call("CreateKey", &key, Vec::new(), true).await? {
            (0, _) => {}
            (rv, _) => return Err(self.failed("CreateKey", rv)),
        }
        let lines = rec.to_lines().into_iter().map(CimValue::String).collect();
        let extra = vec![
            (
                "sValueName".to_owned(),
                Param::Value(CimValue::String(name.to_owned())),
            ),
            ("sValue".to_owned(), Param::Value(CimValue::Array(lines))),
        ];
        match self.call("SetMultiStringValue", &key, extra, true).await? {
            (0, _) => Ok(()),
            (rv, _) => Err(self.failed("SetMultiStringValue", rv)),
        }
    }

    /// Deletes the record `name` of `vm` (gone already is success), and the VM's key when no
    /// record is left in it.
    pub async fn delete(&self, vm: &VmId, name: &str) -> DriverResult<()> {
        let key = vm_key(vm)?;
        let extra = vec![(
            "sValueName".to_owned(),
            Param::Value(CimValue::String(name.to_owned())),
        )];
        match self.call("DeleteValue", &key, extra, true).await? {
            (0 | NOT_FOUND, _) => {}
            (rv, _) => return Err(self.failed("DeleteValue", rv)),
        }
        if self.names("EnumValues", &key).await?.is_empty() {
            match self.call("DeleteKey", &key, Vec::new(), true).await? {
                (0 | NOT_FOUND, _) => {}
                (rv, _) => return Err(self.failed("DeleteKey", rv)),
            }
        }
        Ok(())
    }

    /// Drops `path` from every record of `vm` that names it; deletes the records that then name
    /// nothing.
    pub async fn forget(&self, vm: &VmId, path: &str) -> DriverResult<()> {
        for (name, mut rec) in self.records(vm).await? {
            if !rec.forget(path) {
                continue;
            }
            if rec.is_empty() {
                self.delete(vm, &name).await?;
            } else {
                self.write(vm, &name, &rec).await?;
            }
        }
        Ok(())
    }
}

impl HyperVDriver {
    /// A host's registry (where the attempt records are).
    pub(crate) fn registry<'a>(&'a self, id: &'a HostId) -> DriverResult<Registry<'a>> {
        Ok(Registry {
            client: &self.host(id)?.client,
            host: id,
        })
    }

    /// What the VM's attempt records on its destination vouch for, merged: this attempt's and
    /// every earlier one's (of this run or an earlier run, by this process or another) that
    /// still names something.
    pub(crate) async fn own_record(&self, req: &MigrationRequest) -> DriverResult<AttemptRecord> {
        let mut out = AttemptRecord::default();
        for (_, r) in self.registry(&req.destination)?.records(&req.vm).await? {
            out.merge(&r);
        }
        Ok(out)
    }

    /// The attempt records of every OTHER VM on `host`.
    pub(crate) async fn others_records(
        &self,
        req: &MigrationRequest,
        host: &HostId,
    ) -> DriverResult<Vec<AttemptRecord>> {
        self.registry(host)?.others(&req.vm).await
    }

    /// Drops `path` from the VM's records on `host` once it is gone (best effort: a record of a
    /// path that is gone lists nothing, and the VM's next start to the host drops it).
    pub(crate) async fn forget_removed(&self, req: &MigrationRequest, host: &HostId, path: &str) {
        let r = match self.registry(host) {
            Ok(r) => r.forget(&req.vm, path).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::warn!(vm = %req.vm, host = %host, path, error = %e, "cannot drop a removed path from the attempt records");
        }
    }

    /// Writes attempt `req`'s record `rec` on its destination, merged with what the VM's earlier
    /// records there still vouch for (the disks and folders that still exist), then deletes
    /// those earlier records. Written before the earlier ones go, so a crash in between leaves
    /// both (the same paths twice), never neither. Returns what it carried over from them.
    pub(crate) async fn write_attempt_record(
        &self,
        req: &MigrationRequest,
        rec: &AttemptRecord,
    ) -> DriverResult<AttemptRecord> {
        let dst = &req.destination;
        let reg = self.registry(dst)?;
        let name = value_name(req);
        let earlier = reg.records(&req.vm).await?;
        let mut carried = AttemptRecord::default();
        // (A record of this very attempt, if its start is asked again, is carried over too.)
        for (_, r) in &earlier {
            let mut still = AttemptRecord::default();
            for d in &r.disks {
                if self.file_size(dst, d).await?.is_some() {
                    still.disks.push(d.clone());
                }
            }
            for f in &r.folders {
                if self.folder_exists(dst, f).await? {
                    still.folders.push(f.clone());
                }
            }
            carried.merge(&still);
        }
        let mut merged = rec.clone();
        merged.merge(&carried);
        reg.write(&req.vm, &name, &merged).await?;
        for (n, _) in &earlier {
            if *n != name {
                reg.delete(&req.vm, n).await?;
            }
        }
        Ok(carried)
    }

    /// Deletes every attempt record of the VM on its destination (its move there is proven).
    pub(crate) async fn drop_records_after_proof(&self, req: &MigrationRequest) {
        let r = async {
            let reg = self.registry(&req.destination)?;
            for (n, _) in reg.records(&req.vm).await? {
                reg.delete(&req.vm, &n).await?;
            }
            DriverResult::Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(vm = %req.vm, host = %req.destination, error = %e, "cannot delete the attempt records of a proven move");
        }
    }

    /// Takes back what attempt `req`'s record added (its start was refused after it was
    /// written: nothing was created): the record keeps only what it `carried` over from earlier
    /// records, and goes when that is nothing.
    pub(crate) async fn drop_attempt_record(
        &self,
        req: &MigrationRequest,
        carried: &AttemptRecord,
    ) {
        let name = value_name(req);
        let r = match self.registry(&req.destination) {
            Ok(r) if carried.is_empty() => r.delete(&req.vm, &name).await,
            Ok(r) => r.write(&req.vm, &name, carried).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::warn!(vm = %req.vm, host = %req.destination, error = %e, "cannot delete the record of a refused start");
        }
    }

    /// Whether ANOTHER VM's attempt record names `path` on its host as one of its disks (its
    /// copy may be the file there now).
    pub(crate) fn claimed_by_another_vm(others: &[AttemptRecord], path: &str) -> bool {
        others
            .iter()
            .any(|r| r.disks.iter().any(|d| d.eq_ignore_ascii_case(path)))
    }

    /// Whether ANOTHER VM's attempt may put something into `folder` (a disk below it) or counts
    /// it as a folder of its own.
    pub(crate) fn folder_claimed_by_another_vm(others: &[AttemptRecord], folder: &str) -> bool {
        let below = format!("{}\\", folder.trim_end_matches('\\').to_ascii_lowercase());
        others.iter().any(|r| {
            r.disks
                .iter()
                .any(|d| d.to_ascii_lowercase().starts_with(&below))
                || r.folders.iter().any(|f| f.eq_ignore_ascii_case(folder))
        })
    }

    /// Why `path` (a `"file"` or a `"folder"`) on `host` is not one an attempt of the VM may have
    /// created on its destination, if it is not: no attempt record of the VM there names it.
    pub(crate) async fn not_recorded(
        &self,
        req: &MigrationRequest,
        host: &HostId,
        path: &str,
        kind: &str,
    ) -> DriverResult<Option<String>> {
        if *host == req.destination {
            let rec = self.own_record(req).await?;
            let named = if kind == "file" {
                &rec.disks
            } else {
                &rec.folders
            };
            if named.iter().any(|p| p.eq_ignore_ascii_case(path)) {
                return Ok(None);
            }
        }
        Ok(Some(format!(
            "{path} on {host} is not a {kind} an attempt of VM {} created (no attempt record names it): kept",
            req.vm
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec() -> AttemptRecord {
        AttemptRecord {
            disks: vec!["E:\\Hyper-V\\web\\Virtual Hard Disks\\web_0.vhdx".into()],
            folders: vec![
                "E:\\Hyper-V\\web\\Virtual Hard Disks".into(),
                "E:\\Hyper-V\\web".into(),
            ],
        }
    }

    #[test]
    fn a_record_reads_back_what_was_written() {
        let r = rec();
        assert_eq!(AttemptRecord::from_lines(&r.to_lines()).unwrap(), r);
        assert_eq!(r.to_lines()[0], HEADER);
    }

    #[test]
    fn a_value_that_is_not_exactly_a_record_proves_nothing() {
        let mut lines = rec().to_lines();
        lines.push("owner=someone".into());
        assert!(AttemptRecord::from_lines(&lines).is_err());
        let mut lines = rec().to_lines();
        lines[0] = "vmove attempt record 2".into();
        assert!(AttemptRecord::from_lines(&lines).is_err());
        assert!(AttemptRecord::from_lines(&[]).is_err());
        // A path without a drive is no path of a volume.
        let lines = vec![HEADER.to_owned(), "disk=web_0.vhdx".to_owned()];
        assert!(AttemptRecord::from_lines(&lines).is_err());
        // Nor is a first-level folder ever vouched for.
        let lines = vec![HEADER.to_owned(), "folder=E:\\Hyper-V".to_owned()];
        assert!(AttemptRecord::from_lines(&lines).is_err());
    }

    #[test]
    fn merged_records_keep_folders_deepest_first_without_duplicates() {
        let mut a = AttemptRecord {
            disks: vec![],
            folders: vec!["E:\\Hyper-V\\web".into()],
        };
        a.merge(&rec());
        assert_eq!(
            a.folders,
            vec![
                "E:\\Hyper-V\\web\\Virtual Hard Disks".to_owned(),
                "E:\\Hyper-V\\web".to_owned()
            ]
        );
        assert_eq!(a.disks.len(), 1);
        assert!(a.forget("e:\\hyper-v\\WEB\\"));
        assert!(!a.forget("E:\\Hyper-V\\web"));
        assert_eq!(a.folders.len(), 1);
    }

    #[test]
    fn a_vm_id_that_cannot_be_a_key_name_is_refused() {
        assert!(vm_key(&VmId::new("0000000A-0000-4000-8000-00000000000A")).is_ok());
        for bad in ["", "a\\b"] {
            assert!(vm_key(&VmId::new(bad)).is_err(), "{bad}");
        }
    }
}
