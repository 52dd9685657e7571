//! The Hyper-V driver of vmove: a small WS-Management/WMI client and the driver built on it.
//!
//! # Layout
//! - [`xml`]: a namespace-aware XML tree (quick-xml) and escaping.
//! - [`cim`]: CIM instances and values, endpoint references, CIM-XML and WS-Man instance forms,
//!   CIM datetimes.
//! - [`wsman`]: the client (Enumerate/Pull with WQL, Get, Invoke), its transport settings and
//!   errors, its connection (one HTTP/1.1 connection per host session, rustls for HTTPS, NTLM
//!   sealing over HTTP) and credentials.
//! - `error`: how a failed call or a method's return value becomes a `DriverError`.
//! - `status`: the seed's reading of a VM's `EnabledState` and `OperationalStatus`.
//! - [`driver`]: [`HyperVDriver`], its state and the `Driver` contract, each call handed to the
//!   room of its phase:
//!   - `inventory`: what the hosts hold (host figures, VMs, disks, settings, folders; locate);
//!   - [`prepare`]: what a move sends (minimal typed embedded instances) and finds (VMs by GUID,
//!     hard disks by subtype), and the start of a move;
//!   - [`job`]: migration jobs through the reference the call returned: states, polling,
//!     cancel, failure detail (`GetErrorEx`) and its class;
//!   - [`verify`]: the move's proof (the disk half: the destination VM's own disk entries);
//!   - [`cleanup`]: listing and removing leftovers, and how an empty folder is removed (set
//!     aside, checked, deleted);
//!   - [`record`]: attempt records, kept in the destination's registry (`StdRegProv`), that
//!     prove after a crash which files and folders a failed attempt may have left there.
//! - [`paths`]: destination layouts (one path, subfolder, preserved drive letters) and the
//!   source clean-up candidates, as pure functions.
//! - [`config`]: `[hosts.<name>]` settings.
//! - `fake` (feature `test-util`): a stateful Hyper-V protocol fake for tests.
//!
//! Nothing WMI-shaped leaves this crate: the driver translates instances into the engine's model.

pub mod cim;
pub mod cleanup;
pub mod config;
pub mod driver;
mod error;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
mod inventory;
pub mod job;
pub mod paths;
pub mod preflight;
pub mod prepare;
pub mod record;
mod status;
pub mod verify;
pub mod wsman;
pub mod xml;

pub use config::HyperVHostConfig;
pub use driver::HyperVDriver;
