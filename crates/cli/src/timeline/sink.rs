//! A run's timeline built as it goes: the runtime's sink that feeds a shared
//! [`TimelineBuilder`] (for `--report run.html` of `migrate`, `evacuate`, `resume` and `demo`,
//! and `--timeline` after them). What it sees is what the journal records: the events, the
//! commands (pre-flight checks) and the answers.

use super::model::TimelineBuilder;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use vmove_core::{Command, Event, Input, Time};
use vmove_runtime::{EventSink, SinkError};

/// The shared builder a [`TimelineSink`] fills.
pub type SharedTimeline = Arc<Mutex<TimelineBuilder>>;

/// Locks a shared builder (a poisoned lock still holds a usable builder).
pub fn lock(t: &SharedTimeline) -> std::sync::MutexGuard<'_, TimelineBuilder> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Feeds a [`TimelineBuilder`] from the runtime.
#[derive(Debug, Clone)]
pub struct TimelineSink(pub SharedTimeline);

#[async_trait]
impl EventSink for TimelineSink {
    fn name(&self) -> &str {
        "timeline"
    }
    async fn on_command(&mut self, now: Time, command: &Command) -> Result<(), SinkError> {
        lock(&self.0).apply_command(now, command);
        Ok(())
    }
    async fn on_input(&mut self, now: Time, input: &Input) -> Result<(), SinkError> {
        lock(&self.0).apply_input(now, input);
        Ok(())
    }
    async fn on_event(&mut self, event: &Event) -> Result<(), SinkError> {
        lock(&self.0).apply_event(event);
        Ok(())
    }
}
