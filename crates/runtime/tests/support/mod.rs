//! Test support: a fake driver whose migrations complete after a set time (on the tokio clock),
//! and a small scripted engine that stands in for the core so the runtime can be tested alone.
#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use vmove_core::event::EventKind;
use vmove_core::*;
use vmove_driver::{Driver, DriverError, DriverResult};
use vmove_runtime::Engine;

/// A shared, ordered log of what happened (driver calls, sink hooks).
pub type Log = Arc<Mutex<Vec<String>>>;

/// A fake hypervisor: every migration completes `complete_after` after it started.
#[derive(Debug, Default)]
pub struct FakeDriver {
    pub complete_after: Duration,
    /// VMs whose start never answers.
    pub hang_start: HashSet<String>,
    /// VMs whose status reads never answer.
    pub hang_status: HashSet<String>,
    /// VMs whose start panics.
    pub panic_start: HashSet<String>,
    /// VMs whose start fails with this error.
    pub fail_start: HashMap<String, DriverError>,
    pub log: Log,
    started: Mutex<HashMap<String, Instant>>,
    aborted: Mutex<HashSet<String>>,
}

impl FakeDriver {
    pub fn new(complete_after: Duration, log: Log) -> Self {
        FakeDriver {
            complete_after,
            log,
            ..Default::default()
        }
    }
    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

#[async_trait]
impl Driver for FakeDriver {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn hosts(&self) -> Vec<HostId> {
        vec![HostId::new("a"), HostId::new("b")]
    }
    async fn host_info(&self, _host: &HostId) -> DriverResult<HostInfo> {
        Ok(HostInfo {
            migration_limit: Some(2),
            active_migrations: 0,
            free_memory_bytes: 64 * GIB,
            free_disk_bytes: 1024 * GIB,
        })
    }
    async fn list_vms(&self, _host: &HostId) -> DriverResult<Vec<VmInfo>> {
        Ok(vec![])
    }
    async fn footprint(&self, _host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        Err(DriverError::permanent(format!("VM {vm} not found")))
    }
    async fn start_migration(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        self.note(format!("driver start {}", req.vm_name));
        if self.hang_start.contains(&*req.vm_name) {
            std::future::pending::<()>().await;
        }
        if self.panic_start.contains(&*req.vm_name) {
            panic!("the fake driver was told to panic");
        }
        if let Some(e) = self.fail_start.get(&*req.vm_name) {
            return Err(e.clone());
        }
        let handle = format!("job-{}-{}", req.vm_name, req.attempt);
        self.started
            .lock()
            .unwrap()
            .insert(handle.clone(), Instant::now());
        Ok(MigrationHandle(handle.into()))
    }
    async fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        if self.hang_status.contains(&*req.vm_name) {
            std::future::pending::<()>().await;
        }
        if self.aborted.lock().unwrap().contains(&*handle.0) {
            return Ok(MigrationStatus::Failed(Failure::new(
                ErrorClass::Transient,
                "aborted",
            )));
        }
        let started = *self
            .started
            .lock()
            .unwrap()
            .get(&*handle.0)
            .ok_or_else(|| DriverError::permanent("no such job"))?;
        if started.elapsed() >= self.complete_after {
            Ok(MigrationStatus::Completed)
        } else {
            Ok(MigrationStatus::Running(Progress::default()))
        }
    }
    async fn abort_migration(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        self.note(format!("driver abort {}", req.vm_name));
        self.aborted.lock().unwrap().insert(handle.0.to_string());
        Ok(())
    }
    async fn preflight(&self, req: &MigrationRequest) -> DriverResult<Preflight> {
        self.note(format!("driver preflight {}", req.vm_name));
        Ok(Preflight::default())
    }
    async fn locate(&self, _req: &MigrationRequest) -> DriverResult<Location> {
        Ok(Location {
            on_source: None,
            on_destination: None,
            running_migration: None,
        })
    }
    async fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        self.note(format!("driver verify {}", req.vm_name));
        Ok(Verification {
            on_destination: true,
            disks_present: true,
            stopped_on_source: true,
            detail: String::new(),
            downtime_ms: None,
        })
    }
    async fn leftovers(
        &self,
        _req: &MigrationRequest,
        _context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        Ok(vec![])
    }
    async fn remove_leftover(
        &self,
        _req: &MigrationRequest,
        _leftover: &Leftover,
        _context: LeftoverContext,
    ) -> DriverResult<()> {
        Ok(())
    }
}

