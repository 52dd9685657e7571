//! The engine's timer queue: at most one wake-up per key, taken earliest first.
//!
//! Wake-ups due at the same time are taken in key order, so a run's events do not depend on the
//! order timers were set in.

use crate::time::Time;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a wake-up is for. The derived order breaks ties between wake-ups due at the same time:
/// VMs (by index) first, then host refreshes (by index), then the seed scheduler's next pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    /// The VM's own timer ([`VmMove::timer`](crate::machine::VmMove::timer)).
    Vm(usize),
    /// The host's next refresh.
    Host(usize),
    /// The next pass of [`SchedulerPolicy::Seed`](crate::spec::SchedulerPolicy::Seed).
    SeedPass,
}

/// A wake-up as the heap holds it: its time, then its key packed in one word so that an entry
/// takes 16 bytes, not 24 (at 100,000 VMs a pop walks about 17 levels of the heap, and each level
/// further from the top is likely a cache miss: a smaller entry puts more of them in a line).
/// The packing keeps [`TimerKey`]'s order: the kind in the top two bits (VMs, hosts, the seed
/// pass), the index below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Time,
    key: u64,
}

impl Entry {
    const KIND: u32 = 62;
    const INDEX: u64 = (1 << Self::KIND) - 1;

    fn new(at: Time, key: TimerKey) -> Self {
        let (kind, index) = match key {
            TimerKey::Vm(i) => (0, i),
            TimerKey::Host(h) => (1, h),
            TimerKey::SeedPass => (2, 0),
        };
        // An index never reaches 2^62: it indexes a vector in memory.
        debug_assert!(index as u64 <= Self::INDEX, "index {index} does not fit");
        Entry {
            at,
            key: (kind << Self::KIND) | (index as u64 & Self::INDEX),
        }
    }

    fn get(self) -> (Time, TimerKey) {
        // The index was a `usize` when packed.
        let index = (self.key & Self::INDEX) as usize;
        let key = match self.key >> Self::KIND {
            0 => TimerKey::Vm(index),
            1 => TimerKey::Host(index),
            _ => TimerKey::SeedPass,
        };
        (self.at, key)
    }
}

/// Wake-ups by key: setting a key's time again replaces its earlier one.
///
/// A binary heap with lazy deletion: a replaced or cancelled wake-up stays in the heap until it
/// reaches the top, where it is dropped (its key's time differs). Every change leaves a current
/// wake-up on top, so [`TimerQueue::next`] is exact.
///
/// A VM's wake-up is its own timer ([`VmMove::timer`](crate::machine::VmMove::timer)), the one
/// record of it: the queue only orders them, and each call that may look at one is given
/// `vm_due`, which reads a VM's timer by index. The engine sets a VM's timer first, then tells
/// the queue (`schedule`, or `cancel` when it is cleared). Before, the queue kept each VM's time
/// in a table of its own, the same fact twice, and at 100,000 VMs reading that table when a
/// wake-up reached the top was a cache miss per progress poll. Hosts' and the seed pass's times
/// are kept here, each in a vector indexed like the engine's tables.
#[derive(Debug, Clone, Default)]
pub(super) struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
    /// When each host's wake-up is due, by host index.
    hosts: Vec<Option<Time>>,
    /// When the seed scheduler's next pass is due.
    seed_pass: Option<Time>,
}

impl TimerQueue {
    /// Wakes `key` at `at`, instead of any time set for it before. For a VM, its timer must
    /// already say `at` (`vm_due`).
    pub(super) fn schedule(
        &mut self,
        key: TimerKey,
        at: Time,
        vm_due: impl Fn(usize) -> Option<Time>,
    ) {
        match self.own_slot(key) {
            Some(slot) => *slot = Some(at),
            None => debug_assert!(
                matches!(key, TimerKey::Vm(i) if vm_due(i) == Some(at)),
                "set the VM's timer first"
            ),
        }
        self.heap.push(Reverse(Entry::new(at, key)));
        self.drop_stale(&vm_due);
    }

