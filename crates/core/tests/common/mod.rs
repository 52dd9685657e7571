//! A tiny scripted world for the core's own tests: hosts with VMs, migrations that take a fixed
//! time, and knobs to make things fail. The full simulator lives in `vmove-sim`; this one exists so
//! the core's tests depend on nothing but the core.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;
use vmove_core::*;

#[derive(Debug, Clone)]
pub struct Mig {
    pub src: HostId,
    pub dst: HostId,
    pub done_at: Time,
    pub mode: MigrationMode,
    pub handle: MigrationHandle,
}

#[derive(Debug, Default)]
pub struct World {
    pub hosts: BTreeMap<HostId, (HostInfo, Vec<VmInfo>)>,
    pub migs: BTreeMap<VmId, Mig>,
    /// VM name -> remaining start failures with that class.
    pub start_failures: BTreeMap<String, Vec<ErrorClass>>,
    /// VM names whose migrations never report running (stuck Pending).
    pub stuck_pending: Vec<String>,
    /// VM names whose migrations stall (never complete, no progress).
    pub stall: Vec<String>,
    pub duration: Duration,
    pub removed: Vec<(Leftover, LeftoverContext)>,
    pub leftovers: BTreeMap<HostId, Vec<Leftover>>,
    pub log: Vec<String>,
    /// Hosts that fail refreshes.
    pub down: Vec<HostId>,
    /// VM name -> how long its migration goes on after an accepted abort (libvirt on a cut link).
    pub slow_abort: BTreeMap<String, Duration>,
    /// When each slowly aborted migration really ends.
    pub abort_ends: BTreeMap<VmId, Time>,
    /// A start is refused (`DestinationRefused`) while the destination holds a leftover of that
    /// VM (its path is taken: the libvirt driver's "path taken" after a given-up attempt).
    pub refuse_taken_paths: bool,
    /// An injected `DestinationRefused` start leaves a leftover of the VM on the destination (a
    /// driver that pre-creates images, then is refused).
    pub refused_start_leaves: bool,
    /// Leftover paths whose removal fails.
    pub remove_fails: Vec<String>,
    /// The next N locates fail (a host that does not answer).
    pub locate_failures: u32,
    /// (VM name, destination) -> pre-flight answers to give, in turn (the last one stays);
    /// absent: clear.
    pub preflights: BTreeMap<(String, String), Vec<Result<Preflight, Failure>>>,
    /// VM name -> the message its injected start failures carry, the same every attempt
    /// (absent: each says its attempt).
    pub start_failure_message: BTreeMap<String, String>,
    /// Pre-flight checks asked: (VM name, destination, attempt).
    pub preflight_log: Vec<(String, String, u32)>,
}

pub fn vm(name: &str, power: PowerState) -> VmInfo {
    VmInfo {
        id: VmId::new(format!("id-{name}")),
        name: name.into(),
        power,
        health: Health::Ok,
        activity: Activity::Idle,
        memory_bytes: 1 << 30,
        disk_bytes: 4 << 30,
        dirty_rate: None,
    }
}

pub fn host_info(limit: Option<u32>) -> HostInfo {
    HostInfo {
        migration_limit: limit,
        active_migrations: 0,
        free_memory_bytes: 64 << 30,
        free_disk_bytes: 1 << 40,
    }
}

impl World {
    pub fn new() -> Self {
        World {
            duration: Duration::from_secs(30),
            ..Default::default()
        }
    }

    pub fn add_host(&mut self, h: &str, limit: Option<u32>) {
        self.hosts
            .insert(HostId::new(h), (host_info(limit), vec![]));
    }

    pub fn add_vm(&mut self, h: &str, v: VmInfo) {
        self.hosts.get_mut(&HostId::new(h)).unwrap().1.push(v);
    }

    pub fn find(&self, id: &VmId) -> Vec<(HostId, VmInfo)> {
        let mut out = vec![];
        for (h, (_, vms)) in &self.hosts {
            for v in vms {
                if &v.id == id {
                    out.push((h.clone(), v.clone()));
                }
            }
        }
        out
    }

