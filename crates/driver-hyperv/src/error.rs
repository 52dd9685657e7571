//! How a failed call becomes a [`DriverError`]: a read (`read_err`), a state-changing call
//! (`write_err`), and a WMI method's return value (`rv_error`, with the migration service's
//! return-value table).

use crate::wsman::{SoapError, WsmanError};
use vmove_driver::*;

/// A read-only call failed: transient unless the credentials or the request are wrong.
pub(crate) fn read_err(host: &HostId, what: &str, e: WsmanError) -> DriverError {
    let msg = format!("{what} on {host} failed: {e}");
    if e.is_unauthorized() {
        return DriverError::permanent(msg);
    }
    match &e {
        // A WMI error that says "later" (server too busy, out of memory...) passes.
        WsmanError::Soap(s) if s.wmi().is_some_and(|w| w.is_transient()) => {
            DriverError::transient(msg).with_code(wmi_code(s))
        }
        WsmanError::Soap(s) if !s.is_timeout() && matches!(s, SoapError::Fault { .. }) => {
            match s.wmi().and_then(|w| w.code) {
                Some(c) => DriverError::permanent(msg).with_code(c as i64),
                None => DriverError::permanent(msg),
            }
        }
        _ => DriverError::transient(msg),
    }
}

/// The WMI error code of a fault, else its WS-Management code, else 0.
fn wmi_code(s: &SoapError) -> i64 {
    match s {
        SoapError::Fault { wmi, code, .. } => {
            wmi.as_ref().and_then(|w| w.code).or(*code).unwrap_or(0) as i64
        }
        _ => 0,
    }
}

/// A state-changing call failed: indeterminate unless it certainly was not delivered.
pub(crate) fn write_err(host: &HostId, what: &str, e: WsmanError) -> DriverError {
    let msg = format!("{what} on {host} failed: {e}");
    if e.certainly_not_sent() {
        if e.is_unauthorized() {
            return DriverError::permanent(msg);
        }
        return DriverError::transient(msg);
    }
    match &e {
        // The provider refused the call before doing anything (too busy, over quota): not
        // carried out, ask again later. A WMI time-out, transport failure or out-of-memory may
        // come after the method began: indeterminate, like the operation time-out (below).
        WsmanError::Soap(s) if s.wmi().is_some_and(|w| w.refused_before_work()) => {
            DriverError::transient(msg).with_code(wmi_code(s))
        }
        WsmanError::Soap(s) if s.wmi().is_some_and(|w| w.is_transient()) => {
            DriverError::indeterminate(msg).with_code(wmi_code(s))
        }
        WsmanError::Soap(SoapError::Fault { code, wmi, .. }) if !e_is_timeout(&e) => {
            let mut d = DriverError::permanent(msg);
            d.code = wmi
                .as_ref()
                .and_then(|w| w.code)
                .or(*code)
                .map(|c| c as i64);
            d
        }
        _ => DriverError::indeterminate(msg),
    }
}

/// Whether the call timed out (WS-Management `OperationTimeout`): it may have begun.
fn e_is_timeout(e: &WsmanError) -> bool {
    matches!(e, WsmanError::Soap(s) if s.is_timeout())
}

/// A WMI method's return value: completed (the migration service's table,
/// MicrosoftDocs/win32 desktop-src/HyperV_v2/migratevirtualsystemtohost-msvm-
/// virtualsystemmigrationservice.md, shared by `RequestStateChange` and `DestroySystem`).
pub(crate) const RV_COMPLETED: u32 = 0;
/// The method started a job that carries it on ("Method Parameters Checked - Job Started").
pub(crate) const RV_JOB_STARTED: u32 = 4096;
/// "Invalid state for this operation": asked of a job that has ended meanwhile.
pub(crate) const RV_INVALID_STATE: u32 = 32775;

/// Words for a WMI method return value.
pub fn return_value_words(rv: u32) -> &'static str {
    match rv {
        RV_COMPLETED => "completed",
        RV_JOB_STARTED => "job started",
        32768 => "failed",
        32769 => "access denied",
        32770 => "not supported",
        32771 => "status is unknown",
        32772 => "timeout",
        32773 => "invalid parameter",
        32774 => "system is in use",
        RV_INVALID_STATE => "invalid state for this operation",
        32776 => "incorrect data type",
        32777 => "system is not available",
        32778 => "out of memory",
        _ => "unknown return value",
    }
}

/// A WMI method's return value other than success as an error of the class its table gives.
pub(crate) fn rv_error(what: &str, rv: u32) -> DriverError {
    let msg = format!("{what} returned {rv} ({})", return_value_words(rv));
    DriverError {
        class: code_class(rv),
        message: msg,
        code: Some(rv as i64),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use vmove_driver::ErrorClass;

    fn wmi_fault(code: u64) -> WsmanError {
        WsmanError::Soap(crate::wsman::SoapError::Fault {
            subcode: "w:InternalError".into(),
            code: None,
            reason: "r".into(),
            wmi: Some(Box::new(crate::wsman::WmiError {
                code: Some(code),
                message: "m".into(),
                cim_status: None,
                message_id: None,
            })),
        })
    }

    #[test]
    fn a_wmi_error_on_a_state_changing_call_is_transient_only_when_refused_before_work() {
        let h = HostId::new("hv1");
        // Server too busy: refused, not carried out.
        let e = write_err(&h, "x", wmi_fault(0x8004_1045));
        assert_eq!(
            (e.class, e.code),
            (ErrorClass::Transient, Some(0x8004_1045))
        );
        // Timed out: the method may have begun.
        assert_eq!(
            write_err(&h, "x", wmi_fault(0x8004_3001)).class,
            ErrorClass::Indeterminate
        );
        // Not found: an answer about the request.
        assert_eq!(
            write_err(&h, "x", wmi_fault(0x8004_1002)).class,
            ErrorClass::Permanent
        );
        // A read is never indeterminate.
        assert_eq!(
            read_err(&h, "x", wmi_fault(0x8004_3001)).class,
            ErrorClass::Transient
        );
    }

    #[test]
    fn return_values_are_classified() {
        assert_eq!(rv_error("x", 32768).class, ErrorClass::Transient);
        assert_eq!(rv_error("x", 32775).class, ErrorClass::Transient);
        assert_eq!(rv_error("x", 32769).class, ErrorClass::Permanent);
        assert_eq!(rv_error("x", 32775).code, Some(32775));
    }
}
