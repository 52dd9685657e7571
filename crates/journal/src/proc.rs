//! What Linux `/proc` says of a process and of this boot: the facts that prove a lease holder
//! on this machine dead (`crate::holder::holder_state`).
//!
//! A pid alone proves nothing: pids are reused, and a pid means something only in one boot of
//! one machine and one pid namespace. So a holder is recorded with its pid, its start time
//! (`/proc/<pid>/stat` field 22, `starttime`: clock ticks after boot, fixed for the life of
//! the process; proc(5)) and the identity of the boot and pid namespace it ran in
//! (`/proc/sys/kernel/random/boot_id`, a random UUID made at each boot, proc(5) /
//! random(4); and the inode of `/proc/self/ns/pid`, namespaces(7)). When all of these match
//! this process's, the holder is dead if no process has its pid, or the process that has it
//! started at another time. A stopped process (SIGSTOP) still has its `/proc` entry, so it is
//! never taken for dead; neither is a holder on another machine, another boot, or anywhere
//! `/proc` cannot say (the caller waits for the lease to expire then).

/// The start time of process `pid` in clock ticks after boot, if it exists (and `/proc` can
/// tell).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Where `starttime` is among the fields after the name: the fields after the name start with
/// field 3 (state), so field 22 is the 20th of them (index 19).
const START_TIME_AFTER_NAME: usize = 19;

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses: the fields are counted after its LAST `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace()
        .nth(START_TIME_AFTER_NAME)?
        .parse()
        .ok()
}

/// This boot of this machine and this pid namespace: `<boot_id>/pid:[<inode>]`.
pub fn boot_identity() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), ns.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_read_after_the_last_parenthesis_of_the_name() {
        // A name with a space and a parenthesis (proc(5): field 2 is `(comm)`).
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(line), Some(987_654));
        assert_eq!(parse_start_time("4242 (x) S 1 2"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }
}
