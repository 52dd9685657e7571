//! Rendering a run, by what is rendered:
//! - [`live`]: live progress (indicatif bars on a terminal, plain timestamped lines otherwise);
//! - [`describe`]: the one line each event gets;
//! - [`record`]: the per-VM record folded from the events, and how a VM and a run ended;
//! - [`report`]: the summary table and the `--report` files;
//! - [`markdown`]: outside text made inert for the Markdown reports;
//! - [`ndjson`]: the events as NDJSON for programs (`--json`), in the versioned envelope;
//! - [`table`]: tables fitted to the terminal's width;
//! - [`fmt`]: times, ETAs and lists for people.

mod describe;
mod fmt;
mod live;
pub mod markdown;
mod ndjson;
mod record;
mod report;
mod table;

pub use fmt::{fmt_downtime, fmt_eta, fmt_time, unix_ms, wall_ms, wall_ms_millis};
pub use live::{BarsSink, LinesSink};
pub use ndjson::NdjsonSink;
pub use record::{
    NextRun, Record, RecordSink, RunOutcome, SharedRecord, VmOutcome, hostname, lock,
};
pub use report::{ReportFormat, check_writable, refuse_unless_regular, write_regular};
pub use table::{MAX_WIDTH, Table, terminal_width};
