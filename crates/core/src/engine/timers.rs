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

/// Wake-ups by key: setting a key's time again replaces its earlier one.
///
/// A binary heap with lazy deletion: a replaced or cancelled wake-up stays in the heap until it
/// reaches the top, where it is dropped (its key's time differs). Every change leaves a current
/// wake-up on top, so [`TimerQueue::next`] is exact. Each key's time is in a vector indexed like
/// the engine's tables, so telling a current entry from a stale one costs no lookup.
#[derive(Debug, Clone, Default)]
pub(super) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Time, TimerKey)>>,
    /// When each VM's wake-up is due, by VM index.
    vms: Vec<Option<Time>>,
    /// When each host's wake-up is due, by host index.
    hosts: Vec<Option<Time>>,
    /// When the seed scheduler's next pass is due.
    seed_pass: Option<Time>,
}

impl TimerQueue {
    /// Wakes `key` at `at`, instead of any time set for it before.
    pub(super) fn schedule(&mut self, key: TimerKey, at: Time) {
        *self.slot(key) = Some(at);
        self.heap.push(Reverse((at, key)));
        self.drop_stale();
    }

    /// Forgets the wake-up of `key`, if it had one; returns when it was due.
    pub(super) fn cancel(&mut self, key: TimerKey) -> Option<Time> {
        let at = self.slot(key).take();
        self.drop_stale();
        at
    }

    /// When `key` is due, if it is set.
    pub(super) fn due_at(&self, key: TimerKey) -> Option<Time> {
        match key {
            TimerKey::Vm(i) => self.vms.get(i).copied().flatten(),
            TimerKey::Host(h) => self.hosts.get(h).copied().flatten(),
            TimerKey::SeedPass => self.seed_pass,
        }
    }

    /// The earliest wake-up, without taking it.
    pub(super) fn next(&self) -> Option<(Time, TimerKey)> {
        self.heap.peek().map(|&Reverse(top)| top)
    }

    /// Takes the earliest wake-up if it is due at or before `now`.
    pub(super) fn pop_due(&mut self, now: Time) -> Option<(Time, TimerKey)> {
        let (at, key) = self.next().filter(|&(at, _)| at <= now)?;
        self.heap.pop();
        *self.slot(key) = None;
        self.drop_stale();
        Some((at, key))
    }

    /// Where `key`'s time is kept (the vectors grow on first use of an index).
    fn slot(&mut self, key: TimerKey) -> &mut Option<Time> {
        let (table, i) = match key {
            TimerKey::Vm(i) => (&mut self.vms, i),
            TimerKey::Host(h) => (&mut self.hosts, h),
            TimerKey::SeedPass => return &mut self.seed_pass,
        };
        if table.len() <= i {
            table.resize(i + 1, None);
        }
        &mut table[i]
    }

    /// Pops replaced and cancelled wake-ups off the top.
    fn drop_stale(&mut self) {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if self.due_at(key) == Some(at) {
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

    #[test]
    fn wake_ups_are_taken_earliest_first_and_only_when_due() {
        let mut q = TimerQueue::default();
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

    #[test]
    fn ties_are_broken_by_key_vms_then_hosts_then_the_seed_pass() {
        let mut q = TimerQueue::default();
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
        let mut q = TimerQueue::default();
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
        let mut q = TimerQueue::default();
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
        let mut q = TimerQueue::default();
        q.schedule(TimerKey::Vm(0), t(10));
        q.schedule(TimerKey::Vm(0), t(20));
        q.schedule(TimerKey::Vm(0), t(10));
        q.schedule(TimerKey::Vm(0), t(10));
        assert_eq!(q.pop_due(t(100)), Some((t(10), TimerKey::Vm(0))));
        assert_eq!(q.pop_due(t(100)), None, "one wake-up per key");
        assert_eq!(q.next(), None);
    }
}
