//! Migration jobs: the reference `MigrateVirtualSystemToHost` returned, what a job's state
//! means, how it is cancelled, and what a failed job's detail says; and the driver's calls on
//! a job (read, poll, cancel).
//!
//! # Sources
//! - The class of the job is the one the method's `Job` reference names: an
//!   `Msvm_MigrationJob`, which derives from `CIM_ConcreteJob`, NOT from `Msvm_ConcreteJob`
//!   (Msvm_MigrationJob class reference, `class Msvm_MigrationJob : CIM_ConcreteJob`), so a
//!   query or a Get on `Msvm_ConcreteJob` does not find it. os-win polls the job through the
//!   path the method returned (`jobutils.py`, `_wait_for_job`), as does libvirt's Hyper-V
//!   driver; the handle keeps that reference's class and selectors ([`JobRef`]).
//! - `JobState` (CIM_ConcreteJob): 2 new, 3 starting, 4 running, 5 suspended, 6 shutting
//!   down, 7 completed, 8 terminated, 9 killed, 10 exception, 11 service; 32768 is "completed
//!   with warnings" in os-win's `constants.JOB_STATE_COMPLETED_WITH_WARNINGS`, which its
//!   `_completed_job_states` count as done.
//! - Cancel: `RequestStateChange(RequestedState)` (Msvm_MigrationJob.RequestStateChange):
//!   4 Terminate "stops the job cleanly, saving data, preserving the state, and shutting down
//!   all underlying processes in an orderly manner"; 5 Kill "terminates the job immediately
//!   with no requirement to save data or preserve the state" (and a killed job's "underlying
//!   processes may still be running, and a clean-up might be required", CIM_ConcreteJob
//!   JobState 9). os-win kills (5) in `stop_jobs`, which runs before it deletes a VM, where
//!   nothing of the VM needs preserving. A move is cancelled so that the VM keeps running on
//!   its source: vmove asks for Terminate (4), and only when the job refuses that transition
//!   as unsupported (CIM return 1 or 4097, Hyper-V 32770) does it kill, as os-win does. It
//!   asks only when the job says `Cancellable` = true (os-win: `if job and job.Cancellable`);
//!   absent or false, the job runs to its end and the abort is refused.
//! - Failure detail: `GetErrorEx([out] string Errors[])` returns embedded `Msvm_Error`
//!   instances in CIM-XML (GetErrorEx of Msvm_MigrationJob); `Message`, `CIMStatusCode`
//!   (CIM_ERR_*) and `ErrorType` (7 security...) come from the Msvm_Error class reference. The
//!   job's own `ErrorCode` uses the migration service's return-value table (32768 failed,
//!   32769 access denied, ...).

use crate::cim::{CimInstance, CimValue, Epr, V2, class_uri};
use crate::driver::HyperVDriver;
pub use crate::error::code_class;
use crate::error::{RV_COMPLETED, RV_INVALID_STATE, RV_JOB_STARTED, read_err, rv_error, write_err};
use crate::paths::wql_str;
use crate::wsman::{Param, WsmanError};
use vmove_driver::*;

/// A job, as the reference a method returned names it: its resource URI (which ends in its
/// class) and key selectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRef {
    /// `w:ResourceURI` (`.../root/virtualization/v2/Msvm_MigrationJob`).
    pub resource_uri: String,
    /// Key selectors (`InstanceID`), as the reference gave them.
    pub selectors: Vec<(String, String)>,
}

/// The class a migration job has on every Hyper-V host (a handle without a class is one).
pub const MIGRATION_JOB: &str = "Msvm_MigrationJob";

fn escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('|', "%7C")
        .replace('=', "%3D")
}

fn unescape(s: &str) -> String {
    s.replace("%3D", "=")
        .replace("%7C", "|")
        .replace("%25", "%")
}

