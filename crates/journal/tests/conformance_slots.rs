//! The journal's conformance suite: the cross-process slot ledger (schema 9). Reservations of
//! every live run count, foreign migrations the hosts show count once, reservations die with
//! the lease, and several connections reserving the last slot at once get exactly as many
//! winners as there are slots.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use vmove_core::{HostId, HostView, Selection, VmId};
use vmove_journal::{HostCount, JournalError, RunEnd, SlotGrant};

/// A host as the engine sees it while starting one move there: `ours` counts that start.
fn view(host: &str, limit: u32) -> HostView {
    HostView {
        id: HostId::new(host),
        limit,
        ours: 1,
        foreign: 0,
        foreign_vms: vec![],
        reachable: true,
    }
}

fn shown(host: &str, limit: u32, foreign: u32, named: &[&str]) -> HostView {
    HostView {
        foreign,
        foreign_vms: named.iter().map(|v| VmId::new(*v)).collect(),
        ..view(host, limit)
    }
}

fn names(n: &str) -> Selection {
    Selection::Names(vec![n.to_owned()])
}

fn vm(n: &str) -> VmId {
    VmId::new(n)
}

fn full_on(grant: &SlotGrant) -> Vec<(String, u32, bool)> {
    match grant {
        SlotGrant::Reserved => panic!("expected Full, got Reserved"),
        SlotGrant::Full(counts) => counts
            .iter()
            .map(|c: &HostCount| (c.host.to_string(), c.others, c.full))
            .collect(),
    }
}

fn every_live_runs_reservations_count_and_a_full_host_refuses_both() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut p1 = open_as(&path, &clock, other(1));
    let mut p2 = open_as(&path, &clock, other(2));
    p1.create_run(&new_run("r1", names("web1"))).unwrap();
    p2.create_run(&new_run("r2", names("web2"))).unwrap();
    assert_eq!(
        p1.reserve_slots("r1", &vm("u1"), &view("a", 1), &view("b", 2))
            .unwrap(),
        SlotGrant::Reserved
    );
    // a holds 1 of 1: refused, nothing reserved (b had room).
    let g = p2
        .reserve_slots("r2", &vm("u2"), &view("a", 1), &view("b", 2))
        .unwrap();
    assert_eq!(
        full_on(&g),
        vec![("a".into(), 1, true), ("b".into(), 1, false)]
    );
    let held: Vec<(String, String)> = p2
        .slot_reservations()
        .unwrap()
        .into_iter()
        .map(|r| (r.run, r.host.to_string()))
        .collect();
    assert_eq!(
        held,
        vec![("r1".into(), "a".into()), ("r1".into(), "b".into())]
    );
    // Released: the other run gets them.
    p1.release_slots("r1", &vm("u1")).unwrap();
    assert_eq!(
        p2.reserve_slots("r2", &vm("u2"), &view("a", 1), &view("b", 2))
            .unwrap(),
        SlotGrant::Reserved
    );
    // A run's own reservations count against it too.
    let mut again = view("a", 1);
    again.ours = 0;
    let g = p2
        .reserve_slots("r2", &vm("u3"), &again, &view("c", 5))
        .unwrap();
    assert_eq!(full_on(&g)[0], ("a".into(), 0, true));
}

fn a_migration_the_hosts_show_is_not_counted_twice() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut p1 = open_as(&path, &clock, other(1));
    let mut p2 = open_as(&path, &clock, other(2));
    p1.create_run(&new_run("r1", names("web1"))).unwrap();
    p2.create_run(&new_run("r2", names("web2"))).unwrap();
    p1.reserve_slots("r1", &vm("u1"), &view("a", 2), &view("b", 2))
        .unwrap();
    // r1's migration runs and both hosts show it (named on a, only counted on b): one slot.
    assert_eq!(
        p2.reserve_slots(
            "r2",
            &vm("u2"),
            &shown("a", 2, 1, &["u1"]),
            &shown("b", 2, 1, &[])
        )
        .unwrap(),
        SlotGrant::Reserved
    );
    p2.release_slots("r2", &vm("u2")).unwrap();
    // Another migration nobody reserved (not vmove's) shows on a too: a is full.
    let g = p2
        .reserve_slots(
            "r2",
            &vm("u2"),
            &shown("a", 2, 2, &["u1", "x"]),
            &shown("b", 2, 1, &[]),
        )
        .unwrap();
    assert_eq!(
        full_on(&g),
        vec![("a".into(), 2, true), ("b".into(), 1, false)]
    );
    // Counted, not named, beyond the reservations: the same.
    let g = p2
        .reserve_slots(
            "r2",
            &vm("u2"),
            &shown("a", 2, 1, &[]),
            &shown("b", 2, 2, &[]),
        )
        .unwrap();
    assert_eq!(
        full_on(&g),
        vec![("a".into(), 1, false), ("b".into(), 2, true)]
    );
}

