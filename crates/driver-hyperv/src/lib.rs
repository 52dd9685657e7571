//! The Hyper-V driver of vmove: a small WS-Management/WMI client and the driver built on it.
//!
//! # Layout
//! - [`xml`]: a namespace-aware XML tree (quick-xml) and escaping.
//! - [`cim`]: CIM instances and values, endpoint references, CIM-XML and WS-Man instance forms.
//! - [`wsman`]: the client (Enumerate/Pull with WQL, Get, Invoke), its transport (one HTTP/1.1
//!   connection per host session, rustls for HTTPS, NTLM sealing over HTTP) and credentials.
//! - [`prepare`]: what a move sends (minimal typed embedded instances) and finds (VMs by GUID,
//!   hard disks by subtype), as pure functions.
//! - [`paths`]: destination layouts (one path, subfolder, preserved drive letters) and the
//!   source clean-up candidates, as pure functions.
//! - [`cleanup`]: how an empty folder is removed (set aside, checked, deleted) and why.
//! - [`record`]: attempt records, kept in the destination's registry (`StdRegProv`), that
//!   prove after a crash which files and folders a failed attempt may have left there.
//! - [`job`]: migration jobs through the reference the call returned: states, cancel,
//!   failure detail (`GetErrorEx`) and its class.
//! - [`verify`]: the disk half of a move's proof (the destination VM's own disk entries).
//! - [`config`]: `[hosts.<name>]` settings; [`driver`]: [`HyperVDriver`].
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
pub mod prepare;
pub mod record;
mod status;
pub mod verify;
pub mod wsman;
pub mod xml;

pub use config::HyperVHostConfig;
pub use driver::HyperVDriver;
