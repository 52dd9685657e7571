//! What the engine knows about each VM of the run: its move, and the facts derived around it.

use super::Core;
use super::slots::Reservation;
use crate::machine::{MoveState, VmMove};
use crate::model::VmInfo;
use crate::spec::Order;
use crate::time::Time;
use std::cmp::Reverse;

/// The order a source's ready VMs start in: the derived order compares the fields top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct OrderKey {
    /// An offline VM while `offline_last` is set: after every live one.
    pub(super) held_back: bool,
    /// Higher priorities first.
    pub(super) priority: Reverse<i32>,
    /// The run's [`Order`] (see [`size_key`]).
    pub(super) size: u64,
    /// The VM's index: ties go in the order VMs were listed.
    pub(super) vm: usize,
}

impl OrderKey {
    fn new(priority: i32, size: u64, vm: usize) -> Self {
        OrderKey {
            held_back: false,
            priority: Reverse(priority),
            size,
            vm,
        }
    }
}

/// Where the hosts last showed a VM: what each host said, by host index, in host order. A VM
/// is on one host, on two while it moves: a short vector, not a map (a `BTreeMap` holding one
/// entry takes a node with room for eleven, about 1.5 KB per VM: 150 MB at 100,000 VMs).
#[derive(Debug, Default)]
pub(super) struct Seen(Vec<(usize, VmInfo)>);

impl Seen {
    /// What host `h` said.
    pub(super) fn get(&self, h: &usize) -> Option<&VmInfo> {
        self.0.iter().find(|(k, _)| k == h).map(|(_, v)| v)
    }

    /// Host `h` says `v`.
    pub(super) fn insert(&mut self, h: usize, v: VmInfo) {
        match self.0.binary_search_by_key(&h, |(k, _)| *k) {
            Ok(i) => self.0[i].1 = v,
            Err(i) => {
                // Room for this one only (a vector's first push makes room for four).
                self.0.reserve_exact(1);
                self.0.insert(i, (h, v));
            }
        }
    }

    /// Host `h` no longer shows it.
    pub(super) fn remove(&mut self, h: &usize) {
        self.0.retain(|(k, _)| k != h);
    }

    /// Each host that shows it and what it said, in host order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&usize, &VmInfo)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'a> IntoIterator for &'a Seen {
    type Item = (&'a usize, &'a VmInfo);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (usize, VmInfo)>,
        fn(&'a (usize, VmInfo)) -> (&'a usize, &'a VmInfo),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// One VM of the run: its move (driven by [`crate::machine::step`]) and the engine's own facts
/// about it, indexed by host index where a host is involved.
///
/// Laid out in the order written (`repr(C)`), the fields a host's listing reads of each VM it
/// shows first (`Core::note_listing`, `Core::settled_ready`), and then [`VmMove`], whose own
/// such fields come first too: a host lists every VM of it each `poll_interval`, and at 100,000
/// VMs those reads, spread over a 1 KB entry, were a good share of the run's cache misses.
#[derive(Debug)]
#[repr(C)]
pub(super) struct VmEntry {
    /// When a locate answer last placed it: host listings asked before this are older news.
    pub(super) observed_at: Time,
    /// Host index of its source.
    pub(super) source: usize,
    /// Where the hosts' listings (or a locate answer) last showed it, by host index.
    pub(super) seen: Seen,
    /// Its key in its source's ready set, while it is in it.
    pub(super) ready_key: Option<OrderKey>,
    /// When it was first found gone from its source and seen nowhere, while that lasts.
    pub(super) missing_since: Option<Time>,
    /// The move and its state machine.
    pub(super) vm: VmMove,
    /// The (source, destination) slots its move holds.
    pub(super) slot: Option<(usize, usize)>,
    /// Capacity it holds on its destination.
    pub(super) reservation: Option<Reservation>,
    /// When it last gave its slots back (to tell a stale listing of its migration from a foreign one).
    pub(super) last_release: Option<Time>,
    /// A live move still to do: counted in `Core::live_pending_count` (offline moves wait for these
    /// by default).
    pub(super) live_pending: bool,
    /// Its place in the start order (`held_back` is set when it enters the ready set).
    pub(super) order_key: OrderKey,
    /// The host indexes of its clear pre-flight answers (`preflight.clear`), kept in step with
    /// them by `Core::step` so that the scheduler need not look each id up.
    pub(super) clear_hosts: Vec<usize>,
    /// The host index of the destination its pre-flight check in flight asks, if any.
    pub(super) asking_host: Option<usize>,
}

/// Each VM's wake-up, by index, as the timer queue reads it (`TimerQueue`): its move's own
/// timer, the one record of it.
pub(super) fn vm_timers(vms: &[VmEntry]) -> impl Fn(usize) -> Option<Time> + '_ {
    move |i| vms.get(i).and_then(|e| e.vm.timer)
}

/// Asks the CPU to bring in, ahead of time, what the VM of an upcoming wake-up will read
/// ([`TimerQueue::pop_due`](super::timers::TimerQueue::pop_due) names them): its timer and
/// move state, and, for the wake-up taken next (`next`), its migration's request and handle,
/// which a progress poll clones into its command, and its id, which the answer clones. A
/// prefetch changes no value and no decision; it only lets the memory's answers overlap with
/// the work on the wake-up before. At 100,000 VMs the records of the 5,000 migrations that run
/// at once do not fit in the caches, and each progress poll waited on a miss for the VM's entry,
/// then one each for its request, its handle and its id (docs/BENCHMARKS.md, 2026-12-07). The
/// next wake-up's entry was asked for one wake-up earlier, while it was a child of the top, so
/// reading its state to find the request seldom waits.
pub(super) fn warm(vms: &[VmEntry]) -> impl Fn(usize, bool) + '_ {
    use mem_prefetch::prefetch_read_data;
    move |i, next| {
        let Some(e) = vms.get(i) else { return };
        // Locality 3: into every level of the cache; the reads come within a few microseconds.
        prefetch_read_data::<_, 3>(&e.vm.timer);
        prefetch_read_data::<_, 3>(&e.vm.state);
        if next && let MoveState::Migrating(m) = &e.vm.state {
            prefetch_read_data::<_, 3>(&*m.req);
            // The VM's id is shared with the request: the answer to the poll clones it.
            for text in [&*m.handle.0, e.vm.id.as_str()] {
                if let Some(first) = text.as_bytes().first() {
                    prefetch_read_data::<_, 3>(first);
                }
            }
        }
    }
}

