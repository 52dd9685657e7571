//! The plan a run is started with, journaled beside it: the reports and the live page draw its
//! predicted bars beside the real ones (docs/timeline.md).
//!
//! It is made as `vmove plan` makes it ([`PlanInput`]: the `--plan-*` flags and the journal's
//! newest runs), from the hosts' figures and VM lists the run itself read: each involved
//! host's first successful refresh, seen by the runtime sink [`PlanSink`]. Once every host was
//! read, the plan is made on a blocking thread and journaled ([`vmove_journal::Journal::record_plan`]);
//! the run never waits for it. A plan that cannot be made (a bad flag, an unreadable journal,
//! a simulation error), or that is not ready soon after the run ended, is journaled as nothing
//! but a note, `no plan was made: REASON`, and said on stderr as a warning.

use crate::simrun::PlanInput;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;
use vmove_core::{Event, HostId, Input, RunSpec, Time};
use vmove_journal::PlannedMove;
use vmove_journal::sink::{SharedJournal, with_journal};
use vmove_plan::{Flags, ObservedHost};
use vmove_runtime::{EventSink, SinkError};

/// How long the end of a run waits for a plan still being made before giving it up.
const GRACE: Duration = Duration::from_secs(3);

/// What the plan of a run is made from besides the hosts: its spec, the journal to calibrate
/// from and the `--plan-*` flags.
#[derive(Debug)]
pub(crate) struct PlanRequest {
    pub spec: RunSpec,
    /// The journal whose newest runs calibrate the figures (the run's own journal).
    pub journal_path: PathBuf,
    pub flags: Flags,
    /// How many of the journal's newest runs (`--plan-history`).
    pub history: usize,
}

/// Where the plan is.
#[derive(Debug)]
enum State {
    /// Waiting for the hosts' figures: the request, the hosts wanted and those read so far.
    Observing {
        request: PlanRequest,
        wanted: BTreeSet<HostId>,
        seen: BTreeMap<HostId, ObservedHost>,
    },
    /// Being made (or made) on a blocking thread.
    Making(JoinHandle<Result<Vec<PlannedMove>, String>>),
    /// Given up or collected.
    Done,
}

#[derive(Debug)]
struct Inner {
    journal: SharedJournal,
    run: String,
    state: Mutex<State>,
    /// Set when the run's end gave the plan up: nothing is journaled after it. Held while the
    /// plan (or its note) is written.
    given_up: Mutex<bool>,
}

/// The plan of one run, shared by its sink ([`RunPlanner::sink`]) and the end of the run
/// ([`RunPlanner::finish`]).
#[derive(Clone, Debug)]
pub(crate) struct RunPlanner(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunPlanner {
    /// A planner for run `run` journaled in `journal`.
    pub(crate) fn new(request: PlanRequest, journal: SharedJournal, run: &str) -> RunPlanner {
        let wanted = vmove_plan::involved(&request.spec);
        RunPlanner(Arc::new(Inner {
            journal,
            run: run.to_owned(),
            state: Mutex::new(State::Observing {
                request,
                wanted,
                seen: BTreeMap::new(),
            }),
            given_up: Mutex::new(false),
        }))
    }

    /// The runtime sink that hands the planner the hosts' refreshes.
    pub(crate) fn sink(&self) -> PlanSink {
        PlanSink(self.clone())
    }

    /// A host's refresh answered: kept if it is the first successful one of a host the plan
    /// needs; once every such host was read, the plan is started on a blocking thread.
    fn observe(&self, input: &Input) {
        let mut state = lock(&self.0.state);
        let State::Observing { wanted, seen, .. } = &mut *state else {
            return;
        };
        let Some(o) = vmove_plan::observed(input) else {
            return;
        };
        if !wanted.contains(&o.id) || seen.contains_key(&o.id) {
            return;
        }
        seen.insert(o.id.clone(), o);
        if seen.len() < wanted.len() {
            return;
        }
        let State::Observing { request, seen, .. } = std::mem::replace(&mut *state, State::Done)
        else {
            return;
        };
        let inner = Arc::clone(&self.0);
        let observed: Vec<ObservedHost> = seen.into_values().collect();
        *state = State::Making(tokio::task::spawn_blocking(move || {
            make(&inner, request, &observed)
        }));
    }

    /// The end of the run: the plan if it was made (waiting for it up to a few seconds if it
    /// is still being made); else why not, said on stderr and noted in the journal, and the
    /// plan given up (never journaled after this).
    pub(crate) async fn finish(&self) -> Option<Vec<PlannedMove>> {
        let state = std::mem::replace(&mut *lock(&self.0.state), State::Done);
        let why = match state {
            State::Making(task) => match tokio::time::timeout(GRACE, task).await {
                Ok(Ok(Ok(order))) => return Some(order),
                // Said and noted by the task.
                Ok(Ok(Err(_))) => return None,
                Ok(Err(e)) => format!("the planning task failed: {e}"),
                Err(_) => format!("it was not ready {} s after the run ended", GRACE.as_secs()),
            },
            State::Observing { wanted, seen, .. } => {
                let missing: Vec<&str> = wanted
                    .iter()
                    .filter(|h| !seen.contains_key(*h))
                    .map(HostId::as_str)
                    .collect();
                format!(
                    "the run read no figures of host(s) {} before it ended",
                    missing.join(", ")
                )
            }
            State::Done => return None,
        };
        *lock(&self.0.given_up) = true;
        errln!("vmove: warning: no plan was made: {why}");
        let (run, note) = (self.0.run.clone(), format!("no plan was made: {why}"));
        if let Err(e) = with_journal(&self.0.journal, move |j| j.record_note(&run, &note)).await {
            errln!("vmove: warning: the missing plan could not be noted in the journal: {e}");
        }
        None
    }
}

/// Makes the plan and journals it, or says why it could not be made (stderr and a note). Runs
/// on a blocking thread.
fn make(
    inner: &Inner,
    request: PlanRequest,
    observed: &[ObservedHost],
) -> Result<Vec<PlannedMove>, String> {
    let default_limit = request.spec.settings.default_host_limit;
    let made = PlanInput::read(request.flags, &request.journal_path, request.history)
        .and_then(|input| input.plan(request.spec, observed, default_limit))
        .map(|p| p.order)
        .map_err(|e| format!("{e:#}"));
    let given_up = lock(&inner.given_up);
    if *given_up {
        return Err("given up: the run ended before it was made".into());
    }
    let mut journal = lock(&inner.journal);
    let made = made.and_then(|order| {
        journal
            .record_plan(&inner.run, &order)
            .map(|()| order)
            .map_err(|e| format!("it could not be journaled: {}", e.chain()))
    });
    if let Err(why) = &made {
        errln!("vmove: warning: no plan was made: {why}");
        if let Err(e) = journal.record_note(&inner.run, &format!("no plan was made: {why}")) {
            errln!("vmove: warning: the missing plan could not be noted in the journal: {e}");
        }
    }
    made
}

/// Hands [`RunPlanner`] the hosts' refreshes; never fails and never waits for the plan.
#[derive(Debug)]
pub(crate) struct PlanSink(RunPlanner);

#[async_trait]
impl EventSink for PlanSink {
    fn name(&self) -> &str {
        "plan"
    }
    async fn on_input(&mut self, _now: Time, input: &Input) -> Result<(), SinkError> {
        if matches!(input, Input::HostRefreshed { .. }) {
            self.0.observe(input);
        }
        Ok(())
    }
    async fn on_event(&mut self, _event: &Event) -> Result<(), SinkError> {
        Ok(())
    }
}