    /// Forgets the wake-up of `key`, if it had one (for a VM, its timer is already cleared).
    pub(super) fn cancel(&mut self, key: TimerKey, vm_due: impl Fn(usize) -> Option<Time>) {
        match self.own_slot(key) {
            Some(slot) => *slot = None,
            None => debug_assert!(
                matches!(key, TimerKey::Vm(i) if vm_due(i).is_none()),
                "clear the VM's timer first"
            ),
        }
        self.drop_stale(&vm_due);
    }

    /// When host or seed-pass `key` is due, if it is set (a VM's is its timer).
    pub(super) fn due_at(&self, key: TimerKey) -> Option<Time> {
        match key {
            TimerKey::Vm(_) => None,
            TimerKey::Host(h) => self.hosts.get(h).copied().flatten(),
            TimerKey::SeedPass => self.seed_pass,
        }
    }

    /// The earliest wake-up, without taking it.
    pub(super) fn next(&self) -> Option<(Time, TimerKey)> {
        self.heap.peek().map(|&Reverse(top)| top.get())
    }

    /// Takes the earliest wake-up if it is due at or before `now`. A VM's timer still says it
    /// when it is taken (the engine clears it next): copies of the same wake-up left by a key
    /// set away and back again are taken with it, so that it wakes once.
    ///
    /// Once it is taken, `ahead` is told the VMs of the wake-ups that come next, so that their
    /// records can be asked of memory while this one is worked on ([`warm`](super::vm::warm)):
    /// the new top's (the next taken, `true`), then its two children's (`false`; one of them is
    /// taken after it, unless a wake-up set meanwhile comes first).
    pub(super) fn pop_due(
        &mut self,
        now: Time,
        vm_due: impl Fn(usize) -> Option<Time>,
        ahead: impl Fn(usize, bool),
    ) -> Option<(Time, TimerKey)> {
        let top = self.next().filter(|&(at, _)| at <= now)?;
        while self.next() == Some(top) {
            self.heap.pop();
        }
        if let Some(slot) = self.own_slot(top.1) {
            *slot = None;
        }
        self.drop_stale(&vm_due);
        // A binary heap keeps its top at 0 and that top's children at 1 and 2.
        for (n, &Reverse(entry)) in self.heap.as_slice().iter().take(3).enumerate() {
            if let (_, TimerKey::Vm(i)) = entry.get() {
                ahead(i, n == 0);
            }
        }
        Some(top)
    }

    /// Where host or seed-pass `key`'s time is kept (the vector grows on first use of an
    /// index); `None` for a VM, whose time is its timer.
    fn own_slot(&mut self, key: TimerKey) -> Option<&mut Option<Time>> {
        match key {
            TimerKey::Host(h) => {
                if self.hosts.len() <= h {
                    self.hosts.resize(h + 1, None);
                }
                self.hosts.get_mut(h)
            }
            TimerKey::SeedPass => Some(&mut self.seed_pass),
            TimerKey::Vm(_) => None,
        }
    }