fn reservations_die_with_the_lease() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut p1 = open_as(&path, &clock, other(1));
    let mut p2 = open_as(&path, &clock, other(2));
    p1.create_run(&new_run("r1", names("web1"))).unwrap();
    p2.create_run(&new_run("r2", names("web2"))).unwrap();
    let (a, b) = (view("a", 1), view("b", 1));
    p1.reserve_slots("r1", &vm("u1"), &a, &b).unwrap();
    assert!(matches!(
        p2.reserve_slots("r2", &vm("u2"), &a, &b).unwrap(),
        SlotGrant::Full(_)
    ));
    // r1's lease expires (its holder stopped refreshing): its reservations no longer count.
    clock.advance(Duration::from_secs(20));
    p2.refresh_lease("r2").unwrap();
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        p2.reserve_slots("r2", &vm("u2"), &a, &b).unwrap(),
        SlotGrant::Reserved
    );
    // ...and were deleted by that transaction.
    let runs: Vec<String> = p2
        .slot_reservations()
        .unwrap()
        .into_iter()
        .map(|r| r.run)
        .collect();
    assert_eq!(runs, vec!["r2", "r2"]);
    // Taken over by another process: the old holder's reservations are not the new one's.
    let mut p3 = open_as(&path, &clock, other(3));
    p3.acquire("r1").unwrap();
    assert!(matches!(
        p3.reserve_slots("r1", &vm("u1"), &a, &b).unwrap(),
        SlotGrant::Full(_)
    ));
    // The lease given up: gone at once.
    p2.release("r2").unwrap();
    assert_eq!(p3.slot_reservations().unwrap(), vec![]);
    assert_eq!(
        p3.reserve_slots("r1", &vm("u1"), &a, &b).unwrap(),
        SlotGrant::Reserved
    );
    // The run finished: gone.
    p3.finish_run("r1", RunEnd::Finished).unwrap();
    assert_eq!(p3.slot_reservations().unwrap(), vec![]);
    p2.acquire("r2").unwrap();
    assert_eq!(
        p2.reserve_slots("r2", &vm("u2"), &a, &b).unwrap(),
        SlotGrant::Reserved
    );
}

fn bad_slot_requests_are_refused_and_change_nothing() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut p1 = open_as(&path, &clock, other(1));
    let mut p2 = open_as(&path, &clock, other(2));
    p1.create_run(&new_run("r1", names("web1"))).unwrap();
    let err = p1
        .reserve_slots("r1", &vm("u1"), &view("a", 2), &view("a", 2))
        .unwrap_err();
    assert!(
        matches!(err, JournalError::BadSlotRequest { .. })
            && err.to_string().contains("same host `a`"),
        "{err}"
    );
    // Not this handle's lease, an unknown run: refused.
    let err = p2
        .reserve_slots("r1", &vm("u1"), &view("a", 2), &view("b", 2))
        .unwrap_err();
    assert!(matches!(err, JournalError::LeaseNotHeld { .. }), "{err}");
    let err = p1
        .reserve_slots("nope", &vm("u1"), &view("a", 2), &view("b", 2))
        .unwrap_err();
    assert!(matches!(err, JournalError::UnknownRun(_)), "{err}");
    // An expired lease reserves nothing until refreshed.
    clock.advance(Duration::from_secs(31));
    let err = p1
        .reserve_slots("r1", &vm("u1"), &view("a", 2), &view("b", 2))
        .unwrap_err();
    assert!(matches!(err, JournalError::LeaseExpired { .. }), "{err}");
    p1.refresh_lease("r1").unwrap();
    assert_eq!(p1.slot_reservations().unwrap(), vec![]);
    // Releasing what is not held is no error.
    p1.release_slots("r1", &vm("u9")).unwrap();
    p2.release_slots("r1", &vm("u1")).unwrap();
}

const RACERS: u32 = 4;
const SLOTS: u32 = 2;

/// `RACERS` processes (a connection and a lease each), each with its own run, reserve a move
/// a -> b at the same moment; a has `SLOTS` slots. Returns how many got them.
fn race(racy: bool) -> u32 {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut handles = Vec::new();
    for i in 0..RACERS {
        let mut j = open_as(&path, &clock, other(10 + i));
        let run = format!("r{i}");
        j.create_run(&new_run(&run, names(&format!("web{i}"))))
            .unwrap();
        handles.push((j, run));
    }
    let start = Arc::new(Barrier::new(RACERS as usize));
    let threads: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(i, (mut j, run))| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let (a, b) = (view("a", SLOTS), view("b", 10));
                let v = vm(&format!("u{i}"));
                let grant = if racy {
                    // Every racer has counted before any writes.
                    let between = || {
                        start.wait();
                    };
                    j.reserve_slots_without_transaction(&run, &v, &a, &b, &between)
                } else {
                    start.wait();
                    j.reserve_slots(&run, &v, &a, &b)
                };
                grant.unwrap() == SlotGrant::Reserved
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| u32::from(t.join().unwrap()))
        .sum()
}

fn connections_racing_for_the_last_slots_win_exactly_as_many_as_there_are() {
    assert_eq!(race(false), SLOTS);
}

/// The race above can fail: without the transaction (and its lock) every racer counts the
/// same free slots and all of them win.
fn without_the_transaction_the_race_is_lost() {
    assert_eq!(race(true), RACERS);
}

on_both_backends!(
    every_live_runs_reservations_count_and_a_full_host_refuses_both,
    a_migration_the_hosts_show_is_not_counted_twice,
    reservations_die_with_the_lease,
    bad_slot_requests_are_refused_and_change_nothing,
    connections_racing_for_the_last_slots_win_exactly_as_many_as_there_are,
    without_the_transaction_the_race_is_lost,
);