/// The size part of a VM's [`OrderKey`] for `order`.
pub(super) fn size_key(order: Order, memory_bytes: u64, disk_bytes: u64) -> u64 {
    let size = memory_bytes.saturating_add(disk_bytes);
    match order {
        Order::LargestFirst | Order::Packed => u64::MAX - size,
        Order::SmallestFirst => size,
        Order::AsGiven => 0,
    }
}

impl Core {
    /// Adds a VM to the run; returns its index.
    pub(super) fn push_vm(&mut self, vm: VmMove, source: usize) -> usize {
        let idx = self.vms.len();
        if self.vm_index.insert(vm.id.clone(), idx).is_some() {
            // An id given another index (no path adds one twice today): the hosts' listing
            // hints may name the old one, and are only hints (`HostState::listing_hint`).
            for host in &mut self.hosts {
                host.listing_hint.clear();
            }
        }
        self.unfollowed.push(false);
        self.vms.push(VmEntry {
            vm,
            source,
            seen: Seen::default(),
            observed_at: Time::ZERO,
            slot: None,
            reservation: None,
            last_release: None,
            ready_key: None,
            missing_since: None,
            live_pending: false,
            order_key: OrderKey::new(0, 0, idx),
            clear_hosts: Vec::new(),
            asking_host: None,
        });
        idx
    }

    /// Sets a VM's place in the start order: by priority, then `size_key`, then index.
    pub(super) fn set_order(&mut self, idx: usize, priority: i32, size_key: u64) {
        self.vms[idx].order_key = OrderKey::new(priority, size_key, idx);
    }
}

