//! [`simulate`]: the discrete-event loop that drives [`vmove_core::Core`] against a
//! [`SimCluster`] on virtual time.
//!
//! Each step: carry out every command the core has at the current time against the cluster
//! and feed the answer straight back; then jump the clock to the earliest of the core's
//! timeout, the cluster's next event and a scheduled stop; push `Input::MigrationStatus`
//! (Completed/Failed) for every migration of ours that ended on the way, at the exact time it
//! ended; let the core handle its timeout. A bounded number of steps catches livelock.

use crate::cluster::{MigrationEnd, SimCluster};
use std::collections::{BTreeMap, HashSet};
use vmove_core::io::{Command, Input};
use vmove_core::model::{HostId, MigrationHandle};
use vmove_core::spec::{RunSpec, SpecError};
use vmove_core::{Core, Event, Snapshot, Time};

/// Steps in all before a run counts as a livelock ([`SimOptions::max_steps`]): far more than the
/// largest simulated runs take (10,000 VMs need a few million), small enough to end a spinning
/// core in minutes.
const DEFAULT_MAX_STEPS: u64 = 100_000_000;

/// Steps at one instant per VM and host before a run counts as a livelock
/// ([`SimOptions::max_steps_per_instant`]): an instant's work grows with the VMs and hosts that
/// answer at it (a refresh per host, a handful of commands per VM).
const STEPS_PER_INSTANT_PER_VM_AND_HOST: u64 = 20;

/// Steps at one instant allowed beside [`STEPS_PER_INSTANT_PER_VM_AND_HOST`], so that small
/// runs get room too.
const STEPS_PER_INSTANT_BASE: u64 = 10_000;

/// How to run a simulation.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Fail with [`SimRunError::Livelock`] after this many steps (commands plus clock jumps)
    /// in all. `None`: 100 million (`DEFAULT_MAX_STEPS`).
    pub max_steps: Option<u64>,
    /// Fail with [`SimRunError::Livelock`] after this many steps without the clock moving.
    /// `None`: 20 per VM and host, plus 10,000 (`STEPS_PER_INSTANT_PER_VM_AND_HOST`,
    /// `STEPS_PER_INSTANT_BASE`).
    pub max_steps_per_instant: Option<u64>,
    /// Keep every event in [`SimOutcome::events`] (a 10,000-VM run with progress events is
    /// large: turn it off there; the observer still sees every event).
    pub record_events: bool,
    /// Send `Input::Stop { abort_running }` at this time.
    pub stop_at: Option<(Time, bool)>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            max_steps: None,
            max_steps_per_instant: None,
            record_events: true,
            stop_at: None,
        }
    }
}

/// One step, as the observer sees it (after the step).
#[derive(Debug)]
pub struct Step<'a> {
    /// The time of the step.
    pub now: Time,
    /// The cluster's ground truth after the step.
    pub cluster: &'a SimCluster,
    /// Commands carried out in this step, each with the answer fed back.
    pub commands: &'a [(Command, Input)],
    /// Inputs pushed unasked in this step (migration ends, a stop).
    pub pushed: &'a [Input],
    /// Events the core emitted in this step.
    pub events: &'a [Event],
    /// The core (for snapshots).
    pub core: &'a Core,
}

/// What a simulated run produced.
#[derive(Debug)]
pub struct SimOutcome {
    /// Every event, in order (empty unless `record_events`).
    pub events: Vec<Event>,
    /// How many events there were.
    pub event_count: u64,
    /// When the run finished.
    pub makespan: Time,
    /// The core's final view.
    pub snapshot: Snapshot,
    /// Per host: the peak of our migrations and of all migrations at once (cluster truth).
    pub peak_concurrency: BTreeMap<HostId, (u32, u32)>,
    /// Steps taken: each command carried out, and each turn of the loop that moved the clock
    /// to the next wake-up (a clock jump), however much or little that wake-up held.
    pub steps: u64,
    /// Commands carried out.
    pub commands: u64,
    /// The cluster at the end.
    pub cluster: SimCluster,
}