impl JobRef {
    /// The job a method's `Job` reference names (None when it names no class or no selector).
    pub fn from_epr(e: &Epr) -> Option<JobRef> {
        let class = e.class_name();
        if class.is_empty() || class == "*" || e.selectors.is_empty() {
            return None;
        }
        Some(JobRef {
            resource_uri: e.resource_uri.clone(),
            selectors: e.selectors.clone(),
        })
    }

    /// A migration job known by its `InstanceID` only.
    pub fn migration(instance_id: &str) -> JobRef {
        JobRef {
            resource_uri: class_uri(V2, MIGRATION_JOB),
            selectors: vec![("InstanceID".to_owned(), instance_id.to_owned())],
        }
    }

    /// The class (the last segment of the resource URI).
    pub fn class(&self) -> &str {
        self.resource_uri.rsplit('/').next().unwrap_or("")
    }

    /// The handle text: `job|<resource URI>|<selector>=<value>|...` (`%`, `|`, `=` escaped).
    pub fn encode(&self) -> String {
        let mut out = format!("job|{}", escape(&self.resource_uri));
        for (k, v) in &self.selectors {
            out.push('|');
            out.push_str(&escape(k));
            out.push('=');
            out.push_str(&escape(v));
        }
        out
    }

    /// Reads a handle. A handle without the `job|` prefix is an `InstanceID` (what the driver
    /// kept before it kept the reference; journals of earlier runs hold such handles): the
    /// migration job with that id. Never fails: an odd handle names a job that is not found.
    pub fn decode(handle: &str) -> JobRef {
        let Some(rest) = handle.strip_prefix("job|") else {
            return JobRef::migration(handle);
        };
        let mut parts = rest.split('|');
        let resource_uri = unescape(parts.next().unwrap_or_default());
        let selectors = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (unescape(k), unescape(v)))
            .collect();
        JobRef {
            resource_uri,
            selectors,
        }
    }

    /// The reference to Get the job or invoke its methods: the returned one's resource URI and
    /// selectors.
    pub fn epr(&self) -> Epr {
        Epr::new(self.resource_uri.clone(), self.selectors.clone())
    }

    /// The job's `InstanceID`, if the reference has one.
    pub fn instance_id(&self) -> Option<&str> {
        self.selectors
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("InstanceID"))
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a fault on a Get of a job means the job is gone (Hyper-V deletes jobs some time
/// after they end: `TimeBeforeRemoval`, 5 minutes by default, Msvm_MigrationJob class
/// reference): WS-Management's `w:InvalidSelectors` (DSP0226: no instance with these
/// selectors), or a WMI error WBEM_E_NOT_FOUND (0x80041002) / CIM_ERR_NOT_FOUND (6).
pub fn is_gone(e: &crate::wsman::SoapError) -> bool {
    match e {
        crate::wsman::SoapError::Fault { subcode, wmi, .. } => {
            subcode.ends_with("InvalidSelectors")
                || subcode.ends_with("ObjectNotFound")
                || wmi
                    .as_ref()
                    .is_some_and(|w| w.code == Some(0x8004_1002) || w.cim_status == Some(6))
        }
        _ => false,
    }
}

/// What a job's state says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobPhase {
    /// 2 new, 3 starting.
    Pending,
    /// 4 running, 5 suspended, 6 shutting down (with `PercentComplete`).
    Running(Option<u8>),
    /// 7 completed, or 32768 completed with warnings (the warning's words).
    Completed {
        /// The warning, for 32768.
        warning: Option<String>,
    },
    /// 8 terminated, 9 killed.
    Cancelled,
    /// 10 exception (or 11 service, or a state no source defines): read its detail.
    Failed,
}

/// Reads `JobState` (and `PercentComplete`).
pub fn phase_of(job: &CimInstance) -> JobPhase {
    match job.get_u32("JobState").unwrap_or(0) {
        2 | 3 => JobPhase::Pending,
        4..=6 => JobPhase::Running(job.get_u32("PercentComplete").map(|p| p.min(100) as u8)),
        7 => JobPhase::Completed { warning: None },
        32768 => JobPhase::Completed {
            warning: Some(
                job.get_str("ErrorDescription")
                    .or_else(|| job.get_str("ErrorSummaryDescription"))
                    .unwrap_or_else(|| "the migration job completed with warnings".into()),
            ),
        },
        8 | 9 => JobPhase::Cancelled,
        _ => JobPhase::Failed,
    }
}

