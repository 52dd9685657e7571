//! Commands and their answers: one identity ([`Command::key`], [`Input::key`]) and one failed
//! answer ([`Command::failed`]) for every kind of command.

use vmove_core::io::{Key, LeftoverContext};
use vmove_core::model::{
    ConvergenceAid, ErrorClass, Failure, HostId, Leftover, LeftoverKind, MigrationHandle,
    MigrationMode, MigrationRequest, PathLayout, VmId,
};
use vmove_core::{Command, Input, Time};

fn request(attempt: u32) -> MigrationRequest {
    MigrationRequest {
        vm: VmId::new("u-7"),
        vm_name: "web7".into(),
        source: HostId::new("a"),
        destination: HostId::new("b"),
        mode: MigrationMode::Offline,
        layout: PathLayout::default(),
        attempt,
        run_id: "r1".into(),
    }
}

fn leftover() -> Leftover {
    Leftover {
        host: HostId::new("b"),
        kind: LeftoverKind::DiskImage,
        what: "/images/web7.qcow2".into(),
    }
}

/// One command of every kind, about attempt 3 of `u-7` (a refresh: host `a`).
fn every_command() -> Vec<Command> {
    let handle = MigrationHandle("job-3".into());
    vec![
        Command::RefreshHost {
            host: HostId::new("a"),
        },
        Command::Preflight {
            request: request(3).into(),
        },
        Command::StartMigration(request(3).into()),
        Command::PollMigration {
            request: request(3).into(),
            handle: handle.clone(),
        },
        Command::AbortMigration {
            request: request(3).into(),
            handle: handle.clone(),
        },
        Command::Converge {
            request: request(3).into(),
            handle,
            aid: ConvergenceAid::PostCopy,
        },
        Command::Locate {
            request: request(3).into(),
        },
        Command::Verify {
            request: request(3).into(),
        },
        Command::ListLeftovers {
            request: request(3).into(),
            context: LeftoverContext::AfterFailedAttempt,
        },
        Command::RemoveLeftover {
            request: request(3).into(),
            leftover: leftover(),
            context: LeftoverContext::AfterFailedAttempt,
        },
    ]
}

#[test]
fn every_failed_answer_has_the_key_of_its_command_and_carries_the_failure() {
    let failure = Failure::new(ErrorClass::Indeterminate, "no answer");
    for cmd in every_command() {
        let answer = cmd.failed(Time(42), failure.clone());
        assert_eq!(answer.key(), Some(cmd.key()), "{cmd:?} -> {answer:?}");
        let (vm_attempt, failed) = match &answer {
            Input::HostRefreshed {
                requested_at,
                result,
                ..
            } => {
                assert_eq!(*requested_at, Time(42));
                (None, result.as_ref().err())
            }
            Input::Preflighted { result, .. } => (answer.vm_attempt(), result.as_ref().err()),
            Input::MigrationStarted { result, .. } => (answer.vm_attempt(), result.as_ref().err()),
            Input::MigrationStatus { result, .. } => (answer.vm_attempt(), result.as_ref().err()),
            Input::AbortDone { result, .. } => (answer.vm_attempt(), result.as_ref().err()),
            Input::Converged { result, .. } => (answer.vm_attempt(), result.as_ref().err()),
            Input::Located { result, .. } => (answer.vm_attempt(), result.as_ref().err()),
            Input::Verified { result, .. } => (answer.vm_attempt(), result.as_ref().err()),
            Input::LeftoversListed { result, .. } => (answer.vm_attempt(), result.as_ref().err()),
            Input::LeftoverRemoved { result, .. } => (answer.vm_attempt(), result.as_ref().err()),
            Input::Stop { .. } | Input::StopVm { .. } => panic!("a stop answers nothing"),
            Input::StartDeferred { .. } => panic!("a failed start is not a deferral"),
        };
        assert_eq!(failed, Some(&failure), "{cmd:?}");
        assert_eq!(
            vm_attempt.map(|(vm, a)| (vm.clone(), a)),
            cmd.vm().map(|vm| (vm.clone(), 3)),
            "{cmd:?}"
        );
    }
}

#[test]
fn keys_tell_kinds_attempts_and_leftovers_apart() {
    let keys: Vec<Key> = every_command().iter().map(Command::key).collect();
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b, "two kinds of command share a key");
        }
    }
    let poll = |attempt| Command::PollMigration {
        request: request(attempt).into(),
        handle: MigrationHandle("job".into()),
    };
    assert_ne!(
        poll(3).key(),
        poll(4).key(),
        "an older attempt's answer is not matched"
    );
    let remove = |what: &str| Command::RemoveLeftover {
        request: request(3).into(),
        leftover: Leftover {
            what: what.into(),
            ..leftover()
        },
        context: LeftoverContext::AfterSuccess,
    };
    assert_ne!(remove("/x").key(), remove("/y").key());
    assert_eq!(
        Input::Stop {
            abort_running: true
        }
        .key(),
        None
    );
}

#[test]
fn commands_about_an_attempt_carry_its_request() {
    for cmd in every_command() {
        match &cmd {
            Command::RefreshHost { .. } => {
                assert_eq!(cmd.request(), None);
                assert_eq!(cmd.attempt(), None);
            }
            _ => {
                assert_eq!(cmd.request(), Some(&request(3)), "{cmd:?}");
                assert_eq!(cmd.attempt(), Some(3));
                assert_eq!(cmd.vm(), Some(&VmId::new("u-7")));
            }
        }
    }
}

/// "(Transient)" in the live lines, "transient" in JSON and reports: one word for each class.
#[test]
fn an_error_class_is_written_as_serde_writes_it() {
    for c in [
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::DestinationRefused,
        ErrorClass::Indeterminate,
    ] {
        assert_eq!(
            serde_json::to_string(&c).expect("an error class serialises"),
            format!("\"{c}\""),
            "{c:?}"
        );
    }
}

#[test]
fn a_deferred_start_has_the_key_of_its_start() {
    let start = Command::StartMigration(request(3).into());
    let deferred = Input::StartDeferred {
        vm: VmId::new("u-7"),
        attempt: 3,
        busy: vec![(HostId::new("b"), 2)],
    };
    assert_eq!(deferred.key(), Some(start.key()));
    assert_eq!(deferred.vm_attempt().map(|(_, a)| a), Some(3));
}