    /// Pops replaced and cancelled wake-ups off the top.
    fn drop_stale(&mut self, vm_due: &impl Fn(usize) -> Option<Time>) {
        while let Some((at, key)) = self.next() {
            let due = match key {
                TimerKey::Vm(i) => vm_due(i),
                key => self.due_at(key),
            };
            if due == Some(at) {
                break;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time(ms)
    }

    /// The queue as the engine uses it: a VM's timer is set or cleared first, then the queue
    /// is told; a VM's timer is cleared once its wake-up is taken.
    #[derive(Default)]
    struct Engine {
        q: TimerQueue,
        /// Each VM's timer, by index.
        vms: Vec<Option<Time>>,
        /// What the last `pop_due` told its `ahead`, in order.
        ahead: Vec<(usize, bool)>,
    }

    impl Engine {
        fn set_vm(&mut self, i: usize, at: Option<Time>) {
            if self.vms.len() <= i {
                self.vms.resize(i + 1, None);
            }
            self.vms[i] = at;
        }

        fn schedule(&mut self, key: TimerKey, at: Time) {
            if let TimerKey::Vm(i) = key {
                self.set_vm(i, Some(at));
            }
            let vms = &self.vms;
            self.q.schedule(key, at, |i| vms.get(i).copied().flatten());
        }

        fn cancel(&mut self, key: TimerKey) -> Option<Time> {
            let was = self.due_at(key);
            if let TimerKey::Vm(i) = key {
                self.set_vm(i, None);
            }
            let vms = &self.vms;
            self.q.cancel(key, |i| vms.get(i).copied().flatten());
            was
        }

        fn due_at(&self, key: TimerKey) -> Option<Time> {
            match key {
                TimerKey::Vm(i) => self.vms.get(i).copied().flatten(),
                key => self.q.due_at(key),
            }
        }

        fn next(&self) -> Option<(Time, TimerKey)> {
            self.q.next()
        }

        fn pop_due(&mut self, now: Time) -> Option<(Time, TimerKey)> {
            let vms = &self.vms;
            let ahead = std::cell::RefCell::new(Vec::new());
            let taken = self.q.pop_due(
                now,
                |i| vms.get(i).copied().flatten(),
                |i, next| ahead.borrow_mut().push((i, next)),
            );
            self.ahead = ahead.into_inner();
            if let Some((_, TimerKey::Vm(i))) = taken {
                self.set_vm(i, None);
            }
            taken
        }
    }

    /// A packed entry orders as its time and key do, and unpacks to them.
    #[test]
    fn a_packed_wake_up_keeps_its_key_and_order() {
        let big = usize::MAX >> 2; // the largest index that fits
        let keys = [
            TimerKey::Vm(0),
            TimerKey::Vm(1),
            TimerKey::Vm(big),
            TimerKey::Host(0),
            TimerKey::Host(big),
            TimerKey::SeedPass,
        ];
        for at in [t(0), t(5)] {
            for (i, &a) in keys.iter().enumerate() {
                assert_eq!(Entry::new(at, a).get(), (at, a));
                for &b in &keys[i + 1..] {
                    assert!(Entry::new(at, a) < Entry::new(at, b), "{a:?} before {b:?}");
                    assert!(Entry::new(t(9), a) > Entry::new(at, b), "time first");
                }
            }
        }
    }

    #[test]
    fn wake_ups_are_taken_earliest_first_and_only_when_due() {
        let mut q = Engine::default();
        q.schedule(TimerKey::Host(0), t(30));
        q.schedule(TimerKey::Vm(5), t(10));
        q.schedule(TimerKey::SeedPass, t(20));
        assert_eq!(q.next(), Some((t(10), TimerKey::Vm(5))));
        assert_eq!(q.pop_due(t(9)), None, "nothing is due before 10");
        assert_eq!(q.pop_due(t(25)), Some((t(10), TimerKey::Vm(5))));
        assert_eq!(q.pop_due(t(25)), Some((t(20), TimerKey::SeedPass)));
        assert_eq!(q.pop_due(t(25)), None);
        assert_eq!(q.next(), Some((t(30), TimerKey::Host(0))));
    }

    /// Each `pop_due` names, for `warm`, the VM of the wake-up taken next (flagged) and the VM
    /// of the one taken after it, even with replaced wake-ups left in the heap; a host's is not
    /// named.
    #[test]
    fn taking_a_wake_up_names_the_vms_of_the_next_two_the_next_one_flagged() {
        let mut q = Engine::default();
        for (i, at) in [70, 20, 50, 10, 90, 30, 60, 80, 40].into_iter().enumerate() {
            q.schedule(TimerKey::Vm(i), t(at));
        }
        q.schedule(TimerKey::Host(0), t(55));
        // Replaced: its wake-ups at 5 and 45 stay in the heap until they reach its top.
        q.schedule(TimerKey::Vm(9), t(5));
        q.schedule(TimerKey::Vm(9), t(45));
        q.schedule(TimerKey::Vm(9), t(65));
        let mut taken = Vec::new();
        let mut told = Vec::new();
        while let Some((_, key)) = q.pop_due(t(100)) {
            taken.push(key);
            told.push(q.ahead.clone());
        }
        assert_eq!(taken.len(), 11, "every wake-up once: {taken:?}");
        for (k, told) in told.iter().enumerate() {
            let flagged: Vec<usize> = told.iter().filter(|a| a.1).map(|a| a.0).collect();
            match taken.get(k + 1) {
                Some(&TimerKey::Vm(next)) => assert_eq!(flagged, [next], "after {k}: {told:?}"),
                _ => assert!(flagged.is_empty(), "after {k}: {told:?}"),
            }
            if let Some(&TimerKey::Vm(after)) = taken.get(k + 2) {
                assert!(
                    told.iter().any(|&(i, _)| i == after),
                    "after {k}, {after} comes second: {told:?}"
                );
            }
            assert!(told.len() <= 3, "{told:?}");
        }
    }

    #[test]
    fn ties_are_broken_by_key_vms_then_hosts_then_the_seed_pass() {
        let mut q = Engine::default();
        q.schedule(TimerKey::SeedPass, t(5));
        q.schedule(TimerKey::Host(0), t(5));
        q.schedule(TimerKey::Vm(2), t(5));
        q.schedule(TimerKey::Vm(1), t(5));
        let order: Vec<_> = std::iter::from_fn(|| q.pop_due(t(5)))
            .map(|(_, k)| k)
            .collect();
        assert_eq!(
            order,
            [
                TimerKey::Vm(1),
                TimerKey::Vm(2),
                TimerKey::Host(0),
                TimerKey::SeedPass
            ]
        );
    }

    #[test]
    fn scheduling_a_key_again_replaces_its_time() {
        let mut q = Engine::default();
        q.schedule(TimerKey::Vm(0), t(10));
        q.schedule(TimerKey::Vm(0), t(40));
        assert_eq!(q.due_at(TimerKey::Vm(0)), Some(t(40)));
        assert_eq!(q.pop_due(t(20)), None, "the wake-up at 10 was replaced");
        assert_eq!(q.pop_due(t(40)), Some((t(40), TimerKey::Vm(0))));
        assert_eq!(q.due_at(TimerKey::Vm(0)), None, "a taken wake-up is gone");
        assert_eq!(q.next(), None);
    }

    #[test]
    fn a_cancelled_wake_up_is_never_taken() {
        let mut q = Engine::default();
        q.schedule(TimerKey::Host(3), t(10));
        q.schedule(TimerKey::Vm(1), t(20));
        assert_eq!(q.cancel(TimerKey::Host(3)), Some(t(10)));
        assert_eq!(q.cancel(TimerKey::Host(3)), None, "already gone");
        assert_eq!(q.next(), Some((t(20), TimerKey::Vm(1))));
        assert_eq!(q.pop_due(t(100)), Some((t(20), TimerKey::Vm(1))));
        assert_eq!(q.pop_due(t(100)), None);
    }

    #[test]
    fn a_key_set_back_to_an_earlier_time_wakes_once() {
        let mut q = Engine::default();
        q.schedule(TimerKey::Vm(0), t(10));
        q.schedule(TimerKey::Vm(0), t(20));
        q.schedule(TimerKey::Vm(0), t(10));
        q.schedule(TimerKey::Vm(0), t(10));
        assert_eq!(q.pop_due(t(100)), Some((t(10), TimerKey::Vm(0))));
        assert_eq!(q.pop_due(t(100)), None, "one wake-up per key");
        assert_eq!(q.next(), None);
    }

    /// A VM's wake-up is its timer: one changed by a step is not taken at its old time, even
    /// when the queue hears of the change only after another key's change (a step that also
    /// schedules a host refresh), and one set back to a time it had before wakes once.
    #[test]
    fn a_vms_wake_up_follows_its_timer() {
        let mut q = Engine::default();
        q.schedule(TimerKey::Vm(0), t(10));
        // The step moves the VM's timer to 50, then schedules a host refresh before it tells
        // the queue.
        q.set_vm(0, Some(t(50)));
        q.schedule(TimerKey::Host(1), t(30));
        assert_eq!(q.next(), Some((t(30), TimerKey::Host(1))), "10 is stale");
        q.schedule(TimerKey::Vm(0), t(50));
        assert_eq!(q.pop_due(t(40)), Some((t(30), TimerKey::Host(1))));
        assert_eq!(q.pop_due(t(40)), None);
        // Set away and back: the two entries at 50 wake it once.
        q.schedule(TimerKey::Vm(0), t(70));
        q.schedule(TimerKey::Vm(0), t(50));
        assert_eq!(q.pop_due(t(100)), Some((t(50), TimerKey::Vm(0))));
        assert_eq!(q.pop_due(t(100)), None, "one wake-up");
        assert_eq!(q.next(), None);
    }
}