/// Whether the job still runs (it can be polled again, or cancelled).
pub fn is_running(job: &CimInstance) -> bool {
    matches!(phase_of(job), JobPhase::Pending | JobPhase::Running(_))
}

/// The `RequestedState` vmove asks first: Terminate (see the module's sources).
pub const TERMINATE: u16 = 4;
/// The `RequestedState` it asks when Terminate is refused as unsupported: Kill.
pub const KILL: u16 = 5;

/// Whether a `RequestStateChange` return value says the transition is not supported (CIM:
/// 1 not supported, 4097 invalid state transition; Hyper-V: 32770 not supported).
pub fn transition_unsupported(rv: u32) -> bool {
    matches!(rv, 1 | 4097 | 32770)
}

/// Whether the job may be asked to cancel: only when it says `Cancellable` = true.
pub fn cancellable(job: &CimInstance) -> bool {
    job.get_bool("Cancellable") == Some(true)
}

/// One `Msvm_Error` of `GetErrorEx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError {
    /// `Message`.
    pub message: String,
    /// `CIMStatusCode`.
    pub cim_status: Option<u32>,
    /// `ErrorType`.
    pub error_type: Option<u32>,
}

impl JobError {
    /// Reads an embedded `Msvm_Error` (CIM-XML text); None when it is not one.
    pub fn parse(text: &str) -> Option<JobError> {
        let i = CimInstance::from_cim_xml(text).ok()?;
        Some(JobError {
            message: i.get_str("Message").unwrap_or_default(),
            cim_status: i.get_u32("CIMStatusCode"),
            error_type: i.get_u32("ErrorType"),
        })
    }

    /// Whether the error says asking again cannot help: CIM_ERR_ACCESS_DENIED (2),
    /// INVALID_NAMESPACE (3), INVALID_PARAMETER (4), INVALID_CLASS (5), NOT_SUPPORTED (7),
    /// NO_SUCH_PROPERTY (12), TYPE_MISMATCH (13), METHOD_NOT_AVAILABLE (16),
    /// METHOD_NOT_FOUND (17); or ErrorType 7 (security error).
    pub fn is_permanent(&self) -> bool {
        matches!(self.cim_status, Some(2 | 3 | 4 | 5 | 7 | 12 | 13 | 16 | 17))
            || self.error_type == Some(7)
    }
}

/// What Hyper-V says when a move fails for a reason waiting does not remove: (words, any of
/// which in the message, lower case; the class; the source of the words). A job's `ErrorCode`
/// is mostly 32768 ("Failed"), which alone says nothing; these messages say what failed.
pub const MESSAGE_CLASSES: &[(&[&str], ErrorClass, &str)] = &[
    (
        &[
            "0x8009030e",
            "no credentials are available in the security package",
        ],
        ErrorClass::Permanent,
        "event 20306 on a source whose migration authentication (CredSSP without a local sign-in, or Kerberos without constrained delegation) cannot reach the destination",
    ),
    (
        &["0x80070005", "access is denied", "access denied"],
        ErrorClass::Permanent,
        "Win32 ERROR_ACCESS_DENIED: the source's account is not allowed on the destination (delegation, share or folder rights)",
    ),
    (
        &["could not find ethernet switch"],
        ErrorClass::DestinationRefused,
        "Compare-VM incompatibility 33012: the destination has no switch of that name",
    ),
    (
        &["configuration version"],
        ErrorClass::DestinationRefused,
        "a configuration version the destination does not run (Supported virtual machine configuration versions)",
    ),
    (
        &[
            "processor-specific features not supported",
            "processor compatibility",
        ],
        ErrorClass::DestinationRefused,
        "the destination's processor lacks features the running VM uses (Processor compatibility mode in Hyper-V)",
    ),
    (
        &["physical disk", "pass-through"],
        ErrorClass::Permanent,
        "a pass-through disk, which storage migration cannot copy",
    ),
    (
        &[
            "0x80070002",
            "0x80070003",
            "cannot find the file specified",
            "cannot find the path specified",
        ],
        ErrorClass::Permanent,
        "Win32 ERROR_FILE_NOT_FOUND / ERROR_PATH_NOT_FOUND: a file the VM needs is missing",
    ),
    (
        &["0x80070070", "not enough space on the disk"],
        ErrorClass::DestinationRefused,
        "Win32 ERROR_DISK_FULL on the destination",
    ),
    (
        &[
            "0x8007000e",
            "0x800705aa",
            "not enough memory",
            "insufficient system resources",
        ],
        ErrorClass::DestinationRefused,
        "Win32 ERROR_OUTOFMEMORY / ERROR_NO_SYSTEM_RESOURCES on the destination",
    ),
    (
        &["0x800700b7", "already exists"],
        ErrorClass::DestinationRefused,
        "Win32 ERROR_ALREADY_EXISTS: the destination holds a VM or file of that identity",
    ),
];

