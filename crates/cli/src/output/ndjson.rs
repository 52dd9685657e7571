//! The events as NDJSON for programs (`--json`): the core's event (`at`, `event` and its
//! fields, as the journal stores it) in an envelope that says which schema it follows, when it
//! happened on the wall clock, and the VM's name. The envelope is added here, by the CLI: the
//! core has no clock, and the simulator's own NDJSON (the golden files) stays the core's.
//!
//! The fields, per event kind, are documented in docs/events.md and checked against
//! schema/events.schema.json by tests/event_schema.rs.

use async_trait::async_trait;
use std::collections::HashMap;
use std::io::Write;
use std::time::SystemTime;
use vmove_core::event::EventKind;
use vmove_core::{Event, Time, VmId};
use vmove_runtime::{EventSink, SinkError};

/// The version of the event schema (`schema` in every line). Raised when a field changes
/// meaning or is removed; new event kinds and new optional fields keep it.
pub const EVENT_SCHEMA: u32 = 1;

/// The wall-clock time of run time `at`: `wall_start` is when run time `start` was.
/// For the simulated demo this is the run's wall-clock start plus simulated time.
pub fn wall_time(wall_start: SystemTime, start: Time, at: Time) -> SystemTime {
    wall_start + at.saturating_since(start)
}

/// RFC 3339 in UTC with milliseconds (`2026-12-03T14:05:09.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    super::wall_ms_millis(super::unix_ms(t))
}

/// One event as one NDJSON line (no newline): `{"schema":1,"time":"…",<the event>,"vm_name":…}`;
/// `vm_name` is there for every event about a VM (its id when no name was seen).
pub fn event_line(ev: &Event, time: SystemTime, names: &HashMap<VmId, String>) -> String {
    let body = serde_json::to_string(ev).unwrap_or_else(|_| "{}".to_owned());
    let inner = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or("");
    let mut line = format!(
        "{{\"schema\":{EVENT_SCHEMA},\"time\":\"{}\",{inner}",
        rfc3339(time)
    );
    if let Some(vm) = ev.kind.vm() {
        let name = names.get(vm).map_or(vm.as_str(), String::as_str);
        let quoted = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
        line.push_str(",\"vm_name\":");
        line.push_str(&quoted);
    }
    line.push('}');
    line
}

fn learn_name(names: &mut HashMap<VmId, String>, ev: &Event) {
    if let EventKind::Selected { vm, name, .. }
    | EventKind::Moved { vm, name, .. }
    | EventKind::Unmigratable { vm, name, .. }
    | EventKind::Cancelled { vm, name, .. } = &ev.kind
    {
        names.insert(vm.clone(), name.clone());
    }
}

/// `--json`'s sink: every event as one enveloped line, flushed after each.
pub struct NdjsonSink<W: Write + Send> {
    out: W,
    wall_start: SystemTime,
    start: Time,
    names: HashMap<VmId, String>,
}

impl<W: Write + Send> std::fmt::Debug for NdjsonSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdjsonSink").finish_non_exhaustive()
    }
}

impl<W: Write + Send> NdjsonSink<W> {
    /// Lines to `out`; run time `start` is the wall clock's `wall_start`.
    pub fn new(out: W, wall_start: SystemTime, start: Time) -> Self {
        NdjsonSink {
            out,
            wall_start,
            start,
            names: HashMap::new(),
        }
    }

    /// Knows these VM names already (a resumed run's VMs were selected by an earlier process).
    pub fn with_names(mut self, names: HashMap<VmId, String>) -> Self {
        self.names = names;
        self
    }
}

#[async_trait]
impl<W: Write + Send> EventSink for NdjsonSink<W> {
    fn name(&self) -> &str {
        "ndjson"
    }
    async fn on_event(&mut self, ev: &Event) -> Result<(), SinkError> {
        learn_name(&mut self.names, ev);
        let time = wall_time(self.wall_start, self.start, ev.at);
        let line = event_line(ev, time, &self.names);
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vmove_core::HostId;

    #[test]
    fn an_event_about_a_vm_carries_the_schema_its_wall_time_and_its_name() {
        let vm = VmId::new("u-1");
        let names = HashMap::from([(vm.clone(), "db-\"01\"".to_string())]);
        let ev = Event {
            at: Time(61_500),
            kind: EventKind::Verified {
                vm,
                destination: HostId::new("hv-02"),
                downtime_ms: None,
            },
        };
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let line = event_line(&ev, wall_time(start, Time(1_000), ev.at), &names);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["schema"], EVENT_SCHEMA);
        assert_eq!(v["time"], "2027-01-15T08:01:00.500Z", "{line}");
        assert_eq!(v["vm_name"], "db-\"01\"");
        assert_eq!(v["event"], "verified");
        assert_eq!(v["at"], 61_500);
    }

    #[test]
    fn an_event_about_no_vm_has_no_vm_name() {
        let ev = Event {
            at: Time(0),
            kind: EventKind::HostUnreachable {
                host: HostId::new("hv-09"),
                error: "refused".into(),
            },
        };
        let line = event_line(&ev, SystemTime::UNIX_EPOCH, &HashMap::new());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["host"], "hv-09");
        assert!(v.get("vm_name").is_none(), "{line}");
    }
}