impl SimOutcome {
    /// The events as NDJSON (one JSON object per line).
    pub fn ndjson(&self) -> String {
        let mut s = String::new();
        for e in &self.events {
            // Events are plain data (strings, numbers, enums): serialising cannot fail.
            s.push_str(&serde_json::to_string(e).unwrap_or_default());
            s.push('\n');
        }
        s
    }
}

/// Why a simulation could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SimRunError {
    /// The spec is invalid.
    #[error("the run specification is invalid")]
    Spec(#[from] SpecError),
    /// Too many steps in all, or at one instant: the core or the model spins.
    #[error("no end after {steps} steps (at {at}): livelock")]
    Livelock {
        /// Steps taken.
        steps: u64,
        /// Virtual time reached.
        at: Time,
    },
    /// Nothing left to wait for, yet the core is not finished.
    #[error("the core is not finished at {at} but waits for nothing")]
    Stuck {
        /// Virtual time.
        at: Time,
    },
}

/// Runs `spec` on `cluster` to the end.
pub fn simulate(
    spec: RunSpec,
    cluster: SimCluster,
    opts: SimOptions,
) -> Result<SimOutcome, SimRunError> {
    run(spec, cluster, opts, None)
}

/// Runs `spec` on `cluster` to the end, calling `observer` after every step.
pub fn simulate_observed(
    spec: RunSpec,
    cluster: SimCluster,
    opts: SimOptions,
    observer: &mut dyn FnMut(&Step<'_>),
) -> Result<SimOutcome, SimRunError> {
    run(spec, cluster, opts, Some(observer))
}

fn run(
    spec: RunSpec,
    mut cluster: SimCluster,
    opts: SimOptions,
    mut observer: Option<&mut dyn FnMut(&Step<'_>)>,
) -> Result<SimOutcome, SimRunError> {
    let vm_count = cluster.vm_specs().count() as u64;
    let max_steps = opts.max_steps.unwrap_or(DEFAULT_MAX_STEPS);
    let max_instant = opts.max_steps_per_instant.unwrap_or(
        STEPS_PER_INSTANT_PER_VM_AND_HOST * (vm_count + cluster.host_ids().len() as u64)
            + STEPS_PER_INSTANT_BASE,
    );
    let mut instant_steps = 0u64;
    let mut now = cluster.now();
    let mut core = Core::new(spec, now)?;
    let mut exec = Exec::default();
    let mut events = Vec::new();
    let mut event_count = 0u64;
    let mut steps = 0u64;
    let mut command_count = 0u64;
    let mut stop = opts.stop_at;
    let mut pushed: Vec<Input> = Vec::new();
    let mut done: Vec<(Command, Input)> = Vec::new();
    let mut step_events: Vec<Event> = Vec::new();
    loop {
        while let Some(cmd) = core.poll_command() {
            steps += 1;
            instant_steps += 1;
            command_count += 1;
            if steps > max_steps || instant_steps > max_instant {
                return Err(SimRunError::Livelock { steps, at: now });
            }
            let input = exec.run(&mut cluster, &cmd, now);
            if observer.is_some() {
                core.handle_event(now, input.clone());
                done.push((cmd, input));
            } else {
                core.handle_event(now, input);
            }
        }
        while let Some(e) = core.poll_event() {
            event_count += 1;
            step_events.push(e);
        }
        if let Some(observer) = observer.as_mut() {
            observer(&Step {
                now,
                cluster: &cluster,
                commands: &done,
                pushed: &pushed,
                events: &step_events,
                core: &core,
            });
        }
        if opts.record_events {
            events.append(&mut step_events);
        } else {
            step_events.clear();
        }
        done.clear();
        pushed.clear();
        if core.is_finished() {
            break;
        }
        steps += 1;
        instant_steps += 1;
        if steps > max_steps || instant_steps > max_instant {
            return Err(SimRunError::Livelock { steps, at: now });
        }
        let t_core = core.poll_timeout().map(|t| t.max(now));
        let t_stop = stop.map(|(t, _)| t.max(now));
        let next = [t_core, cluster.next_event_time(), t_stop]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            return Err(SimRunError::Stuck { at: now });
        };
        if next > now {
            instant_steps = 0;
        }
        let ended = cluster.advance_to(next);
        now = next;
        for end in ended {
            if let Some(input) = exec.pushed(end) {
                core.handle_event(now, input.clone());
                pushed.push(input);
            }
        }
        if let Some((t, abort_running)) = stop {
            if t <= now {
                stop = None;
                let input = Input::Stop { abort_running };
                core.handle_event(now, input.clone());
                pushed.push(input);
            }
        }
        if t_core.is_some_and(|t| t <= now) {
            core.handle_timeout(now);
        }
    }
    let snapshot = core.snapshot(now);
    Ok(SimOutcome {
        events,
        event_count,
        makespan: now,
        snapshot,
        peak_concurrency: cluster.peak_concurrency(),
        steps,
        commands: command_count,
        cluster,
    })
}

/// Carries out the core's commands against a [`SimCluster`] (what a driver does for the runtime),
/// remembering the handles the core knows. [`simulate`] uses it; tests
/// that drive the core themselves (crash and replay tests) use it too.
#[derive(Debug, Default)]
pub struct Exec {
    known: HashSet<MigrationHandle, foldhash::fast::FixedState>,
}

impl Exec {
    /// The status input for a migration that ended, if the core knows that migration.
    pub fn pushed(&mut self, end: MigrationEnd) -> Option<Input> {
        if !self.known.contains(&end.handle) {
            return None;
        }
        Some(Input::MigrationStatus {
            vm: end.request.vm,
            attempt: end.request.attempt,
            result: Ok(end.status),
        })
    }

    /// Carries out `cmd` on `c` at `now` and returns the core's answer.
    pub fn run(&mut self, c: &mut SimCluster, cmd: &Command, now: Time) -> Input {
        match cmd {
            Command::RefreshHost { host } => Input::HostRefreshed {
                host: host.clone(),
                requested_at: now,
                result: c
                    .host_info(host)
                    .and_then(|i| c.list_vms(host).map(|v| (i, v)))
                    .map_err(Into::into),
            },
            // Answered at once, like the other reads of the sim (pre-flight reads only).
            Command::Preflight { request } => Input::Preflighted {
                vm: request.vm.clone(),
                attempt: request.attempt,
                destination: request.destination.clone(),
                result: c.preflight(request).map_err(Into::into),
            },
            Command::StartMigration(req) => {
                let result = c.start_migration(req);
                if let Ok(h) = &result {
                    self.known.insert(h.clone());
                }
                Input::MigrationStarted {
                    vm: req.vm.clone(),
                    attempt: req.attempt,
                    result: result.map_err(Into::into),
                }
            }
            Command::PollMigration { request, handle } => Input::MigrationStatus {
                vm: request.vm.clone(),
                attempt: request.attempt,
                result: c.migration_status(request, handle).map_err(Into::into),
            },
            Command::AbortMigration { request, handle } => Input::AbortDone {
                vm: request.vm.clone(),
                attempt: request.attempt,
                result: c.abort_migration(request, handle).map_err(Into::into),
            },
            Command::Converge {
                request,
                handle,
                aid,
            } => Input::Converged {
                vm: request.vm.clone(),
                attempt: request.attempt,
                result: c.converge(request, handle, *aid).map_err(Into::into),
            },
            Command::Locate { request } => {
                let result = c.locate(request);
                if let Ok(Some(h)) = result.as_ref().map(|l| l.running_migration.clone()) {
                    self.known.insert(h);
                }
                Input::Located {
                    vm: request.vm.clone(),
                    attempt: request.attempt,
                    result: result.map(Box::new).map_err(Into::into),
                }
            }
            Command::Verify { request } => Input::Verified {
                vm: request.vm.clone(),
                attempt: request.attempt,
                result: c.verify(request).map_err(Into::into),
            },
            Command::ListLeftovers { request, context } => Input::LeftoversListed {
                vm: request.vm.clone(),
                attempt: request.attempt,
                result: c.leftovers(request, *context).map_err(Into::into),
            },
            Command::RemoveLeftover {
                request,
                leftover,
                context,
            } => Input::LeftoverRemoved {
                vm: request.vm.clone(),
                attempt: request.attempt,
                leftover: leftover.clone(),
                result: c
                    .remove_leftover(request, leftover, *context)
                    .map_err(Into::into),
            },
        }
    }
}