/// The class a failure message says, if one of `MESSAGE_CLASSES` matches; a refusal about the
/// VM's checkpoints ("checkpoint"/"snapshot" with "cannot"/"not supported"/"incompatible") is
/// permanent: it stays until the checkpoints change.
pub fn class_of_message(words: &str) -> Option<ErrorClass> {
    let w = words.to_lowercase();
    for (needles, class, _) in MESSAGE_CLASSES {
        if needles.iter().any(|n| w.contains(n)) {
            return Some(*class);
        }
    }
    let about_checkpoints = w.contains("checkpoint") || w.contains("snapshot");
    if about_checkpoints
        && ["cannot", "not supported", "incompatible"]
            .iter()
            .any(|n| w.contains(n))
    {
        return Some(ErrorClass::Permanent);
    }
    None
}

/// A failed job's class and words, from its `ErrorCode`, `ErrorDescription` and the
/// `GetErrorEx` errors: permanent when the code or any error says so, else what the message
/// says (`class_of_message`), else the code's class (transient when it says nothing more than
/// "failed").
pub fn failure(job: &CimInstance, errors: &[JobError]) -> (ErrorClass, String) {
    let code = job.get_u32("ErrorCode").unwrap_or(0);
    let by_code = if code == 0 {
        ErrorClass::Transient
    } else {
        code_class(code)
    };
    let mut words = job
        .get_str("ErrorDescription")
        .or_else(|| job.get_str("ErrorSummaryDescription"))
        .unwrap_or_else(|| "the migration job failed".into());
    for e in errors {
        if !e.message.is_empty() && !words.contains(e.message.trim()) {
            words.push_str("; ");
            words.push_str(e.message.trim());
        }
    }
    let class = if errors.iter().any(JobError::is_permanent) || by_code == ErrorClass::Permanent {
        ErrorClass::Permanent
    } else {
        class_of_message(&words).unwrap_or(by_code)
    };
    (class, format!("{words} (error {code})"))
}

impl HyperVDriver {
    /// The job a handle names, read through the reference the call returned (WS-Transfer Get
    /// on its class and selectors: job.rs); None when the host says it is gone.
    pub(crate) async fn job(&self, id: &HostId, handle: &str) -> DriverResult<Option<CimInstance>> {
        let r = JobRef::decode(handle);
        match self.host(id)?.client.get(&r.epr()).await {
            Ok(j) => Ok(Some(j)),
            Err(WsmanError::Soap(s)) if crate::job::is_gone(&s) => Ok(None),
            Err(e) => Err(read_err(id, "reading the migration job", e)),
        }
    }

