//! The slot ledger port: a start is reserved before the driver sees it, a refusal reaches the
//! core as `Input::StartDeferred` (the VM moves later, the attempt does not count), every
//! reservation is released when the engine gives the slot back, and a ledger that cannot be
//! asked is an outage of the journal: starts pause (nothing counted), releases are kept and
//! given again, and the run finishes once it answers again (or gives up after `journal_wait`).
#![allow(clippy::unwrap_used)]

mod clocked;

use async_trait::async_trait;
use clocked::*;
use std::sync::{Arc, Mutex};
use vmove_core::{HostView, MigrationRequest, Phase, VmId};
use vmove_runtime::{Control, Ledger, LedgerAnswer, Runtime, RuntimeOptions};

#[derive(Debug, Default)]
struct Seen {
    asked: Vec<(VmId, u32)>,
    granted: Vec<VmId>,
    released: Vec<VmId>,
}

/// Refuses the first `refuse` reservations, grants the rest (or fails every one).
#[derive(Debug)]
struct FakeLedger {
    refuse: Mutex<u32>,
    /// Reservations that fail before the ledger answers again (`u32::MAX`: never answers).
    broken: Mutex<u32>,
    /// Releases that fail before the ledger takes them again.
    broken_releases: Mutex<u32>,
    seen: Arc<Mutex<Seen>>,
}

impl FakeLedger {
    fn new(refuse: u32, broken: u32, broken_releases: u32, seen: &Arc<Mutex<Seen>>) -> Arc<Self> {
        Arc::new(FakeLedger {
            refuse: Mutex::new(refuse),
            broken: Mutex::new(broken),
            broken_releases: Mutex::new(broken_releases),
            seen: Arc::clone(seen),
        })
    }
}

/// Counts one call against a budget of failures: whether this call fails.
fn fails(budget: &Mutex<u32>) -> bool {
    let mut left = budget.lock().unwrap();
    match *left {
        0 => false,
        u32::MAX => true,
        _ => {
            *left -= 1;
            true
        }
    }
}

#[async_trait]
impl Ledger for FakeLedger {
    async fn reserve(
        &self,
        request: &MigrationRequest,
        source: &HostView,
        destination: &HostView,
    ) -> Result<LedgerAnswer, String> {
        assert_eq!(
            (&source.id, &destination.id),
            (&request.source, &request.destination)
        );
        let mut seen = self.seen.lock().unwrap();
        seen.asked.push((request.vm.clone(), request.attempt));
        if fails(&self.broken) {
            return Err("the database is down".into());
        }
        let mut refuse = self.refuse.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return Ok(LedgerAnswer::Full(vec![(request.destination.clone(), 0)]));
        }
        seen.granted.push(request.vm.clone());
        Ok(LedgerAnswer::Granted)
    }

    async fn release(&self, vm: &VmId) -> Result<(), String> {
        if fails(&self.broken_releases) {
            return Err("the database is down".into());
        }
        self.seen.lock().unwrap().released.push(vm.clone());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn refused_starts_wait_and_move_later_and_every_reservation_is_released() {
    let (driver, core, hosts) = demo();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ledger = FakeLedger::new(3, 0, 0, &seen);
    let (_c, rx) = Control::new();
    let result = Runtime::new(RuntimeOptions::default())
        .with_ledger(ledger)
        .run(core, drivers_for(Arc::clone(&driver), &hosts), vec![], rx)
        .await;
    assert_eq!(result.error(), None);
    // The demo's ending, as without a ledger: the refusals cost no VM an attempt.
    assert_eq!(result.snapshot.counts(), (11, 1, 0));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.asked.len(), seen.granted.len() + 3);
    // Only granted starts reached the hosts (web-02's first start, granted, is refused by
    // the simulated host: no migration).
    let started = driver.cluster().lock().unwrap().migrations_started();
    assert_eq!(started + 1, seen.granted.len());
    // Every VM whose slots were granted gave them back (the engine left the slot's phase).
    for vm in &seen.granted {
        assert!(seen.released.contains(vm), "{vm} not released");
    }
    let web2 = result
        .snapshot
        .vms
        .iter()
        .find(|v| v.name == "web-02")
        .unwrap();
    assert_eq!(web2.phase, Phase::Moved);
}

#[tokio::test(start_paused = true)]
async fn a_ledger_away_for_a_while_pauses_starts_keeps_releases_and_the_run_finishes() {
    let (driver, core, hosts) = demo();
    let seen = Arc::new(Mutex::new(Seen::default()));
    // The first 4 reservations and the first 3 releases meet a database that is down.
    let ledger = FakeLedger::new(0, 4, 3, &seen);
    let (_c, rx) = Control::new();
    let result = Runtime::new(RuntimeOptions::default())
        .with_ledger(ledger)
        .run(core, drivers_for(Arc::clone(&driver), &hosts), vec![], rx)
        .await;
    assert_eq!(result.error(), None, "the outage ended the run");
    // The demo's ending, as without a ledger: the failed reservations cost no VM an attempt.
    assert_eq!(result.snapshot.counts(), (11, 1, 0));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.asked.len(), seen.granted.len() + 4);
    let started = driver.cluster().lock().unwrap().migrations_started();
    assert_eq!(
        started + 1,
        seen.granted.len(),
        "only granted starts reached the hosts"
    );
    // Every granted VM's slots were given back, the ones refused at first included.
    for vm in &seen.granted {
        assert!(seen.released.contains(vm), "{vm} not released");
    }
}

#[tokio::test(start_paused = true)]
async fn a_ledger_that_never_answers_starts_nothing_and_the_run_gives_up_after_journal_wait() {
    let (driver, core, hosts) = demo();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ledger = FakeLedger::new(0, u32::MAX, 0, &seen);
    let (_c, rx) = Control::new();
    let result = Runtime::new(RuntimeOptions::default())
        .with_ledger(ledger)
        .run(core, drivers_for(Arc::clone(&driver), &hosts), vec![], rx)
        .await;
    let err = result.error().unwrap();
    assert!(err.contains("slot ledger: the database is down"), "{err}");
    assert!(err.contains("journal_wait"), "{err}");
    assert_eq!(driver.cluster().lock().unwrap().migrations_started(), 0);
    assert!(!seen.lock().unwrap().asked.is_empty());
    assert_eq!(result.snapshot.counts().0, 0, "nothing moved");
}
