//! The event queue: the next time anything changes, moving the clock there, and the wake-ups
//! of migrations (stale ones dropped by epoch).

use super::spec::{MS_PER_SEC, MigrationEnd};
use super::state::{SimCluster, Stage, Wake};
use std::cmp::Reverse;
use vmove_core::time::Time;

impl SimCluster {
    /// When something next happens by itself (a migration stage ends, hangs or fails; a backup,
    /// host outage or foreign migration starts or ends). `None`: nothing will.
    pub fn next_event_time(&self) -> Option<Time> {
        let mig = self.wakes.peek().map(|Reverse(w)| w.at);
        let world = self.world.get(self.world_cursor).map(|(t, _)| *t);
        let edge = self.edges.get(self.edge_cursor).copied();
        [mig, world, edge].into_iter().flatten().min()
    }

    /// Moves the clock to `t` (never backwards), carrying out everything due on the way, and
    /// returns the migrations that ended, in the order they ended.
    pub fn advance_to(&mut self, t: Time) -> Vec<MigrationEnd> {
        let mut ended = Vec::new();
        // What is due now is carried out too: a stage of no bytes (the disk copy of a VM with
        // no disks) ends the instant it begins, and a window may open at the start. Before,
        // such a wake was left at `now` while `next_event_time` kept answering `now`, and a
        // run never got past that instant (a livelock).
        if t < self.now {
            return ended;
        }
        loop {
            let next_mig = self.wakes.peek().map(|Reverse(w)| w.at);
            let next_world = self.world.get(self.world_cursor).map(|(t, _)| *t);
            let next = match (next_mig, next_world) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > t {
                break;
            }
            self.now = next;
            if next_world == Some(next) {
                let (_, h) = self.world[self.world_cursor];
                self.world_cursor += 1;
                self.reshare(h);
                self.note_peak(h);
            } else if let Some(Reverse(w)) = self.wakes.pop() {
                if self.migs[w.mig].epoch == w.epoch && self.migs[w.mig].stage != Stage::Ended {
                    if let Some(end) = self.step_migration(w.mig) {
                        ended.push(end);
                    }
                }
            }
            self.clean_wakes();
        }
        self.now = t;
        while self.edges.get(self.edge_cursor).is_some_and(|e| *e <= t) {
            self.edge_cursor += 1;
        }
        ended
    }

    /// Schedules the migration's next wake-up: its stage's end, a hang or a failure.
    pub(super) fn schedule(&mut self, m: usize) {
        let now = self.now;
        let mg = &mut self.migs[m];
        mg.epoch += 1;
        let mut at: Option<Time> = None;
        if let Stage::Setup { until } = mg.stage {
            if !mg.hung {
                at = Some(until);
            }
        } else if mg.rate > 0 && !mg.hung {
            let rem = u128::from(mg.stage_total - mg.stage_done);
            let ms = super::precopy::sat((rem * MS_PER_SEC).div_ceil(u128::from(mg.rate)));
            at = Some(Time(now.0.saturating_add(ms)));
        }
        if let Some(h) = mg.hang_at.filter(|_| !mg.hung) {
            at = Some(at.map_or(h, |a| a.min(h)));
        }
        if let Some((f, _)) = mg.fail_at {
            at = Some(at.map_or(f, |a| a.min(f)));
        }
        if let Some(at) = at {
            self.seq += 1;
            self.wakes.push(Reverse(Wake {
                at: at.max(now),
                seq: self.seq,
                mig: m,
                epoch: mg.epoch,
            }));
        }
    }

    pub(super) fn clean_wakes(&mut self) {
        while let Some(Reverse(w)) = self.wakes.peek() {
            let mg = &self.migs[w.mig];
            if mg.epoch == w.epoch && mg.stage != Stage::Ended {
                break;
            }
            self.wakes.pop();
        }
    }
}
