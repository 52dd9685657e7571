//! The fake's methods (WS-Management Invoke): the migration service, jobs, files and folders
//! (`CIM_DataFile`, `Win32_Directory`), and the registry provider (`StdRegProv`).

use super::state::s;
use super::world::{FakeHost, FakeJobError, Fault, Output, World, key, parent};
use crate::cim::{CimInstance, CimValue};

impl World {
    /// `StdRegProv`'s static methods (`root\default` and `root\cimv2`) on `HKEY_LOCAL_MACHINE`:
    /// `CreateKey`, `DeleteKey`, `EnumKey`, `EnumValues`, `SetMultiStringValue`,
    /// `GetMultiStringValue`, `DeleteValue`. ReturnValue is a Win32 error: 0 done, 2 the key or
    /// value does not exist, 5 a key that still has subkeys (`RegDeleteKey`), 6 another hive.
    pub(crate) fn std_reg_prov(
        h: &mut FakeHost,
        method: &str,
        params: &crate::xml::Element,
    ) -> Result<Output, Fault> {
        let text = |n: &str| params.child(n).map(|e| e.text.trim().to_owned());
        let rv = |v: u32| vec![("ReturnValue".to_owned(), CimValue::U32(v))];
        if text("hDefKey").as_deref().unwrap_or("2147483650") != "2147483650" {
            return Ok(rv(6));
        }
        let sub = text("sSubKeyName")
            .ok_or_else(|| Fault::invalid("sSubKeyName missing"))?
            .trim_matches('\\')
            .to_owned();
        let k = sub.to_ascii_lowercase();
        let value_name = text("sValueName").unwrap_or_default();
        let names = |items: Vec<String>| {
            if items.is_empty() {
                CimValue::Null
            } else {
                CimValue::Array(items.into_iter().map(CimValue::String).collect())
            }
        };
        match method {
            "CreateKey" => {
                h.reg_create_key(&sub);
                Ok(rv(0))
            }
            "DeleteKey" => {
                let prefix = format!("{k}\\");
                if !h.registry.contains_key(&k) {
                    Ok(rv(2))
                } else if h.registry.keys().any(|o| o.starts_with(&prefix)) {
                    Ok(rv(5))
                } else {
                    h.registry.remove(&k);
                    Ok(rv(0))
                }
            }
            "EnumKey" => {
                if !h.registry.contains_key(&k) {
                    return Ok(rv(2));
                }
                let prefix = format!("{k}\\");
                let subkeys: Vec<String> = h
                    .registry
                    .iter()
                    .filter(|(o, _)| o.strip_prefix(&prefix).is_some_and(|r| !r.contains('\\')))
                    .map(|(_, v)| v.path.rsplit('\\').next().unwrap_or("").to_owned())
                    .collect();
                Ok(vec![
                    ("ReturnValue".into(), CimValue::U32(0)),
                    ("sNames".into(), names(subkeys)),
                ])
            }
            "EnumValues" => {
                let Some(key) = h.registry.get(&k) else {
                    return Ok(rv(2));
                };
                let vs: Vec<String> = key.values.values().map(|(n, _)| n.clone()).collect();
                let types = if vs.is_empty() {
                    CimValue::Null
                } else {
                    // REG_MULTI_SZ (7): the only type this fake stores.
                    CimValue::Array(vs.iter().map(|_| CimValue::U32(7)).collect())
                };
                Ok(vec![
                    ("ReturnValue".into(), CimValue::U32(0)),
                    ("Types".into(), types),
                    ("sNames".into(), names(vs)),
                ])
            }
            "SetMultiStringValue" => {
                let Some(key) = h.registry.get_mut(&k) else {
                    return Ok(rv(2));
                };
                let items: Vec<String> = params
                    .children_named("sValue")
                    .map(|e| e.text.clone())
                    .collect();
                key.values
                    .insert(value_name.to_ascii_lowercase(), (value_name, items));
                Ok(rv(0))
            }
            "GetMultiStringValue" => match h.reg_value(&sub, &value_name) {
                Some(items) => Ok(vec![
                    ("ReturnValue".into(), CimValue::U32(0)),
                    ("sValue".into(), names(items.clone())),
                ]),
                None => Ok(rv(2)),
            },
            "DeleteValue" => {
                let gone = h
                    .registry
                    .get_mut(&k)
                    .and_then(|key| key.values.remove(&value_name.to_ascii_lowercase()));
                Ok(rv(if gone.is_some() { 0 } else { 2 }))
            }
            _ => Err(Fault::new(
                "w:ActionNotSupported",
                2_150_858_909,
                format!("StdRegProv.{method} is not supported by the fake"),
            )),
        }
    }

