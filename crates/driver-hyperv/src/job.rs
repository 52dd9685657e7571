//! Migration jobs: the reference `MigrateVirtualSystemToHost` returned, what a job's state
//! means, how it is cancelled, and what a failed job's detail says.
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

use crate::cim::{CimInstance, Epr, class_uri};
use vmove_driver::ErrorClass;

/// `root/virtualization/v2`.
const V2: &str = "root/virtualization/v2";

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

/// The class of a job `ErrorCode` or method return value (the migration service's table).
pub fn code_class(code: u32) -> ErrorClass {
    match code {
        // failed, status unknown, timeout, system in use, invalid state, not available
        32768 | 32771 | 32772 | 32774 | 32775 | 32777 => ErrorClass::Transient,
        // out of memory: this destination cannot take it now
        32778 => ErrorClass::DestinationRefused,
        // access denied, not supported, invalid parameter, incorrect data type, and codes no
        // table defines
        _ => ErrorClass::Permanent,
    }
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

/// A failed job's class and words, from its `ErrorCode`, `ErrorDescription` and the
/// `GetErrorEx` errors: permanent when either the code or any error says so, else
/// destination-refused when the code says so, else transient.
pub fn failure(job: &CimInstance, errors: &[JobError]) -> (ErrorClass, String) {
    let code = job.get_u32("ErrorCode").unwrap_or(0);
    let by_code = if code == 0 {
        ErrorClass::Transient
    } else {
        code_class(code)
    };
    let class = if errors.iter().any(JobError::is_permanent) {
        ErrorClass::Permanent
    } else {
        by_code
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
    (class, format!("{words} (error {code})"))
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

    #[test]
    fn msvm_error_is_read_from_its_cim_xml() {
        let text = "<INSTANCE CLASSNAME=\"Msvm_Error\"><PROPERTY NAME=\"CIMStatusCode\" TYPE=\"uint32\"><VALUE>2</VALUE></PROPERTY><PROPERTY NAME=\"ErrorType\" TYPE=\"uint16\"><VALUE>7</VALUE></PROPERTY><PROPERTY NAME=\"Message\" TYPE=\"string\"><VALUE>denied</VALUE></PROPERTY></INSTANCE>";
        let e = JobError::parse(text).unwrap();
        assert_eq!(e.message, "denied");
        assert!(e.is_permanent());
        assert_eq!(JobError::parse("not xml"), None);
    }
}
