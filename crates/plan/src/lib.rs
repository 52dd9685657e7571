//! vmove-plan: what `vmove plan` (and `--dry-run`) predicts, as a value.
//!
//! A plan runs the real core on a simulated copy of the hosts, in virtual time: the copy is
//! built from what the hosts' drivers reported ([`ObservedHost`] values), and each route's
//! figures are fitted from the journal's past migrations (runs handed in as values) or set by
//! flags. This crate opens no file and asks no host: the caller hands it what it read.
//!
//! # Layout
//! - [`calibrate`]: per-route figures fitted from past runs ([`Calibration`]).
//! - [`figures`]: the simulator's assumptions from the calibration and the [`Flags`], and the
//!   lines that say which figures were used and where they came from.
//! - [`mod@plan`]: [`plan()`], the simulated run and the [`Plan`] it gives: figures, order,
//!   destinations, predicted start and end per VM, ETA, warnings.
//! - [`mod@remaining`]: the re-plan of what is left of a running run, from its journal alone
//!   (`vmove serve`'s ETA).

pub mod calibrate;
pub mod figures;
pub mod plan;
pub mod remaining;

pub use calibrate::Calibration;
pub use figures::Flags;
pub use plan::{Plan, PlannedMove, involved, plan};
pub use remaining::{Remaining, observed, remaining};
pub use vmove_sim::scenarios::ObservedHost;