impl Core {
    /// Keeps VM `idx`'s [`VmEntry::clear_hosts`] in step with its clear answers after a
    /// transition: an answer changes at most the destination it was asked of; anything else
    /// that changed them (they are forgotten after a failed attempt) rebuilds them.
    pub(super) fn sync_clear_hosts(&mut self, idx: usize, asking_before: bool) {
        let e = &mut self.vms[idx];
        let memo = &e.vm.preflight;
        match (asking_before, &memo.asking) {
            (false, Some(d)) => {
                e.asking_host = self.host_index.get(d).copied();
                if let Some(h) = e.asking_host {
                    self.hosts[h].checks += 1;
                }
            }
            (true, None) => {
                if let Some(d) = e.asking_host.take() {
                    debug_assert!(self.hosts[d].checks > 0, "a check in flight was counted");
                    self.hosts[d].checks = self.hosts[d].checks.saturating_sub(1);
                    let clear = memo.clear.contains(&self.hosts[d].id);
                    let at = e.clear_hosts.iter().position(|&h| h == d);
                    match (clear, at) {
                        (true, None) => e.clear_hosts.push(d),
                        (false, Some(i)) => {
                            e.clear_hosts.swap_remove(i);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if e.clear_hosts.len() != memo.clear.len() {
            e.clear_hosts = memo
                .clear
                .iter()
                .filter_map(|d| self.host_index.get(d).copied())
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::PreflightMemo;
    use std::mem::{offset_of, size_of};

    /// Where the fields that `Core::note_listing` and `Core::settled_ready` read of every VM a
    /// listing shows end, from the start of its entry.
    fn listing_reads_end() -> usize {
        let vm = offset_of!(VmEntry, vm);
        [
            offset_of!(VmEntry, observed_at) + size_of::<Time>(),
            offset_of!(VmEntry, source) + size_of::<usize>(),
            offset_of!(VmEntry, seen) + size_of::<Seen>(),
            offset_of!(VmEntry, ready_key) + size_of::<Option<OrderKey>>(),
            offset_of!(VmEntry, missing_since) + size_of::<Option<Time>>(),
            vm + offset_of!(VmMove, mode) + 1,
            vm + offset_of!(VmMove, held_since) + size_of::<Option<Time>>(),
            vm + offset_of!(VmMove, timer) + size_of::<Option<Time>>(),
            vm + offset_of!(VmMove, wait) + size_of::<Option<crate::event::WaitReason>>(),
            vm + offset_of!(VmMove, stopped) + size_of::<Option<Box<crate::event::Reason>>>(),
            vm + offset_of!(VmMove, preflight)
                + offset_of!(PreflightMemo, asking)
                + size_of::<Option<crate::model::HostId>>(),
            vm + offset_of!(VmMove, preflight)
                + offset_of!(PreflightMemo, waiting_since)
                + size_of::<Option<Time>>(),
            vm + offset_of!(VmMove, state) + size_of::<crate::machine::MoveState>(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// Where the fields a running migration's watch steps read of its entry (a progress poll
    /// and its answer, a watchdog check: `TimerQueue::pop_due`, `Core::step`,
    /// `machine::migrating`) begin and end, from the start of the entry.
    fn watch_reads() -> (usize, usize) {
        let vm = offset_of!(VmEntry, vm);
        let fields = [
            (
                offset_of!(VmMove, stopped),
                size_of::<Option<Box<crate::event::Reason>>>(),
            ),
            (offset_of!(VmMove, timer), size_of::<Option<Time>>()),
            (
                offset_of!(VmMove, state),
                size_of::<crate::machine::MoveState>(),
            ),
            (
                offset_of!(VmMove, progress),
                size_of::<Option<crate::model::Progress>>(),
            ),
            (offset_of!(VmMove, id), size_of::<crate::model::VmId>()),
        ];
        let start = fields.iter().map(|&(at, _)| vm + at).min().unwrap_or(0);
        let end = fields
            .iter()
            .map(|&(at, len)| vm + at + len)
            .max()
            .unwrap_or(0);
        (start, end)
    }

    /// Each running migration is polled every `progress_interval`; at 100,000 VMs the
    /// migrations polled in turn outgrow a core's cache, and each line of its entry a poll
    /// reads is a miss. Those fields lie side by side, within 256 bytes (they were spread over
    /// 640, with the 160 bytes of `preflight` among them).
    #[test]
    fn a_watch_step_reads_four_lines_worth_of_a_vm_entry() {
        let (start, end) = watch_reads();
        assert!(
            end - start <= 256,
            "the fields a watch step reads span bytes {start} to {end} of the entry"
        );
    }

    /// A host lists every VM of it each poll interval; at 100,000 VMs the reads of each listed
    /// VM's entry, spread over its 1 KB, were a good share of the run's cache misses. They stay
    /// within the first half of the entry (the first 8 of its 16 cache lines).
    #[test]
    fn a_listing_reads_the_first_half_of_a_vm_entry_only() {
        let end = listing_reads_end();
        assert!(
            end <= 512 && end * 2 <= size_of::<VmEntry>(),
            "the fields a listing reads end at byte {end} of a {}-byte entry",
            size_of::<VmEntry>()
        );
    }
}