/// How one VM of the scripted engine ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Moved,
    Cancelled,
    Aborted,
    Failed(ErrorClass, String),
}

#[derive(Debug)]
enum St {
    Queued,
    Starting,
    Running {
        handle: MigrationHandle,
        next_poll: Option<Time>,
    },
    Aborting,
    Verifying,
    Done(Outcome),
}

/// What the scripted engine saw, shared with the test.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every input with the `now` it was handed with.
    pub inputs: Vec<(Time, Input)>,
    /// Each VM's outcome.
    pub outcomes: HashMap<String, Outcome>,
    /// Time of every handle_timeout call.
    pub timeouts: Vec<Time>,
}

/// A tiny engine: starts VMs from `a` to `b`, at most `parallel` at once, polls each running one
/// every second, verifies on completion; on stop starts nothing new (and aborts with
/// `abort_running`).
#[derive(Debug)]
pub struct ScriptEngine {
    vms: Vec<(String, St)>,
    parallel: usize,
    stopping: bool,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    pub seen: Arc<Mutex<Seen>>,
    /// Never finishes and never asks anything (to test stall detection).
    pub idle_forever: bool,
}

impl ScriptEngine {
    pub fn new(names: &[&str], parallel: usize) -> Self {
        let mut e = ScriptEngine {
            vms: names.iter().map(|n| (n.to_string(), St::Queued)).collect(),
            parallel,
            stopping: false,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            seen: Arc::default(),
            idle_forever: false,
        };
        e.commands.push_back(Command::RefreshHost {
            host: HostId::new("a"),
        });
        e.schedule(Time::ZERO);
        e
    }

    fn req(name: &str) -> MigrationRequest {
        MigrationRequest {
            vm: VmId::new(name),
            vm_name: name.into(),
            source: HostId::new("a"),
            destination: HostId::new("b"),
            mode: MigrationMode::Live,
            layout: PathLayout::default(),
            attempt: 1,
            run_id: "test".into(),
        }
    }

    fn finish(&mut self, now: Time, i: usize, o: Outcome) {
        let name = self.vms[i].0.clone();
        let kind = match &o {
            Outcome::Moved => EventKind::Moved {
                vm: VmId::new(&name),
                name: name.clone(),
                destination: HostId::new("b"),
                attempts: 1,
            },
            _ => EventKind::Cancelled {
                vm: VmId::new(&name),
                name: name.clone(),
                reason: Reason::RunStopped,
            },
        };
        self.events.push_back(Event { at: now, kind });
        self.seen.lock().unwrap().outcomes.insert(name, o.clone());
        self.vms[i].1 = St::Done(o);
    }

    fn schedule(&mut self, now: Time) {
        let in_flight = self
            .vms
            .iter()
            .filter(|(_, s)| !matches!(s, St::Queued | St::Done(_)))
            .count();
        let mut free = self.parallel.saturating_sub(in_flight);
        for i in 0..self.vms.len() {
            if !matches!(self.vms[i].1, St::Queued) {
                continue;
            }
            if self.stopping {
                self.finish(now, i, Outcome::Cancelled);
            } else if free > 0 {
                free -= 1;
                self.vms[i].1 = St::Starting;
                self.commands
                    .push_back(Command::StartMigration(Self::req(&self.vms[i].0).into()));
            }
        }
    }

