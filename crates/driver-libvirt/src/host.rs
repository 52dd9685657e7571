//! Blocking operations on one libvirt host (run them inside `spawn_blocking`).
//!
//! Files are seen through libvirt's storage API only: a file's folder is an active `dir` pool
//! (the configured one, any other whose target is that folder, or a transient pool
//! `vmove-<hash>` we create for it), refreshed before each look, so `vmove` works against remote
//! hosts without a shell on them.

//!
//! - `connection.rs`: [`Host`], its connections and keepalive, its free memory;
//! - `storage.rs`: folders as pools, volumes, file facts ([`Pools`]: one refresh per folder per
//!   call);
//! - `domain.rs`: domains, their disks, power state and activity, the files they use.

mod connection;
mod domain;
mod storage;

pub use connection::*;
pub use domain::*;
pub use storage::*;