    /// A failed job's errors (`GetErrorEx`), best effort: a job whose detail cannot be read
    /// still failed, with its `ErrorCode` and `ErrorDescription`.
    pub(crate) async fn job_errors(&self, id: &HostId, handle: &str) -> Vec<crate::job::JobError> {
        let r = JobRef::decode(handle);
        let out = match self.host(id) {
            Ok(h) => h.client.invoke(&r.epr(), "GetErrorEx", &[]).await,
            Err(_) => return Vec::new(),
        };
        match out {
            Ok(o) if o.get_u32("ReturnValue") == Some(0) => o
                .get_array("Errors")
                .iter()
                .filter_map(|t| crate::job::JobError::parse(t))
                .collect(),
            Ok(o) => {
                tracing::warn!(host = %id, rv = ?o.get_u32("ReturnValue"), "GetErrorEx on the failed migration job did not answer 0");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(host = %id, error = %e, "GetErrorEx on the failed migration job failed");
                Vec::new()
            }
        }
    }

    /// Asks the job for a state change; its ReturnValue.
    pub(crate) async fn request_job_state(
        &self,
        id: &HostId,
        handle: &str,
        state: u16,
    ) -> DriverResult<Option<u32>> {
        let out = self
            .host(id)?
            .client
            .invoke(
                &JobRef::decode(handle).epr(),
                "RequestStateChange",
                &[("RequestedState".into(), Param::Value(CimValue::U16(state)))],
            )
            .await
            .map_err(|e| write_err(id, "RequestStateChange on the migration job", e))?;
        Ok(out.get_u32("ReturnValue"))
    }

    pub(crate) async fn running_job_of(
        &self,
        id: &HostId,
        guid: &str,
    ) -> DriverResult<Option<String>> {
        let q = format!(
            "SELECT * FROM Msvm_MigrationJob WHERE VirtualSystemName={}",
            wql_str(guid)
        );
        Ok(self
            .query(id, V2, &q)
            .await?
            .into_iter()
            .find(crate::job::is_running)
            .and_then(|j| {
                j.epr
                    .as_ref()
                    .and_then(JobRef::from_epr)
                    .or_else(|| j.get_str("InstanceID").map(|i| JobRef::migration(&i)))
            })
            .map(|r| r.encode()))
    }

