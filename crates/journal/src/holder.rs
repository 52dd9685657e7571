//! Who drives a run ([`Holder`]), and whether a holder on this machine is provably dead
//! ([`holder_state`], from what [`crate::proc`] reads).

use crate::proc;
use serde::{Deserialize, Serialize};

/// Who drives a run: a process on a host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// When the process started, in clock ticks after boot (`/proc/<pid>/stat`, field 22):
    /// tells the holder apart from a later process given the same pid. `None` where unknown
    /// (not Linux; leases written before schema 3).
    #[serde(default)]
    pub started: Option<u64>,
    /// Which boot of which machine, and which pid namespace, the pid belongs to
    /// ([`proc::boot_identity`]): pids and start times mean something only there.
    #[serde(default)]
    pub boot: Option<String>,
}

impl Holder {
    /// This process on this host.
    pub fn current() -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            started: proc::start_time(pid),
            boot: proc::boot_identity(),
        }
    }

    /// Process `pid` on this host, as [`Holder::current`] would describe it (tests).
    pub fn of_pid(pid: u32) -> Holder {
        Holder {
            pid,
            started: proc::start_time(pid),
            ..Holder::current()
        }
    }
}

/// What can be said of a lease holder from this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HolderState {
    /// It runs (or may: on another machine, boot or pid namespace, or `/proc` cannot tell).
    Unknown,
    /// It runs here: its pid has its start time.
    Alive,
    /// It is provably gone; the words say how (`is gone`, `is gone (its pid is now a later process's)`).
    Dead(&'static str),
}

/// Whether `holder` is alive, dead or unknown, as seen from this process.
pub fn holder_state(holder: &Holder) -> HolderState {
    let here = Holder::current();
    let same_boot = here.boot.is_some() && holder.boot == here.boot && holder.host == here.host;
    if !same_boot {
        return HolderState::Unknown;
    }
    let Some(started) = holder.started else {
        return HolderState::Unknown;
    };
    match proc::start_time(holder.pid) {
        None if std::path::Path::new("/proc/self/stat").exists() => HolderState::Dead("is gone"),
        None => HolderState::Unknown,
        Some(t) if t != started => HolderState::Dead("is gone (its pid is now a later process's)"),
        Some(_) => HolderState::Alive,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_has_a_start_time_and_boot_identity() {
        let me = Holder::current();
        assert!(me.started.is_some());
        assert!(
            me.boot.as_deref().unwrap().contains("/pid:["),
            "{:?}",
            me.boot
        );
        assert_eq!(holder_state(&me), HolderState::Alive);
    }
}
