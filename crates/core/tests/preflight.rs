//! The engine asks pre-flight before a VM's attempts: blockers about the VM end it with 0
//! attempts and nothing touched, a blocked destination is skipped, warnings are said, a check
//! that fails is asked again (bounded), a retry asks again; and the same failure twice on one
//! route does not burn every attempt.
#![allow(clippy::unwrap_used)]
use crate::common::*;
use vmove_core::*;

fn three_hosts() -> World {
    let mut w = two_hosts();
    w.add_host("c", Some(2));
    w
}

fn blocked(scope: FindingScope, code: &str, message: &str, remedy: &str) -> Preflight {
    let mut p = Preflight::default();
    p.block(Finding::new(code, scope, message).remedy(remedy));
    p
}

fn answer(w: &mut World, vm: &str, dst: &str, r: Result<Preflight, Failure>) {
    w.preflights.insert((vm.into(), dst.into()), vec![r]);
}

/// Runs the world and returns the events and every command asked.
fn run_all(core: &mut Core, w: &mut World) -> (Vec<Event>, Vec<Command>) {
    let mut commands = Vec::new();
    let ev = run(core, w, Time::ZERO, |_, _, c| commands.push(c.clone()));
    (ev, commands)
}

/// Commands that touch or look at the VM's attempt (anything but a pre-flight check).
fn touching(commands: &[Command], vm: &str) -> Vec<Command> {
    commands
        .iter()
        .filter(|c| c.vm().is_some_and(|v| v.as_str() == vm))
        .filter(|c| !matches!(c, Command::Preflight { .. }))
        .cloned()
        .collect()
}

#[test]
fn a_vm_blocked_by_a_blocker_about_itself_ends_unmigratable_with_0_attempts_and_nothing_touched() {
    let mut w = three_hosts();
    w.add_vm("a", vm("saved", PowerState::Running));
    w.add_vm("a", vm("fine", PowerState::Running));
    let msg = "Refusing to undefine while domain managed save image exists";
    let remedy = "start the VM (or remove its saved state with virsh managedsave-remove)";
    answer(
        &mut w,
        "saved",
        "b",
        Ok(blocked(FindingScope::Vm, "managed_save", msg, remedy)),
    );
    answer(
        &mut w,
        "saved",
        "c",
        Ok(blocked(FindingScope::Vm, "managed_save", msg, remedy)),
    );
    let mut core = Core::new(spec("a", &["b", "c"], &["a", "b", "c"]), Time::ZERO).unwrap();
    let (ev, commands) = run_all(&mut core, &mut w);
    let v = outcome(&core, "saved");
    assert_eq!(v.phase, Phase::Unmigratable);
    assert_eq!(v.attempts, 0);
    match v.reason {
        Some(Reason::Blocked { blockers }) => {
            assert_eq!(blockers.len(), 1, "{blockers:?}");
            assert_eq!(blockers[0].destination, None);
            assert_eq!(blockers[0].finding.code, "managed_save");
            assert_eq!(blockers[0].finding.remedy, remedy);
        }
        other => panic!("expected Blocked, got {other:?}"),
    }
    let text = Reason::Blocked {
        blockers: vec![Blocker {
            destination: None,
            finding: Finding::new("managed_save", FindingScope::Vm, msg).remedy(remedy),
        }],
    }
    .to_string();
    assert!(text.contains(msg) && text.contains(remedy), "{text}");
    assert_eq!(touching(&commands, "id-saved"), vec![], "nothing touched");
    // One check was enough: a blocker about the VM holds for every destination.
    let asked: Vec<_> = w.preflight_log.iter().filter(|l| l.0 == "saved").collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(vm_events(&ev, "id-saved").iter().any(|e| matches!(
        e,
        EventKind::PreflightFindings { blockers, .. } if blockers.len() == 1
    )));
    assert_eq!(outcome(&core, "fine").phase, Phase::Moved);
}