    fn set_activity(&mut self, h: &HostId, id: &VmId, a: Activity) {
        if let Some((_, vms)) = self.hosts.get_mut(h) {
            for v in vms.iter_mut() {
                if &v.id == id {
                    v.activity = a.clone();
                }
            }
        }
    }

    pub fn finish(&mut self, id: &VmId) {
        let m = self.migs.remove(id).unwrap();
        let (_, vms) = self.hosts.get_mut(&m.src).unwrap();
        let pos = vms.iter().position(|v| &v.id == id).unwrap();
        let mut v = vms.remove(pos);
        v.activity = Activity::Idle;
        self.hosts.get_mut(&m.dst).unwrap().1.push(v.clone());
        self.leftovers
            .entry(m.src.clone())
            .or_default()
            .push(Leftover {
                host: m.src.clone(),
                kind: LeftoverKind::DiskImage,
                what: format!("/images/{}.qcow2", v.name),
            });
        self.log
            .push(format!("moved {} {}->{}", v.name, m.src, m.dst));
    }

    /// Answers one command at `now`.
    pub fn answer(&mut self, now: Time, cmd: Command) -> Option<Input> {
        // Slowly aborted migrations whose time has come end now (the VM stays on its source).
        let ended: Vec<VmId> = self
            .abort_ends
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(v, _)| v.clone())
            .collect();
        for vm in ended {
            self.abort_ends.remove(&vm);
            if let Some(m) = self.migs.remove(&vm) {
                self.set_activity(&m.src, &vm, Activity::Idle);
                self.log.push(format!("aborted {vm}"));
            }
        }
        Some(match cmd {
            Command::RefreshHost { host } => {
                if self.down.contains(&host) {
                    return Some(Input::HostRefreshed {
                        host,
                        requested_at: now,
                        result: Err(Failure::new(ErrorClass::Transient, "connection refused")),
                    });
                }
                let (mut info, vms) = self.hosts[&host].clone();
                info.active_migrations = self
                    .migs
                    .values()
                    .filter(|m| m.src == host || m.dst == host)
                    .count() as u32;
                Input::HostRefreshed {
                    host,
                    requested_at: now,
                    result: Ok((info, vms)),
                }
            }
            Command::Preflight { request: req } => {
                self.preflight_log.push((
                    req.vm_name.to_string(),
                    req.destination.to_string(),
                    req.attempt,
                ));
                let key = (req.vm_name.to_string(), req.destination.to_string());
                let result = match self.preflights.get_mut(&key) {
                    Some(v) if v.len() > 1 => v.remove(0),
                    Some(v) if v.len() == 1 => v[0].clone(),
                    _ => Ok(Preflight::default()),
                };
                Input::Preflighted {
                    vm: req.vm.clone(),
                    attempt: req.attempt,
                    destination: req.destination.clone(),
                    result,
                }
            }
            Command::StartMigration(req) => {
                if self.refuse_taken_paths {
                    let taken = self
                        .leftovers
                        .get(&req.destination)
                        .and_then(|v| v.iter().find(|l| l.what.contains(&*req.vm_name)).cloned());
                    if let Some(l) = taken {
                        return Some(Input::MigrationStarted {
                            vm: req.vm.clone(),
                            attempt: req.attempt,
                            result: Err(Failure::new(
                                ErrorClass::DestinationRefused,
                                format!("{} is taken on {}", l.what, req.destination),
                            )),
                        });
                    }
                }
                if let Some(f) = self.start_failures.get_mut(&*req.vm_name) {
                    if !f.is_empty() {
                        let class = f.remove(0);
                        if class == ErrorClass::DestinationRefused && self.refused_start_leaves {
                            self.leftovers
                                .entry(req.destination.clone())
                                .or_default()
                                .push(Leftover {
                                    host: req.destination.clone(),
                                    kind: LeftoverKind::DiskImage,
                                    what: format!(
                                        "/images/{}.refused-{}",
                                        req.vm_name, req.attempt
                                    ),
                                });
                        }
                        return Some(Input::MigrationStarted {
                            vm: req.vm.clone(),
                            attempt: req.attempt,
                            // Each attempt's failure says its attempt: the same failure twice
                            // on one route ends retries there (tests of that use their own).
                            result: Err(Failure::new(
                                class,
                                self.start_failure_message
                                    .get(&*req.vm_name)
                                    .cloned()
                                    .unwrap_or_else(|| {
                                        format!("injected failure (attempt {})", req.attempt)
                                    }),
                            )),
                        });
                    }
                }
                let handle = MigrationHandle(format!("job-{}-{}", req.vm_name, req.attempt).into());
                self.set_activity(&req.source, &req.vm, Activity::MigratingOut);
                self.log.push(format!(
                    "start {} {}->{}",
                    req.vm_name, req.source, req.destination
                ));
                self.migs.insert(
                    req.vm.clone(),
                    Mig {
                        src: req.source.clone(),
                        dst: req.destination.clone(),
                        done_at: now + self.duration,
                        mode: req.mode,
                        handle: handle.clone(),
                    },
                );
                Input::MigrationStarted {
                    vm: req.vm.clone(),
                    attempt: req.attempt,
                    result: Ok(handle),
                }
            }
            Command::PollMigration { request: r, .. } => {
                let (vm, attempt) = (r.vm.clone(), r.attempt);
                let name = self.migs.get(&vm).map(|_| ());
                let status = match (name, self.migs.get(&vm)) {
                    (Some(()), Some(m)) => {
                        let vm_name = self
                            .find(&vm)
                            .first()
                            .map(|(_, v)| v.name.to_string())
                            .unwrap_or_default();
                        if self.stuck_pending.contains(&vm_name) {
                            MigrationStatus::Pending
                        } else if self.stall.contains(&vm_name) {
                            MigrationStatus::Running(Progress {
                                bytes_done: 10,
                                bytes_total: 100,
                                bytes_remaining: 90,
                                ..Default::default()
                            })
                        } else {
                            let total = self.duration.as_millis() as u64;
                            let left = m.done_at.0.saturating_sub(now.0);
                            MigrationStatus::Running(Progress {
                                bytes_done: total - left,
                                bytes_total: total,
                                bytes_remaining: left,
                                ..Default::default()
                            })
                        }
                    }
                    _ => MigrationStatus::Completed,
                };
                Input::MigrationStatus {
                    vm,
                    attempt,
                    result: Ok(status),
                }
            }
            Command::AbortMigration { request: r, .. } => {
                let (vm, attempt) = (r.vm.clone(), r.attempt);
                let name = self
                    .find(&vm)
                    .first()
                    .map(|(_, v)| v.name.to_string())
                    .unwrap_or_default();
                if let Some(d) = self.slow_abort.get(&name).copied() {
                    if self.migs.contains_key(&vm) {
                        self.log.push(format!("abort accepted {vm}"));
                        self.abort_ends.entry(vm.clone()).or_insert(now + d);
                        return Some(Input::AbortDone {
                            vm,
                            attempt,
                            result: Ok(()),
                        });
                    }
                }
                if let Some(m) = self.migs.remove(&vm) {
                    self.set_activity(&m.src, &vm, Activity::Idle);
                    self.log.push(format!("aborted {vm}"));
                    self.leftovers
                        .entry(m.dst.clone())
                        .or_default()
                        .push(Leftover {
                            host: m.dst.clone(),
                            kind: LeftoverKind::DiskImage,
                            what: format!("/images/{vm}.partial"),
                        });
                }
                Input::AbortDone {
                    vm,
                    attempt,
                    result: Ok(()),
                }
            }
            Command::Converge { request: r, .. } => Input::Converged {
                vm: r.vm.clone(),
                attempt: r.attempt,
                result: Ok(false),
            },
            Command::Locate { request } => {
                let (vm, attempt) = (request.vm.clone(), request.attempt);
                if self.locate_failures > 0 {
                    self.locate_failures -= 1;
                    return Some(Input::Located {
                        vm,
                        attempt,
                        result: Err(Failure::new(
                            ErrorClass::Transient,
                            format!(
                                "locating the VM on hosts `{}` and `{}` did not answer within 2m",
                                request.source, request.destination
                            ),
                        )),
                    });
                }
                let on_source = self.hosts[&request.source]
                    .1
                    .iter()
                    .find(|v| v.id == vm)
                    .cloned();
                let on_destination = self.hosts[&request.destination]
                    .1
                    .iter()
                    .find(|v| v.id == vm)
                    .cloned();
                let running_migration = self.migs.get(&vm).map(|m| m.handle.clone());
                Input::Located {
                    vm,
                    attempt,
                    result: Ok(Box::new(Location {
                        on_source,
                        on_destination,
                        running_migration,
                    })),
                }
            }
            Command::Verify { request } => {
                let (vm, attempt) = (request.vm.clone(), request.attempt);
                let on_dst = self.hosts[&request.destination]
                    .1
                    .iter()
                    .any(|v| v.id == vm);
                let on_src = self.hosts[&request.source].1.iter().any(|v| v.id == vm);
                Input::Verified {
                    vm,
                    attempt,
                    result: Ok(Verification {
                        on_destination: on_dst,
                        disks_present: on_dst,
                        stopped_on_source: !on_src,
                        detail: String::new(),
                        downtime_ms: None,
                    }),
                }
            }
            Command::ListLeftovers { request, context } => {
                let (vm, attempt) = (request.vm.clone(), request.attempt);
                let host = match context {
                    LeftoverContext::AfterSuccess => &request.source,
                    LeftoverContext::AfterFailedAttempt => &request.destination,
                };
                let name: &str = &request.vm_name;
                let list = self
                    .leftovers
                    .get(host)
                    .map(|v| {
                        v.iter()
                            .filter(|l| l.what.contains(name) || l.what.contains(vm.as_str()))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                Input::LeftoversListed {
                    vm,
                    attempt,
                    result: Ok(list),
                }
            }
            Command::RemoveLeftover {
                request: r,
                leftover,
                context,
                ..
            } => {
                let (vm, attempt) = (r.vm.clone(), r.attempt);
                if self.remove_fails.contains(&leftover.what) {
                    return Some(Input::LeftoverRemoved {
                        vm,
                        attempt,
                        leftover,
                        result: Err(Failure::new(
                            ErrorClass::Transient,
                            "host b does not answer",
                        )),
                    });
                }
                if let Some(v) = self.leftovers.get_mut(&leftover.host) {
                    v.retain(|l| l != &leftover);
                }
                self.removed.push((leftover.clone(), context));
                Input::LeftoverRemoved {
                    vm,
                    attempt,
                    leftover,
                    result: Ok(()),
                }
            }
        })
    }

    /// The earliest migration completion.
    pub fn next_completion(&self) -> Option<(Time, VmId)> {
        self.migs
            .iter()
            .filter(|(id, _)| {
                let name = self
                    .find(id)
                    .first()
                    .map(|(_, v)| v.name.to_string())
                    .unwrap_or_default();
                !self.stuck_pending.contains(&name)
                    && !self.stall.contains(&name)
                    && !self.abort_ends.contains_key(id)
            })
            .map(|(id, m)| (m.done_at, id.clone()))
            .min()
    }
}

/// Runs a core against the world until it finishes (or `limit` steps). Returns every event.
pub fn run(
    core: &mut Core,
    world: &mut World,
    now: Time,
    mut hook: impl FnMut(&Core, &mut World, &Command),
) -> Vec<Event> {
    run_timed(core, world, now, |core, world, _, c| hook(core, world, c))
}

/// [`run`], with the time of each command handed to the hook.
pub fn run_timed(
    core: &mut Core,
    world: &mut World,
    now: Time,
    hook: impl FnMut(&Core, &mut World, Time, &Command),
) -> Vec<Event> {
    run_feeding(core, world, now, hook, None)
}

/// [`run`], with `input` handed to the core once, at run time `at`: the clock stops at `at`
/// until it is (an operator's request arriving at that moment).
pub fn run_with_input_at(
    core: &mut Core,
    world: &mut World,
    now: Time,
    at: Time,
    input: Input,
) -> Vec<Event> {
    run_feeding(core, world, now, |_, _, _, _| {}, Some((at, input)))
}

fn run_feeding(
    core: &mut Core,
    world: &mut World,
    mut now: Time,
    mut hook: impl FnMut(&Core, &mut World, Time, &Command),
    mut feed: Option<(Time, Input)>,
) -> Vec<Event> {
    let mut events = vec![];
    for _ in 0..200_000 {
        if feed.as_ref().is_some_and(|(at, _)| now >= *at) {
            if let Some((_, input)) = feed.take() {
                core.handle_event(now, input);
            }
        }
        while let Some(c) = core.poll_command() {
            hook(core, world, now, &c);
            if let Some(i) = world.answer(now, c) {
                core.handle_event(now, i);
            }
        }
        while let Some(e) = core.poll_event() {
            events.push(e);
        }
        if core.is_finished() {
            return events;
        }
        let t_core = core.poll_timeout();
        let t_world = world.next_completion();
        // Time stops where the input is due until it is fed.
        if let Some(&(at, _)) = feed.as_ref() {
            let due = match (t_core, &t_world) {
                (Some(t), Some((tw, _))) => Some(t.min(*tw)),
                (t, w) => t.or(w.as_ref().map(|(tw, _)| *tw)),
            };
            if due.is_none_or(|d| d > at) {
                now = now.max(at);
                continue;
            }
        }
        now = advance(core, world, now);
    }
    panic!("did not finish in 200000 steps");
}

/// Moves the clock to what comes next and hands it to the core: its own timeout, or the
/// world's next migration to finish (the core's timeout first on a tie). Returns the new time;
/// panics when neither is pending (a livelock).
pub fn advance(core: &mut Core, world: &mut World, mut now: Time) -> Time {
    match (core.poll_timeout(), world.next_completion()) {
        (None, None) => panic!("livelock: nothing to wait for at {now}"),
        (Some(t), Some((tw, _))) if t <= tw => {
            now = now.max(t);
            core.handle_timeout(now);
        }
        (Some(_), Some((tw, id))) | (None, Some((tw, id))) => {
            now = now.max(tw);
            let attempt = core
                .snapshot(now)
                .vms
                .iter()
                .find(|v| v.id == id)
                .map(|v| v.attempts)
                .unwrap();
            world.finish(&id);
            core.handle_event(
                now,
                Input::MigrationStatus {
                    vm: id,
                    attempt,
                    result: Ok(MigrationStatus::Completed),
                },
            );
        }
        (Some(t), None) => {
            now = now.max(t);
            core.handle_timeout(now);
        }
    }
    now
}

pub fn spec(src: &str, dsts: &[&str], hosts: &[&str]) -> RunSpec {
    RunSpec {
        run_id: "test".into(),
        sources: vec![SourceSpec {
            host: HostId::new(src),
            select: Selection::All,
            destinations: dsts.iter().map(|d| HostId::new(*d)).collect(),
            exclude: vec![],
        }],
        hosts: hosts
            .iter()
            .map(|h| (HostId::new(*h), HostLimits::default()))
            .collect(),
        layouts: Default::default(),
        pins: Default::default(),
        priorities: Default::default(),
        settings: Settings {
            backoff_jitter: 0.0,
            ..Settings::default()
        },
    }
}

/// The snapshot view of the VM named `name` (panics if there is none).
pub fn outcome(core: &Core, name: &str) -> VmView {
    core.snapshot(Time::ZERO)
        .vms
        .into_iter()
        .find(|v| v.name == name)
        .unwrap()
}

/// Two hosts, `a` and `b`, with two slots each.
pub fn two_hosts() -> World {
    let mut w = World::new();
    w.add_host("a", Some(2));
    w.add_host("b", Some(2));
    w
}

/// The events about the VM with id `id`, in order.
pub fn vm_events<'a>(ev: &'a [Event], id: &str) -> Vec<&'a EventKind> {
    ev.iter()
        .map(|e| &e.kind)
        .filter(|k| k.vm().is_some_and(|v| v.as_str() == id))
        .collect()
}