    /// Invoke.
    pub fn invoke(
        &mut self,
        hk: &str,
        class: &str,
        method: &str,
        selectors: &[(String, String)],
        params: &crate::xml::Element,
    ) -> Result<Output, Fault> {
        self.tick();
        self.calls.invokes.push((hk.to_owned(), method.to_owned()));
        let sel = |n: &str| {
            selectors
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let param_text = |n: &str| params.child(n).map(|e| e.text.clone());
        match (class, method) {
            (
                "Msvm_VirtualSystemMigrationService",
                "MigrateVirtualSystemToHost" | "CheckVirtualSystemIsMigratableToHost",
            ) => self.migration_call(hk, method, selectors, params),
            ("Msvm_VirtualSystemManagementService", "DestroySystem") => {
                self.destroy_system(hk, selectors, params)
            }
            ("Msvm_ConcreteJob", _) => Err(Fault::not_found(
                "No Msvm_ConcreteJob instance matches the selectors (a migration job is an Msvm_MigrationJob)",
            )),
            ("Msvm_MigrationJob", "GetErrorEx") => {
                let id = sel("InstanceID").ok_or_else(|| Fault::not_found("InstanceID missing"))?;
                let job = self
                    .hosts
                    .get(hk)
                    .and_then(|h| h.jobs.get(&id))
                    .cloned()
                    .ok_or_else(|| Fault::not_found("no such job"))?;
                // Errors only for a job that failed or was ended by a client (GetErrorEx of
                // Msvm_MigrationJob); null otherwise.
                let error = match job.state {
                    10 => Some(
                        self.faults
                            .job_error_detail
                            .get(&job.vm)
                            .cloned()
                            .unwrap_or(FakeJobError {
                                error_code: 32768,
                                cim_status: 1,
                                error_type: 4,
                                message: job
                                    .error
                                    .clone()
                                    .unwrap_or_else(|| "The migration failed.".into()),
                            }),
                    ),
                    8 | 9 => Some(FakeJobError {
                        error_code: 32768,
                        cim_status: 1,
                        error_type: 1,
                        message: "The operation was cancelled.".into(),
                    }),
                    _ => None,
                };
                let errors = match error {
                    Some(e) => CimValue::Array(vec![CimValue::String(
                        CimInstance::new("Msvm_Error")
                            .with("CIMStatusCode", CimValue::U32(e.cim_status))
                            .with("ErrorType", CimValue::U16(e.error_type))
                            .with("Message", s(&e.message))
                            .to_cim_xml(),
                    )]),
                    None => CimValue::Null,
                };
                Ok(vec![
                    ("Errors".into(), errors),
                    ("ReturnValue".into(), CimValue::U32(0)),
                ])
            }
            ("Msvm_MigrationJob", "RequestStateChange") => {
                let id = sel("InstanceID").ok_or_else(|| Fault::not_found("InstanceID missing"))?;
                let requested: u16 = param_text("RequestedState")
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
                self.calls.job_state_requests.push((id.clone(), requested));
                let not_cancellable = self
                    .hosts
                    .get(hk)
                    .and_then(|h| h.jobs.get(&id))
                    .is_some_and(|j| self.faults.not_cancellable.contains(&j.vm));
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                let job = h
                    .jobs
                    .get_mut(&id)
                    .ok_or_else(|| Fault::not_found("no such job"))?;
                if !(requested == 4 || requested == 5) || (not_cancellable && job.running()) {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(4097))]);
                }
                if !job.running() {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(32775))]);
                }
                job.state = if requested == 4 { 8 } else { 9 };
                job.error = Some("The operation was cancelled.".into());
                let (src, vm) = (job.source.clone(), job.vm.clone());
                if let Some(v) = self.hosts.get_mut(&src).and_then(|h| h.vms.get_mut(&vm)) {
                    v.op_status = vec![2];
                }
                Ok(vec![("ReturnValue".into(), CimValue::U32(0))])
            }
            ("StdRegProv", _) => {
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                Self::std_reg_prov(h, method, params)
            }
            ("CIM_DataFile", "Delete") => {
                let name = sel("Name").ok_or_else(|| Fault::not_found("Name missing"))?;
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                let k = key(&name);
                if !h.files.contains_key(&k) {
                    return Err(Fault::not_found(format!("No such file {name}")));
                }
                if h.vms.values().any(|v| v.disks.iter().any(|d| key(d) == k)) {
                    // A disk a VM of this host holds: 15 ("sharing violation"), so a driver that
                    // forgot to check never loses data here.
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(15))]);
                }
                h.files.remove(&k);
                Ok(vec![("ReturnValue".into(), CimValue::U32(0))])
            }
            ("Win32_Directory", "Rename") => {
                // Win32_Directory.Rename(FileName): "the fully qualified new name"; 0 success,
                // 10 the object exists, 13 not the same drive, 15 sharing violation (the
                // CIM_LogicalFile return table). Windows refuses to rename a folder while a file
                // in it is open: here, while a VM of the host has a disk or its configuration in
                // it.
                let name = sel("Name").ok_or_else(|| Fault::not_found("Name missing"))?;
                let to = param_text("FileName")
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Fault::invalid("FileName missing"))?;
                let writes = self
                    .faults
                    .writes_before_folder_rename
                    .remove(hk)
                    .unwrap_or_default();
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                for f in writes {
                    h.write_file(&f, 1);
                }
                if !h.dir_exists(&name) {
                    return Err(Fault::not_found(format!("No such directory {name}")));
                }
                let (k, kt) = (key(&name), key(&to));
                if !k.get(..2).is_some_and(|d| kt.starts_with(d)) {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(13))]);
                }
                if h.dir_exists(&to) || h.files.contains_key(&kt) {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(10))]);
                }
                let prefix = format!("{k}\\");
                let in_use = h.vms.values().any(|v| {
                    v.disks
                        .iter()
                        .chain(std::iter::once(&v.config_root))
                        .any(|p| key(p) == k || key(p).starts_with(&prefix))
                });
                if in_use {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(15))]);
                }
                let moved = |p: &str| format!("{}{}", to.trim_end_matches('\\'), &p[k.len()..]);
                let dirs: Vec<(String, String)> = h
                    .dirs
                    .iter()
                    .filter(|(d, _)| **d == k || d.starts_with(&prefix))
                    .map(|(d, p)| (d.clone(), p.clone()))
                    .collect();
                for (d, p) in dirs {
                    h.dirs.remove(&d);
                    let np = moved(&p);
                    h.dirs.insert(key(&np), np);
                }
                let files: Vec<String> = h
                    .files
                    .keys()
                    .filter(|f| f.starts_with(&prefix))
                    .cloned()
                    .collect();
                for f in files {
                    if let Some(mut ff) = h.files.remove(&f) {
                        ff.path = moved(&ff.path);
                        h.files.insert(key(&ff.path), ff);
                    }
                }
                Ok(vec![("ReturnValue".into(), CimValue::U32(0))])
            }
            ("Win32_Directory", "Delete") => {
                let name = sel("Name").ok_or_else(|| Fault::not_found("Name missing"))?;
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                if !h.dir_exists(&name) {
                    return Err(Fault::not_found(format!("No such directory {name}")));
                }
                let k = key(&name);
                let prefix = format!("{k}\\");
                // Someone's files arriving, by their path, in the folder being deleted (by its
                // name, or the name it was set aside from) between a driver's emptiness check
                // and this call.
                let pending = self
                    .faults
                    .writes_before_folder_delete
                    .remove(hk)
                    .unwrap_or_default();
                let mut later = Vec::new();
                for f in pending {
                    let folder = parent(&f).map(|p| key(&p)).unwrap_or_default();
                    if k == folder || k.starts_with(&format!("{folder}.vmove-removing-")) {
                        h.write_file(&f, 1);
                    } else {
                        later.push(f);
                    }
                }
                if !later.is_empty() {
                    self.faults
                        .writes_before_folder_delete
                        .insert(hk.to_owned(), later);
                }
                // Win32_Directory.Delete is not proven to refuse a folder that is not empty, and
                // its sibling DeleteEx walks the folder's children (StartFileName/StopFileName:
                // class reference; src/cleanup.rs): the fake deletes the folder WITH everything
                // in it, so a driver that relies on a check made before the call loses data here.
                h.files.retain(|f, _| !f.starts_with(&prefix));
                h.dirs.retain(|d, _| *d != k && !d.starts_with(&prefix));
                Ok(vec![("ReturnValue".into(), CimValue::U32(0))])
            }
            _ => Err(Fault::new(
                "w:ActionNotSupported",
                2_150_858_909,
                format!("{class}.{method} is not supported by the fake"),
            )),
        }
    }
}