#[test]
fn a_vm_blocked_on_one_destination_moves_to_the_other() {
    let mut w = three_hosts();
    w.add_vm("a", vm("net", PowerState::Running));
    answer(
        &mut w,
        "net",
        "b",
        Ok(blocked(
            FindingScope::Destination,
            "network_missing",
            "network 'lab' not found",
            "define network lab on b",
        )),
    );
    let mut core = Core::new(spec("a", &["b", "c"], &["a", "b", "c"]), Time::ZERO).unwrap();
    let (_, commands) = run_all(&mut core, &mut w);
    let v = outcome(&core, "net");
    assert_eq!(v.phase, Phase::Moved);
    assert_eq!(v.destination, Some(HostId::new("c")));
    assert_eq!(v.attempts, 1);
    let starts: Vec<_> = commands
        .iter()
        .filter_map(|c| match c {
            Command::StartMigration(r) => Some(r.destination.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec!["c"], "never started toward the blocked b");
    let asked: Vec<_> = w.preflight_log.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(asked, vec!["b", "c"]);
}

#[test]
fn a_vm_every_destination_blocks_ends_unmigratable_listing_each_destination_s_blockers() {
    let mut w = three_hosts();
    w.add_vm("a", vm("iso", PowerState::Running));
    for d in ["b", "c"] {
        answer(
            &mut w,
            "iso",
            d,
            Ok(blocked(
                FindingScope::Destination,
                "cdrom_missing",
                &format!("Cannot access storage file '/iso/x.iso' on {d}"),
                "copy the image or eject it",
            )),
        );
    }
    let mut core = Core::new(spec("a", &["b", "c"], &["a", "b", "c"]), Time::ZERO).unwrap();
    let (_, commands) = run_all(&mut core, &mut w);
    let v = outcome(&core, "iso");
    assert_eq!(v.phase, Phase::Unmigratable);
    assert_eq!(v.attempts, 0);
    let Some(Reason::Blocked { blockers }) = v.reason else {
        panic!("expected Blocked, got {:?}", v.reason);
    };
    let dests: Vec<_> = blockers
        .iter()
        .map(|b| b.destination.clone().unwrap().to_string())
        .collect();
    assert_eq!(dests, vec!["b", "c"]);
    assert_eq!(touching(&commands, "id-iso"), vec![]);
}

#[test]
fn warnings_are_reported_and_the_vm_moves() {
    let mut w = two_hosts();
    w.add_vm("a", vm("warned", PowerState::Running));
    let mut p = Preflight::default();
    p.warn(Finding::new(
        "cdrom_copied",
        FindingScope::Destination,
        "the CD-ROM image /iso/x.iso will be copied",
    ));
    answer(&mut w, "warned", "b", Ok(p.clone()));
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let (ev, _) = run_all(&mut core, &mut w);
    assert_eq!(outcome(&core, "warned").phase, Phase::Moved);
    let warned: Vec<_> = vm_events(&ev, "id-warned")
        .into_iter()
        .filter_map(|e| match e {
            EventKind::PreflightFindings {
                warnings, blockers, ..
            } => Some((warnings.clone(), blockers.len())),
            _ => None,
        })
        .collect();
    assert_eq!(warned, vec![(p.warnings, 0)]);
}

#[test]
fn a_failed_check_is_asked_again_after_the_back_off_and_then_the_vm_moves() {
    let mut w = two_hosts();
    w.add_vm("a", vm("later", PowerState::Running));
    let down = Failure::new(ErrorClass::Transient, "host b did not answer within 30s");
    w.preflights.insert(
        ("later".into(), "b".into()),
        vec![Err(down.clone()), Ok(Preflight::default())],
    );
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let (ev, _) = run_all(&mut core, &mut w);
    let v = outcome(&core, "later");
    assert_eq!(v.phase, Phase::Moved);
    assert_eq!(v.attempts, 1, "a failed check is no attempt");
    let retry: Vec<_> = vm_events(&ev, "id-later")
        .into_iter()
        .filter_map(|e| match e {
            EventKind::PreflightFailed { retry_at, .. } => Some(*retry_at),
            _ => None,
        })
        .collect();
    assert_eq!(retry, vec![Some(Time(20_000))], "backoff_initial");
    assert_eq!(w.preflight_log.len(), 2);
}

#[test]
fn a_check_that_always_fails_is_bounded_by_max_attempts() {
    let mut w = two_hosts();
    w.add_vm("a", vm("never", PowerState::Running));
    let down = Failure::new(ErrorClass::Transient, "host b did not answer within 30s");
    answer(&mut w, "never", "b", Err(down.clone()));
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let (_, commands) = run_all(&mut core, &mut w);
    let v = outcome(&core, "never");
    assert_eq!(v.phase, Phase::Unmigratable);
    assert_eq!(v.attempts, 0);
    assert_eq!(
        v.reason,
        Some(Reason::PreflightFailed {
            tries: 3,
            error: down.message
        })
    );
    assert_eq!(w.preflight_log.len(), 3);
    assert_eq!(touching(&commands, "id-never"), vec![]);
}

#[test]
fn a_retry_asks_pre_flight_again() {
    let mut w = two_hosts();
    w.add_vm("a", vm("flaky", PowerState::Running));
    w.start_failures
        .insert("flaky".into(), vec![ErrorClass::Transient]);
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    run_all(&mut core, &mut w);
    assert_eq!(outcome(&core, "flaky").phase, Phase::Moved);
    let attempts: Vec<u32> = w.preflight_log.iter().map(|l| l.2).collect();
    assert_eq!(
        attempts,
        vec![1, 2],
        "asked before attempt 1 and again before 2"
    );
}

#[test]
fn pre_flight_is_asked_only_for_the_vms_next_in_line() {
    let mut w = two_hosts();
    for i in 0..40 {
        w.add_vm("a", vm(&format!("v{i:02}"), PowerState::Running));
    }
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    // Answer the refreshes only: count the checks asked before any of them is answered.
    let mut checks = 0;
    for _ in 0..10 {
        while let Some(c) = core.poll_command() {
            match c {
                Command::RefreshHost { .. } => {
                    let i = w.answer(Time::ZERO, c).unwrap();
                    core.handle_event(Time::ZERO, i);
                }
                Command::Preflight { .. } => checks += 1,
                other => panic!("nothing starts before its check: {other:?}"),
            }
        }
    }
    // a and b allow 2 at once: 2 checks per free slot.
    assert!((2..=4).contains(&checks), "{checks} checks asked at once");
}

#[test]
fn the_same_failure_twice_on_the_only_route_ends_unmigratable_without_a_third_try() {
    let mut w = two_hosts();
    w.add_vm("a", vm("snap", PowerState::Running));
    w.start_failures
        .insert("snap".into(), vec![ErrorClass::Transient; 10]);
    w.start_failure_message.insert(
        "snap".into(),
        "Requested operation is not valid: cannot migrate domain with 1 snapshots".into(),
    );
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    run_all(&mut core, &mut w);
    let v = outcome(&core, "snap");
    assert_eq!(v.phase, Phase::Unmigratable);
    assert_eq!(v.attempts, 2);
    match v.reason {
        Some(Reason::SameFailureTwice { destination, error }) => {
            assert_eq!(destination, HostId::new("b"));
            assert!(error.contains("1 snapshots"), "{error}");
        }
        other => panic!("expected SameFailureTwice, got {other:?}"),
    }
    assert!(
        Reason::SameFailureTwice {
            destination: HostId::new("b"),
            error: "x".into()
        }
        .to_string()
        .contains("the same failure twice")
    );
}

#[test]
fn the_same_failure_twice_on_one_route_tries_another_destination() {
    let mut w = three_hosts();
    w.add_vm("a", vm("picky", PowerState::Running));
    w.start_failures
        .insert("picky".into(), vec![ErrorClass::Transient; 2]);
    w.start_failure_message
        .insert("picky".into(), "unsupported configuration".into());
    let mut core = Core::new(spec("a", &["b", "c"], &["a", "b", "c"]), Time::ZERO).unwrap();
    let (_, commands) = run_all(&mut core, &mut w);
    let v = outcome(&core, "picky");
    assert_eq!(v.phase, Phase::Moved);
    assert_eq!(v.destination, Some(HostId::new("c")));
    let starts: Vec<_> = commands
        .iter()
        .filter_map(|c| match c {
            Command::StartMigration(r) => Some(r.destination.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec!["b", "b", "c"]);
}

#[test]
fn different_failures_on_one_route_still_use_every_attempt() {
    let mut w = two_hosts();
    w.add_vm("a", vm("varied", PowerState::Running));
    w.start_failures
        .insert("varied".into(), vec![ErrorClass::Transient; 10]);
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    run_all(&mut core, &mut w);
    let v = outcome(&core, "varied");
    assert_eq!(v.attempts, 3);
    assert!(
        matches!(v.reason, Some(Reason::AttemptsExhausted { .. })),
        "{:?}",
        v.reason
    );
}

fn may_pass(code: &str, message: &str) -> Preflight {
    let mut p = Preflight::default();
    p.block(
        Finding::new(code, FindingScope::Destination, message)
            .remedy("free it there")
            .may_pass(),
    );
    p
}

/// The checks of `vm` asked: (destination, time).
fn checks_of(commands: &[(Time, Command)], vm: &str) -> Vec<(String, Time)> {
    commands
        .iter()
        .filter_map(|(t, c)| match c {
            Command::Preflight { request } if &*request.vm_name == vm => {
                Some((request.destination.to_string(), *t))
            }
            _ => None,
        })
        .collect()
}

fn run_logged(core: &mut Core, w: &mut World) -> (Vec<Event>, Vec<(Time, Command)>) {
    let mut commands = Vec::new();
    let ev = run_timed(core, w, Time::ZERO, |_, _, t, c| {
        commands.push((t, c.clone()))
    });
    (ev, commands)
}

#[test]
fn a_destination_short_of_memory_now_that_frees_later_gets_the_vm() {
    let mut w = two_hosts();
    w.add_vm("a", vm("big", PowerState::Running));
    let short = may_pass(
        "memory",
        "b has 1 GiB of memory available, VM big needs 4 GiB",
    );
    w.preflights.insert(
        ("big".into(), "b".into()),
        vec![Ok(short.clone()), Ok(short), Ok(Preflight::default())],
    );
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let (ev, commands) = run_logged(&mut core, &mut w);
    let v = outcome(&core, "big");
    assert_eq!(v.phase, Phase::Moved, "{:?}", v.reason);
    assert_eq!(v.destination, Some(HostId::new("b")));
    assert_eq!(v.attempts, 1, "waiting is no attempt");
    let checks = checks_of(&commands, "big");
    assert_eq!(checks.len(), 3, "{checks:?}");
    // Asked again after the back-off (20 s, then 40 s: no jitter in these tests).
    assert_eq!(checks[1].1, Time(20_000), "{checks:?}");
    assert_eq!(checks[2].1, Time(60_000), "{checks:?}");
    let waits: Vec<_> = vm_events(&ev, "id-big")
        .into_iter()
        .filter_map(|e| match e {
            EventKind::Waiting { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        waits,
        vec![WaitReason::MayPass {
            destination: HostId::new("b"),
            code: "memory".into()
        }],
        "said once, naming the destination and the finding"
    );
    assert!(
        waits[0].to_string().contains("b (memory, which may pass)"),
        "{}",
        waits[0]
    );
}

#[test]
fn a_move_that_ends_at_the_destination_asks_a_waiting_vm_again_before_its_back_off() {
    let mut w = two_hosts();
    w.add_vm("a", vm("first", PowerState::Running));
    w.add_vm("a", vm("big", PowerState::Running));
    let short = may_pass("memory", "b has too little memory for VM big");
    w.preflights.insert(
        ("big".into(), "b".into()),
        vec![Ok(short), Ok(Preflight::default())],
    );
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.settings.backoff_initial = std::time::Duration::from_secs(600);
    s.settings.backoff_max = std::time::Duration::from_secs(600);
    let mut core = Core::new(s, Time::ZERO).unwrap();
    let (_, commands) = run_logged(&mut core, &mut w);
    assert_eq!(outcome(&core, "first").phase, Phase::Moved);
    assert_eq!(outcome(&core, "big").phase, Phase::Moved);
    let checks = checks_of(&commands, "big");
    assert_eq!(checks.len(), 2, "{checks:?}");
    // `first` lands on b after its 30 s migration: big is asked again then, not at 600 s.
    assert!(
        checks[1].1 >= Time(30_000) && checks[1].1 < Time(60_000),
        "{checks:?}"
    );
}

#[test]
fn a_destination_that_never_frees_ends_the_vm_blocked_after_the_hold_threshold() {
    let mut w = two_hosts();
    w.add_vm("a", vm("huge", PowerState::Running));
    answer(
        &mut w,
        "huge",
        "b",
        Ok(may_pass(
            "memory",
            "b has 1 GiB available, VM huge needs 64 GiB",
        )),
    );
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.settings.backup_threshold = std::time::Duration::from_secs(600);
    let mut core = Core::new(s, Time::ZERO).unwrap();
    let (ev, commands) = run_logged(&mut core, &mut w);
    let v = outcome(&core, "huge");
    assert_eq!(v.phase, Phase::Unmigratable);
    assert_eq!(v.attempts, 0);
    let Some(Reason::Blocked { blockers }) = &v.reason else {
        panic!("expected Blocked, got {:?}", v.reason);
    };
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert_eq!(blockers[0].destination, Some(HostId::new("b")));
    assert!(blockers[0].finding.may_pass && blockers[0].finding.code == "memory");
    let only: Vec<Command> = commands.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(touching(&only, "id-huge"), vec![], "nothing touched");
    // Back-off 20, 40, 80, 160, 300 s..., the last check at the threshold (600 s) itself.
    let times: Vec<Time> = checks_of(&commands, "huge").iter().map(|c| c.1).collect();
    assert_eq!(
        times,
        vec![
            Time::ZERO,
            Time(20_000),
            Time(60_000),
            Time(140_000),
            Time(300_000),
            Time(600_000)
        ]
    );
    let end = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::Unmigratable { .. }))
        .unwrap();
    assert_eq!(end.at, Time(600_000));
}

#[test]
fn a_destination_that_may_free_is_waited_for_when_the_other_blocks_for_good() {
    let mut w = three_hosts();
    w.add_vm("a", vm("vm1", PowerState::Running));
    w.preflights.insert(
        ("vm1".into(), "b".into()),
        vec![
            Ok(may_pass(
                "disk_space",
                "pool images on b has 1 GiB free, the disks take 8",
            )),
            Ok(Preflight::default()),
        ],
    );
    answer(
        &mut w,
        "vm1",
        "c",
        Ok(blocked(
            FindingScope::Destination,
            "network_missing",
            "network 'lab' not found on c",
            "define it",
        )),
    );
    let mut core = Core::new(spec("a", &["b", "c"], &["a", "b", "c"]), Time::ZERO).unwrap();
    let (_, commands) = run_logged(&mut core, &mut w);
    let v = outcome(&core, "vm1");
    assert_eq!(v.phase, Phase::Moved, "{:?}", v.reason);
    assert_eq!(v.destination, Some(HostId::new("b")));
    let asked: Vec<String> = checks_of(&commands, "vm1")
        .into_iter()
        .map(|c| c.0)
        .collect();
    // c's lasting blocker is not asked again; b is, after the back-off.
    assert_eq!(asked, vec!["b", "c", "b"]);
}

#[test]
fn a_taken_destination_path_is_waited_for_and_the_vm_moves_once_it_is_free() {
    let mut w = two_hosts();
    w.add_vm("a", vm("again", PowerState::Running));
    w.preflights.insert(
        ("again".into(), "b".into()),
        vec![
            Ok(may_pass(
                Finding::PATH_TAKEN,
                "b already holds a file at /images/again.qcow2",
            )),
            Ok(Preflight::default()),
        ],
    );
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let (ev, commands) = run_logged(&mut core, &mut w);
    let v = outcome(&core, "again");
    assert_eq!(v.phase, Phase::Moved, "{:?}", v.reason);
    assert_eq!(v.attempts, 1, "no start while the path was taken");
    assert!(vm_events(&ev, "id-again").iter().any(|e| matches!(
        e,
        EventKind::PreflightFindings { blockers, .. }
            if blockers.len() == 1 && blockers[0].code == "path_taken" && blockers[0].may_pass
    )));
    let starts: Vec<Time> = commands
        .iter()
        .filter_map(|(t, c)| matches!(c, Command::StartMigration(_)).then_some(*t))
        .collect();
    assert_eq!(starts, vec![Time(20_000)]);
}

#[test]
fn a_taken_destination_path_that_is_not_freed_ends_blocked_with_nothing_touched() {
    let mut w = two_hosts();
    w.add_vm("a", vm("clash", PowerState::Running));
    answer(
        &mut w,
        "clash",
        "b",
        Ok(may_pass(
            Finding::PATH_TAKEN,
            "b already holds a file at /images/clash.qcow2",
        )),
    );
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.settings.backup_threshold = std::time::Duration::from_secs(120);
    let mut core = Core::new(s, Time::ZERO).unwrap();
    let (_, commands) = run_logged(&mut core, &mut w);
    let v = outcome(&core, "clash");
    assert_eq!(v.phase, Phase::Unmigratable);
    assert_eq!(v.attempts, 0);
    assert!(
        matches!(&v.reason, Some(Reason::Blocked { blockers }) if blockers[0].finding.code == "path_taken"),
        "{:?}",
        v.reason
    );
    let only: Vec<Command> = commands.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(touching(&only, "id-clash"), vec![]);
}

#[test]
fn a_finding_that_may_pass_is_said_so_in_json_and_old_json_reads_as_lasting() {
    let f = Finding::new("memory", FindingScope::Destination, "short").may_pass();
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["may_pass"], serde_json::Value::Bool(true));
    let lasting = Finding::new("snapshots", FindingScope::Vm, "1 snapshot");
    let json = serde_json::to_value(&lasting).unwrap();
    assert!(json.get("may_pass").is_none(), "{json}");
    let old: Finding =
        serde_json::from_str(r#"{"code":"memory","scope":"destination","message":"m"}"#).unwrap();
    assert!(!old.may_pass);
}
