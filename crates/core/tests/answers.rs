//! Answers find their VM: by the very id of the command handed out last (`Core::poll_command`),
//! else by its text. A driver may answer commands in any order, and may name the VM with an id
//! of its own making (text equal to the command's, not the same shared text).
#![allow(clippy::unwrap_used)]
use crate::common::*;
use vmove_core::*;

/// The same input with every id made afresh (equal text, another allocation), as a driver that
/// reads its answers off the wire gives them.
fn with_fresh_ids(input: Input) -> Input {
    serde_json::from_value(serde_json::to_value(&input).unwrap()).unwrap()
}

/// Three VMs, two slots: commands of several VMs are out at once.
fn world() -> (World, RunSpec) {
    let mut w = World::new();
    w.add_host("a", Some(2));
    w.add_host("b", Some(2));
    for name in ["web1", "web2", "web3"] {
        w.add_vm("a", vm(name, PowerState::Running));
    }
    (w, spec("a", &["b"], &["a", "b"]))
}

/// Runs the core against `w`, taking every command out before answering any, answering the
/// last one handed out first and the first one last, each answer with fresh ids when `fresh`.
fn run_answering_last_first(core: &mut Core, w: &mut World, fresh: bool) -> Vec<Event> {
    let mut now = Time::ZERO;
    let mut events = vec![];
    for _ in 0..100_000 {
        loop {
            let batch: Vec<Command> = std::iter::from_fn(|| core.poll_command()).collect();
            if batch.is_empty() {
                break;
            }
            for c in batch.into_iter().rev() {
                if let Some(i) = w.answer(now, c) {
                    core.handle_event(now, if fresh { with_fresh_ids(i) } else { i });
                }
            }
        }
        events.extend(std::iter::from_fn(|| core.poll_event()));
        if core.is_finished() {
            return events;
        }
        now = advance(core, w, now);
    }
    panic!("did not finish in 100000 steps");
}

/// An answer that comes after another VM's command was handed out, or names its VM with an id
/// of its own, still reaches its own VM: every VM moves once, as when each command is answered
/// at once with the id it gave.
#[test]
fn answers_reach_their_own_vm_whatever_command_was_handed_out_last() {
    let (mut w, s) = world();
    let mut core = Core::new(s.clone(), Time::ZERO).unwrap();
    let in_order = run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    for fresh in [false, true] {
        let (mut w, s) = world();
        let mut core = Core::new(s, Time::ZERO).unwrap();
        let events = run_answering_last_first(&mut core, &mut w, fresh);
        for name in ["web1", "web2", "web3"] {
            let v = outcome(&core, name);
            assert_eq!(v.phase, Phase::Moved, "{name} (fresh ids: {fresh})");
            assert_eq!(v.attempts, 1, "{name} (fresh ids: {fresh})");
        }
        let illegal = |ev: &[Event]| {
            ev.iter()
                .filter(|e| matches!(e.kind, EventKind::IllegalInput { .. }))
                .count()
        };
        assert_eq!(illegal(&events), 0, "fresh ids: {fresh}");
        assert_eq!(illegal(&in_order), 0);
        // Each VM went through the same phases as in order.
        for name in ["web1", "web2", "web3"] {
            let phases = |ev: &[Event]| -> Vec<(Phase, Phase)> {
                vm_events(ev, &outcome(&core, name).id.to_string())
                    .into_iter()
                    .filter_map(|k| match k {
                        EventKind::Transition { from, to, .. } => Some((*from, *to)),
                        _ => None,
                    })
                    .collect()
            };
            assert_eq!(
                phases(&events),
                phases(&in_order),
                "{name} (fresh ids: {fresh})"
            );
        }
    }
}