    fn index(&self, vm: &VmId) -> usize {
        self.vms.iter().position(|(n, _)| n == vm.as_str()).unwrap()
    }
}

impl Engine for ScriptEngine {
    fn handle_event(&mut self, now: Time, input: Input) {
        self.seen.lock().unwrap().inputs.push((now, input.clone()));
        match input {
            Input::HostRefreshed { .. } => {}
            Input::MigrationStarted { vm, result, .. } => {
                let i = self.index(&vm);
                match result {
                    Ok(handle) => {
                        self.vms[i].1 = St::Running {
                            handle,
                            next_poll: Some(now + Duration::from_secs(1)),
                        }
                    }
                    Err(f) => self.finish(now, i, Outcome::Failed(f.class, f.message)),
                }
            }
            Input::MigrationStatus { vm, result, .. } => {
                let i = self.index(&vm);
                match (&mut self.vms[i].1, result) {
                    (St::Running { .. }, Ok(MigrationStatus::Completed)) => {
                        self.vms[i].1 = St::Verifying;
                        self.commands.push_back(Command::Verify {
                            request: Self::req(vm.as_str()).into(),
                        });
                    }
                    (
                        St::Running { next_poll, .. },
                        Ok(MigrationStatus::Running(_) | MigrationStatus::Pending),
                    ) => {
                        *next_poll = Some(now + Duration::from_secs(1));
                    }
                    (St::Running { .. }, Ok(MigrationStatus::Failed(f)) | Err(f)) => {
                        self.finish(now, i, Outcome::Failed(f.class, f.message))
                    }
                    _ => {}
                }
            }
            Input::Verified { vm, .. } => {
                let i = self.index(&vm);
                self.finish(now, i, Outcome::Moved);
            }
            Input::AbortDone { vm, .. } => {
                let i = self.index(&vm);
                self.finish(now, i, Outcome::Aborted);
            }
            Input::Stop { abort_running } => {
                self.stopping = true;
                if abort_running {
                    for i in 0..self.vms.len() {
                        if let St::Running { handle, .. } = &self.vms[i].1 {
                            let name = self.vms[i].0.clone();
                            self.commands.push_back(Command::AbortMigration {
                                request: Self::req(&name).into(),
                                handle: handle.clone(),
                            });
                            self.vms[i].1 = St::Aborting;
                        }
                    }
                }
            }
            _ => {}
        }
        self.schedule(now);
    }

    fn handle_timeout(&mut self, now: Time) {
        self.seen.lock().unwrap().timeouts.push(now);
        for (name, st) in &mut self.vms {
            if let St::Running { handle, next_poll } = st
                && next_poll.is_some_and(|t| t <= now)
            {
                *next_poll = None;
                self.commands.push_back(Command::PollMigration {
                    request: Self::req(name).into(),
                    handle: handle.clone(),
                });
            }
        }
    }

    fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.vms
            .iter()
            .filter_map(|(_, s)| match s {
                St::Running { next_poll, .. } => *next_poll,
                _ => None,
            })
            .min()
    }

    fn is_finished(&self) -> bool {
        !self.idle_forever && self.vms.iter().all(|(_, s)| matches!(s, St::Done(_)))
    }

    fn snapshot(&self, now: Time) -> Snapshot {
        Snapshot {
            run_id: "test".into(),
            at: now,
            vms: vec![],
            hosts: vec![],
            stopping: self.stopping,
            finished: self.is_finished(),
            failed: None,
        }
    }
}

/// The drivers map for hosts `a` and `b`, both served by `d`.
pub fn drivers(d: FakeDriver) -> vmove_runtime::Drivers {
    let d: Arc<dyn Driver> = Arc::new(d);
    let mut m = vmove_runtime::Drivers::new();
    m.insert(HostId::new("a"), Arc::clone(&d));
    m.insert(HostId::new("b"), d);
    m
}