    /// `Driver::migration_status`: the job's phase, read through its reference.
    pub(crate) async fn job_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        if handle.0.starts_with("done:") {
            return Ok(MigrationStatus::Completed);
        }
        let Some(job) = self.job(&req.source, &handle.0).await? else {
            // Jobs are deleted some time after they end: decide by where the VM is.
            let on_dst = self.vm_instance(&req.destination, &req.vm).await?.is_some();
            let on_src = self.vm_instance(&req.source, &req.vm).await?.is_some();
            return Ok(if on_dst && !on_src {
                MigrationStatus::Completed
            } else {
                MigrationStatus::Failed(Failure::new(
                    ErrorClass::Transient,
                    "the migration job disappeared and the VM did not arrive",
                ))
            });
        };
        Ok(match crate::job::phase_of(&job) {
            JobPhase::Pending => MigrationStatus::Pending,
            JobPhase::Running(percent) => MigrationStatus::Running(Progress {
                percent,
                ..Progress::default()
            }),
            JobPhase::Completed { warning } => {
                if let Some(w) = warning {
                    // JobState 32768: done, with something to tell (os-win counts it done).
                    tracing::warn!(vm = %req.vm, host = %req.source, "the migration job completed with warnings: {w}");
                }
                MigrationStatus::Completed
            }
            JobPhase::Cancelled => MigrationStatus::Failed(Failure::new(
                ErrorClass::Transient,
                "the migration job was cancelled",
            )),
            JobPhase::Failed => {
                let errors = self.job_errors(&req.source, &handle.0).await;
                let (class, words) = crate::job::failure(&job, &errors);
                MigrationStatus::Failed(Failure::new(class, words))
            }
        })
    }

    /// `Driver::abort_migration`: Terminate, or Kill when Terminate is unsupported (module doc).
    pub(crate) async fn abort_job(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        if handle.0.starts_with("done:") {
            return Ok(());
        }
        let Some(job) = self.job(&req.source, &handle.0).await? else {
            return Ok(());
        };
        if !crate::job::is_running(&job) {
            return Ok(());
        }
        if !crate::job::cancellable(&job) {
            // Asked only of a job that says it can be cancelled (job.rs); this one runs to
            // its end, and the engine's looks find how it ended.
            return Err(DriverError::permanent(format!(
                "the migration job of VM {} on {} says it cannot be cancelled (Cancellable is {}): it runs to its end",
                req.vm,
                req.source,
                job.get_str("Cancellable")
                    .unwrap_or_else(|| "not set".into())
            )));
        }
        let mut rv = self
            .request_job_state(&req.source, &handle.0, crate::job::TERMINATE)
            .await?;
        if rv.is_some_and(crate::job::transition_unsupported) {
            tracing::info!(vm = %req.vm, "the migration job refused Terminate as unsupported: asking Kill, as os-win does");
            rv = self
                .request_job_state(&req.source, &handle.0, crate::job::KILL)
                .await?;
        }
        match rv {
            Some(RV_COMPLETED) | Some(RV_JOB_STARTED) => Ok(()),
            Some(RV_INVALID_STATE) => Ok(()), // it ended meanwhile
            Some(rv) => Err(rv_error("RequestStateChange", rv)),
            None => Err(DriverError::indeterminate(
                "RequestStateChange returned no ReturnValue",
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cim::CimValue;

    fn job(state: u16) -> CimInstance {
        CimInstance::new(MIGRATION_JOB)
            .with("JobState", CimValue::U16(state))
            .with("PercentComplete", CimValue::U16(40))
    }

    #[test]
    fn a_handle_keeps_the_class_and_selectors_of_the_returned_reference() {
        let r = JobRef {
            resource_uri: class_uri(V2, MIGRATION_JOB),
            selectors: vec![
                ("InstanceID".into(), "5D2F|a=b%c".into()),
                ("__cimnamespace".into(), "root/virtualization/v2".into()),
            ],
        };
        let h = r.encode();
        assert_eq!(JobRef::decode(&h), r);
        assert!(
            r.epr()
                .resource_uri
                .ends_with("/root/virtualization/v2/Msvm_MigrationJob")
        );
        // A handle of an earlier version (a bare InstanceID) is the migration job of that id.
        let old = JobRef::decode("8C1B-JOB");
        assert_eq!(old.class(), MIGRATION_JOB);
        assert_eq!(old.epr().resource_uri, r.epr().resource_uri);
        assert_eq!(old.instance_id(), Some("8C1B-JOB"));
    }

    #[test]
    fn completed_with_warnings_is_a_success_that_keeps_its_warning() {
        assert_eq!(phase_of(&job(7)), JobPhase::Completed { warning: None });
        let w = job(32768).with(
            "ErrorDescription",
            CimValue::String("The VM's smart paging file was not moved.".into()),
        );
        assert_eq!(
            phase_of(&w),
            JobPhase::Completed {
                warning: Some("The VM's smart paging file was not moved.".into())
            }
        );
        assert_eq!(phase_of(&job(4)), JobPhase::Running(Some(40)));
        assert_eq!(phase_of(&job(3)), JobPhase::Pending);
        assert_eq!(phase_of(&job(9)), JobPhase::Cancelled);
        assert_eq!(phase_of(&job(10)), JobPhase::Failed);
    }

    #[test]
    fn only_a_job_that_says_cancellable_may_be_cancelled() {
        assert!(!cancellable(&job(4)));
        assert!(!cancellable(
            &job(4).with("Cancellable", CimValue::Bool(false))
        ));
        assert!(!cancellable(&job(4).with("Cancellable", CimValue::Null)));
        assert!(cancellable(
            &job(4).with("Cancellable", CimValue::Bool(true))
        ));
    }

    #[test]
    fn a_failure_is_permanent_when_its_code_or_its_errors_say_so() {
        let generic = job(10).with("ErrorCode", CimValue::U16(32768)).with(
            "ErrorDescription",
            CimValue::String("Migration failed.".into()),
        );
        let (c, m) = failure(&generic, &[]);
        assert_eq!(c, ErrorClass::Transient);
        assert_eq!(m, "Migration failed. (error 32768)");
        let denied = JobError {
            message: "Failed to authenticate the connection at the source host".into(),
            cim_status: Some(2),
            error_type: Some(7),
        };
        let (c, m) = failure(&generic, std::slice::from_ref(&denied));
        assert_eq!(c, ErrorClass::Permanent);
        assert!(m.contains("Failed to authenticate"), "{m}");
        let access = job(10).with("ErrorCode", CimValue::U16(32769));
        assert_eq!(failure(&access, &[]).0, ErrorClass::Permanent);
        let memory = job(10).with("ErrorCode", CimValue::U16(32778));
        assert_eq!(failure(&memory, &[]).0, ErrorClass::DestinationRefused);
    }

    /// Each row of `MESSAGE_CLASSES` (and the checkpoint rule), as a failed job with the
    /// generic ErrorCode 32768 carries it: the message decides, not the code.
    #[test]
    fn a_failure_message_that_names_its_cause_is_classed_by_it() {
        let with = |m: &str| {
            failure(
                &job(10)
                    .with("ErrorCode", CimValue::U16(32768))
                    .with("ErrorDescription", CimValue::String(m.into())),
                &[],
            )
            .0
        };
        use ErrorClass::*;
        for (m, want) in [
            (
                "Failed to establish a connection with host 'HV2': No credentials are available in the security package (0x8009030E).",
                Permanent,
            ),
            (
                "The operation failed: Access is denied. (0x80070005)",
                Permanent,
            ),
            (
                "Could not find Ethernet switch 'LabOnly'.",
                DestinationRefused,
            ),
            (
                "The virtual machine 'x' has configuration version 12.0, which is not supported on 'HV2'.",
                DestinationRefused,
            ),
            (
                "The virtual machine 'x' is using processor-specific features not supported on physical computer 'HV2'.",
                DestinationRefused,
            ),
            (
                "The virtual machine 'x' cannot be migrated because it is attached to a physical disk.",
                Permanent,
            ),
            (
                "'E:\\ISO\\a.iso': The system cannot find the file specified. (0x80070002)",
                Permanent,
            ),
            (
                "There is not enough space on the disk. (0x80070070)",
                DestinationRefused,
            ),
            (
                "Insufficient system resources exist to complete the requested service. (0x800705AA)",
                DestinationRefused,
            ),
            (
                "Cannot create the file: it already exists. (0x800700B7)",
                DestinationRefused,
            ),
            (
                "The operation cannot be performed while the virtual machine's checkpoints are incompatible.",
                Permanent,
            ),
            (
                "Virtual machine migration operation failed at migration source 'HV1'.",
                Transient,
            ),
        ] {
            assert_eq!(with(m), want, "{m}");
        }
        // A code that says permanent stays permanent whatever the message.
        let denied = job(10).with("ErrorCode", CimValue::U16(32769)).with(
            "ErrorDescription",
            CimValue::String("not enough memory".into()),
        );
        assert_eq!(failure(&denied, &[]).0, Permanent);
    }

    #[test]
    fn msvm_error_is_read_from_its_cim_xml() {
        let text = "<INSTANCE CLASSNAME=\"Msvm_Error\"><PROPERTY NAME=\"CIMStatusCode\" TYPE=\"uint32\"><VALUE>2</VALUE></PROPERTY><PROPERTY NAME=\"ErrorType\" TYPE=\"uint16\"><VALUE>7</VALUE></PROPERTY><PROPERTY NAME=\"Message\" TYPE=\"string\"><VALUE>denied</VALUE></PROPERTY></INSTANCE>";
        let e = JobError::parse(text).unwrap();
        assert_eq!(e.message, "denied");
        assert!(e.is_permanent());
        assert_eq!(JobError::parse("not xml"), None);
    }
}
