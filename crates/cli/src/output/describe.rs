//! One line for a person per event worth printing (the live lines, and the lines above the bars).

use super::fmt::{fmt_time, hosts, plural};
use std::collections::HashMap;
use vmove_core::event::EventKind;
use vmove_core::{Event, VmId, WaitReason, fmt_bytes};

/// One line for a person about an event, or `None` for events too fine to print.
pub fn describe(ev: &Event, names: &HashMap<VmId, String>) -> Option<String> {
    let name = |vm: &VmId| names.get(vm).cloned().unwrap_or_else(|| vm.to_string());
    let s = match &ev.kind {
        EventKind::RunStarted {
            run_id,
            sources,
            destinations,
        } => format!(
            "run {run_id}: from {} to {}",
            hosts(sources),
            hosts(destinations)
        ),
        EventKind::HostSeen {
            host,
            limit,
            foreign,
            free_memory_bytes,
            free_disk_bytes,
        } => format!(
            "host {host}: {limit} slots, {foreign} taken by others, {} memory and {} disk free",
            fmt_bytes(*free_memory_bytes),
            fmt_bytes(*free_disk_bytes)
        ),
        EventKind::HostUnreachable { host, error } => {
            format!("host {host} did not answer: {error}")
        }
        EventKind::SelectionUnmatched { source, pattern } => {
            format!("`{pattern}` matches no VM on {source}")
        }
        EventKind::Selected {
            name: n,
            source,
            mode,
            memory_bytes,
            disk_bytes,
            ..
        } => format!(
            "{n}: selected on {source} ({mode}, {} memory, {} disk)",
            fmt_bytes(*memory_bytes),
            fmt_bytes(*disk_bytes)
        ),
        EventKind::Waiting { vm, reason } => match reason {
            WaitReason::NoSlot => return None,
            r => format!("{}: {r}", name(vm)),
        },
        EventKind::AttemptStarted {
            vm,
            attempt,
            source,
            destination,
            mode,
        } => {
            format!(
                "{}: attempt {attempt}, {source} -> {destination} ({mode})",
                name(vm)
            )
        }
        EventKind::AttemptFailed {
            vm,
            attempt,
            class,
            error,
            retry_at,
            ..
        } => format!(
            "{}: attempt {attempt} failed ({class}): {error}{}",
            name(vm),
            retry_at
                .map(|t| format!("; retry at {}", fmt_time(t)))
                .unwrap_or_default()
        ),
        EventKind::WatchdogFired { vm, attempt, which } => {
            format!("{}: {which} watchdog fired on attempt {attempt}", name(vm))
        }
        EventKind::Escalated { vm, aid, .. } => {
            format!("{}: convergence aid applied: {}", name(vm), aid.describe())
        }
        EventKind::NotAborted { vm, attempt, why } => format!(
            "{}: attempt {attempt} not aborted ({why}); waiting for it to end",
            name(vm)
        ),
        EventKind::AbortWaiting {
            vm,
            source,
            destination,
            why,
            round,
            rounds,
            look,
            looks,
            ..
        } => {
            if *look == 0 {
                format!(
                    "{}: {why} on {source} -> {destination}; abort asked of {source} (round {round} of {rounds})",
                    name(vm)
                )
            } else {
                format!(
                    "{}: {why} on {source} -> {destination}; abort asked, waiting for {source} to end the job (look {look} of {looks})",
                    name(vm)
                )
            }
        }
        EventKind::MigrationFailed {
            vm,
            attempt,
            source,
            destination,
            error,
        } => format!(
            "{}: attempt {attempt}: the migration {source} -> {destination} failed: {error}; looking at both hosts",
            name(vm)
        ),
        EventKind::CallFailed {
            vm,
            call,
            error,
            tries,
            of,
            retry_at,
            ..
        } => {
            if *call == vmove_core::AttemptCall::Abort {
                format!(
                    "{}: the abort (round {tries} of {of}) failed: {error}; looking at the hosts",
                    name(vm)
                )
            } else {
                format!(
                    "{}: {call} failed (try {tries} of {of}): {error}{}",
                    name(vm),
                    retry_at
                        .map(|t| format!("; again at {}", fmt_time(t)))
                        .unwrap_or_default()
                )
            }
        }
        EventKind::PreflightFindings {
            vm,
            destination,
            blockers,
            warnings,
            ..
        } => {
            let list = |fs: &[vmove_core::Finding]| {
                fs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            match (blockers.is_empty(), warnings.is_empty()) {
                (false, true) => format!(
                    "{}: pre-flight toward {destination}: blocked: {}",
                    name(vm),
                    list(blockers)
                ),
                (false, false) => format!(
                    "{}: pre-flight toward {destination}: blocked: {}; warnings: {}",
                    name(vm),
                    list(blockers),
                    list(warnings)
                ),
                (true, _) => format!(
                    "{}: pre-flight toward {destination}: warning: {}",
                    name(vm),
                    list(warnings)
                ),
            }
        }
        EventKind::PreflightFailed {
            vm,
            destination,
            error,
            tries,
            of,
            retry_at,
            ..
        } => format!(
            "{}: pre-flight toward {destination} could not be made (try {tries} of {of}): {error}{}",
            name(vm),
            retry_at
                .map(|t| format!("; again at {}", fmt_time(t)))
                .unwrap_or_default()
        ),
        EventKind::LeftBehind { vm, .. } => {
            format!("{}: {}", name(vm), left_behind(&ev.kind)?)
        }
        EventKind::Verified {
            vm,
            destination,
            downtime_ms,
        } => match downtime_ms {
            Some(ms) => format!("{}: verified on {destination} (paused {ms} ms)", name(vm)),
            None => format!("{}: verified on {destination}", name(vm)),
        },
        EventKind::LeftoverRemoved { vm, host, what, .. } => {
            format!("{}: removed {what} from {host}", name(vm))
        }
        EventKind::LeftoverKept {
            vm,
            host,
            what,
            error,
        } => {
            format!("{}: kept {what} on {host}: {error}", name(vm))
        }
        EventKind::Moved {
            name: n,
            destination,
            attempts,
            ..
        } => {
            format!(
                "{n}: MOVED to {destination} ({attempts} attempt{})",
                plural(*attempts)
            )
        }
        EventKind::Unmigratable {
            name: n, reason, ..
        } => format!("{n}: UNMIGRATABLE: {reason}"),
        EventKind::Cancelled {
            name: n, reason, ..
        } => format!("{n}: not moved: {reason}"),
        EventKind::StopRequested {
            abort_running: true,
        } => "stop: aborting running migrations".to_string(),
        EventKind::StopRequested {
            abort_running: false,
        } => "stop: no new moves; waiting for running ones".to_string(),
        EventKind::VmStopAsked {
            vm,
            abort_running,
            asked_by: by,
            asked_at: at,
            refused,
        } => {
            let what = if *abort_running { "abort" } else { "skip" };
            match refused {
                None => format!("{}: {what} asked by {by} at {at}", name(vm)),
                Some(why) => format!("{}: {what} asked by {by} at {at} REFUSED: {why}", name(vm)),
            }
        }
        EventKind::IllegalInput { vm, phase, input } => {
            format!("{}: ignored {input} in phase {phase} (a bug)", name(vm))
        }
        EventKind::RunFailed { error } => format!("run failed: {error}"),
        EventKind::RunFinished {
            moved,
            unmigratable,
            cancelled,
        } => {
            format!("finished: {moved} moved, {unmigratable} unmigratable, {cancelled} cancelled")
        }
        EventKind::Transition { .. } | EventKind::Progress { .. } => return None,
    };
    // One line, whatever the names and reasons in it hold.
    Some(format!(
        "[{:>7}] {}",
        fmt_time(ev.at),
        crate::stdio::escaped(&s)
    ))
}

/// What a failed attempt left on its destination when the move ended, for a person.
pub(super) fn left_behind(kind: &EventKind) -> Option<String> {
    let EventKind::LeftBehind {
        attempt,
        host,
        what,
        why,
        ..
    } = kind
    else {
        return None;
    };
    Some(if what.is_empty() {
        format!(
            "{host} was not checked for what attempt {attempt} left there ({why}); a later run removes what its driver proves ours"
        )
    } else {
        format!(
            "left on {host} by attempt {attempt}: {} (ours; not removed: {why}; a later run removes what its driver proves ours)",
            what.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Record;
    use vmove_core::model::ConvergenceAid;
    use vmove_core::{HostId, Time};

    fn left(what: Vec<String>, why: &str) -> Event {
        Event {
            at: Time(61_000),
            kind: EventKind::LeftBehind {
                vm: VmId::new("u7"),
                attempt: 1,
                host: HostId::new("hostJ"),
                what,
                why: why.into(),
            },
        }
    }

    #[test]
    fn what_a_give_up_leaves_behind_is_a_line_and_a_note_in_the_summary() {
        let names = HashMap::from([(VmId::new("u7"), "vm07".to_string())]);
        let ev = left(vec!["/img/vm07.qcow2".into()], "host hostJ does not answer");
        assert_eq!(
            describe(&ev, &names).as_deref(),
            Some(
                "[  1m01s] vm07: left on hostJ by attempt 1: /img/vm07.qcow2 (ours; not removed: host hostJ does not answer; a later run removes what its driver proves ours)"
            )
        );
        let unchecked = left(vec![], "its migration job was still running");
        let line = describe(&unchecked, &names).unwrap_or_default();
        assert!(
            line.contains("vm07: hostJ was not checked for what attempt 1 left there (its migration job was still running)"),
            "{line}"
        );
        let mut r = Record::new("migrate");
        r.apply(&ev);
        r.apply(&unchecked);
        let row = &r.vms[0];
        assert_eq!(row.notes.len(), 2, "{:?}", row.notes);
        assert!(
            r.table()
                .contains("left on hostJ by attempt 1: /img/vm07.qcow2")
        );
    }

    /// A convergence aid applied is said in words, in the line and in the summary's note.
    /// Before, both printed the enum's name: "applying RaiseDowntime".
    #[test]
    fn a_convergence_aid_applied_is_said_in_words_not_by_its_type_name() {
        let names = HashMap::from([(VmId::new("u7"), "vm07".to_string())]);
        for (aid, words) in [
            (
                ConvergenceAid::AutoConverge,
                "auto-converge (the guest's vCPUs are throttled)",
            ),
            (
                ConvergenceAid::RaiseDowntime,
                "the allowed downtime raised (doubled, up to the host's cap)",
            ),
            (
                ConvergenceAid::PostCopy,
                "switched to post-copy (the guest runs on the destination from now on)",
            ),
        ] {
            let ev = Event {
                at: Time(61_000),
                kind: EventKind::Escalated {
                    vm: VmId::new("u7"),
                    attempt: 1,
                    aid,
                },
            };
            assert_eq!(
                describe(&ev, &names),
                Some(format!("[  1m01s] vm07: convergence aid applied: {words}"))
            );
            let mut r = Record::new("migrate");
            r.apply(&ev);
            assert_eq!(
                r.vms[0].notes,
                [format!("convergence aid applied: {words}")]
            );
        }
    }

    /// A migration in post-copy that vmove did not abort: a line, and a note in the summary
    /// and the report (the reason a person reads for a stop that did not take effect).
    #[test]
    fn a_migration_not_aborted_in_post_copy_is_a_line_and_a_note() {
        let names = HashMap::from([(VmId::new("u7"), "vm07".to_string())]);
        let ev = Event {
            at: Time(61_000),
            kind: EventKind::NotAborted {
                vm: VmId::new("u7"),
                attempt: 2,
                why: "in post-copy: the guest runs on the destination".into(),
            },
        };
        assert_eq!(
            describe(&ev, &names).as_deref(),
            Some(
                "[  1m01s] vm07: attempt 2 not aborted (in post-copy: the guest runs on the destination); waiting for it to end"
            )
        );
        let mut r = Record::new("migrate");
        r.apply(&ev);
        assert_eq!(
            r.vms[0].notes,
            ["attempt 2 not aborted: in post-copy: the guest runs on the destination"]
        );
    }

    /// The end-to-end test of these lines (tests/cli_runs.rs) does not reach a look that waits:
    /// its first abort fails, and a failed abort is asked again at once, without waiting.
    #[test]
    fn a_look_that_finds_an_aborted_job_running_says_which_look_of_how_many() {
        let names = HashMap::from([(VmId::new("u7"), "vm07".to_string())]);
        let waiting = |look| Event {
            at: Time(57_400),
            kind: EventKind::AbortWaiting {
                vm: VmId::new("u7"),
                attempt: 1,
                source: HostId::new("hostA"),
                destination: HostId::new("hostJ"),
                why: "stalled: no progress for 15s".into(),
                round: 1,
                rounds: 3,
                look,
                looks: 6,
            },
        };
        assert_eq!(
            describe(&waiting(2), &names).as_deref(),
            Some(
                "[  57.4s] vm07: stalled: no progress for 15s on hostA -> hostJ; abort asked, waiting for hostA to end the job (look 2 of 6)"
            )
        );
        assert_eq!(
            describe(&waiting(0), &names).as_deref(),
            Some(
                "[  57.4s] vm07: stalled: no progress for 15s on hostA -> hostJ; abort asked of hostA (round 1 of 3)"
            )
        );
    }
}
