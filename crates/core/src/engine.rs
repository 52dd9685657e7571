//! The engine: placement, slots, scheduling, and the per-VM machines tied together.

use crate::event::Event;
use crate::io::{Command, Input};
use crate::spec::{RunSpec, SpecError};
use crate::time::Time;
use crate::view::Snapshot;

/// The migration engine of one run. Pure: driven by inputs and time, it emits commands and events.
#[derive(Debug)]
pub struct Core {
    spec: RunSpec,
}

impl Core {
    /// Validates the spec and creates the engine. Its first commands refresh every host involved.
    pub fn new(spec: RunSpec, now: Time) -> Result<Core, SpecError> {
        spec.validate()?;
        let _ = now;
        Ok(Core { spec })
    }

    /// Feeds one input from the world.
    pub fn handle_event(&mut self, now: Time, input: Input) {
        let _ = (now, input, &self.spec);
    }

    /// Tells the engine that time `now` has come (call at or after [`Core::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Time) {
        let _ = now;
    }

    /// The next command to carry out, if any.
    pub fn poll_command(&mut self) -> Option<Command> {
        None
    }

    /// The next event for observers, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        None
    }

    /// When the engine next wants [`Core::handle_timeout`] called.
    pub fn poll_timeout(&self) -> Option<Time> {
        None
    }

    /// Whether the run is over (every VM final, nothing in flight).
    pub fn is_finished(&self) -> bool {
        true
    }

    /// A view of every VM and host.
    pub fn snapshot(&self, now: Time) -> Snapshot {
        Snapshot {
            run_id: self.spec.run_id.clone(),
            at: now,
            vms: vec![],
            hosts: vec![],
            stopping: false,
            finished: true,
            failed: None,
        }
    }
}
