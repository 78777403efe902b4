//! Probing one PID: does it name a running process, and which one (its start time)? Through
//! the backend in use ([`crate::backend`]).

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::backend;
use crate::StartTime;

/// What `kill(pid, 0)` and the backend's [`backend::stat`] say about a PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The PID cannot name a process csa may look at: 0 (our own process group for `kill`),
    /// or above `i32::MAX` (not a valid `pid_t`).
    Invalid,
    /// No process has this PID (`ESRCH`), or it is a zombie or dead (`Z`/`X` state) with no
    /// thread left running: it has exited, whoever reaps it.
    Exited {
        /// Whether the process is still present as a zombie.
        zombie: bool,
    },
    /// A process with this PID exists and has not exited (`kill` succeeded or failed with
    /// `EPERM`, which means "exists, owned by someone else"). A thread-group leader whose main
    /// thread called `pthread_exit(3)` reads `Z` in `/proc/<pid>/stat` while its other threads
    /// run: it is running (regression: such an agent was declared dead and could not be
    /// killed).
    Running {
        /// Its start time in the backend's unit (procfs: start ticks, field 22 of
        /// `/proc/<pid>/stat`), `None` when it cannot be read. Callers comparing against a
        /// recorded start must treat `None` as "unknown", not as a mismatch.
        start_time: Option<StartTime>,
    },
}

impl Probe {
    /// Whether the PID names a process that has not exited. [`Probe::Invalid`] is not running.
    pub fn is_running(&self) -> bool {
        matches!(self, Probe::Running { .. })
    }
}

/// Probes `pid` with `kill(pid, 0)` and the backend's [`backend::stat`].
///
/// Fails closed: an unexpected `kill` error, or a stat that cannot be read while `kill` still
/// says the process exists (another user's process hidden by `hidepid`, say), yields
/// [`Probe::Running`] with an unknown start time.
pub fn probe(pid: u32) -> Probe {
    let raw = match i32::try_from(pid) {
        Ok(raw) if raw > 0 => raw,
        _ => return Probe::Invalid,
    };
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(Errno::ESRCH) => return Probe::Exited { zombie: false },
        Err(err) => {
            tracing::debug!(pid, %err, "kill(pid, 0) failed unexpectedly; counting as running");
            return Probe::Running { start_time: None };
        }
    }
    match backend::stat(pid) {
        Ok(stat) if !stat.is_live() => Probe::Exited {
            zombie: stat.status == backend::Status::Zombie,
        },
        Ok(stat) => Probe::Running {
            start_time: stat.start,
        },
        // It exited between kill() and the read, unless kill still finds it (then it is
        // hidden from this backend: unknown).
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            match kill(Pid::from_raw(raw), None) {
                Err(Errno::ESRCH) => Probe::Exited { zombie: false },
                _ => Probe::Running { start_time: None },
            }
        }
        Err(err) => {
            tracing::debug!(pid, %err, "cannot read process stat; start time unknown");
            Probe::Running { start_time: None }
        }
    }
}

/// Whether `pid` runs and, when a start time was `recorded`, with that start time (compared in
/// a common unit, [`StartTime::same_process`]; one that is unreadable or cannot be compared
/// does not match).
pub fn running_as(pid: u32, recorded: Option<StartTime>) -> bool {
    match probe(pid) {
        Probe::Running { start_time } => recorded.is_none_or(|recorded| {
            start_time.is_some_and(|now| StartTime::same_process(recorded, now) == Some(true))
        }),
        _ => false,
    }
}

/// Whether the process group `pgid` has a member that has not exited.
///
/// `kill(-pgid, 0)` alone cannot tell: it succeeds while any member exists, zombies included,
/// and a zombie whose parent never reaps it (a stuck parent, or an init that does not reap, as
/// in many containers) exists forever. So when the group exists, its members are found by
/// listing the process table ([`backend::table`]) and the group is running while any member is
/// neither a zombie nor dead.
///
/// Fails closed: when the group exists but the process table cannot be listed, it counts as
/// running. A `pgid` of 0 or above `i32::MAX` names no group: not running.
pub fn group_is_running(pgid: u32) -> bool {
    let raw = match i32::try_from(pgid) {
        Ok(raw) if raw > 0 => raw,
        _ => return false,
    };
    match nix::sys::signal::killpg(Pid::from_raw(raw), None) {
        Err(Errno::ESRCH) => return false,
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return true,
    }
    let Ok(table) = backend::table() else {
        return true;
    };
    table
        .iter()
        .any(|(_, stat)| stat.pgid == pgid && stat.is_live())
}

/// Whether the command line of `pid` contains any of `needles` as a substring (of the
/// NUL-separated argument bytes).
///
/// Returns `None` when the command line cannot be read (unknown); callers fail closed.
pub fn cmdline_contains(pid: u32, needles: &[&[u8]]) -> Option<bool> {
    let cmdline = backend::cmdline(pid).ok()?;
    Some(needles.iter().any(|needle| contains(&cmdline, needle)))
}

/// Whether the environment of `pid` contains exactly the entry `entry` (for example
/// `CSA_SESSION_ID=01J…`).
///
/// Returns `None` when the environment cannot be read, which is the rule for another user's
/// process (reading it needs ptrace access); callers fail closed.
pub fn environ_contains(pid: u32, entry: &[u8]) -> Option<bool> {
    let environ = backend::environ(pid).ok()?;
    Some(environ.split(|&b| b == 0).any(|e| e == entry))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The ancestors of `pid` (its parent, the parent's parent, …, up to but not including pid 1),
/// each with its start time in the backend's unit, nearest first. Stops at the first process
/// whose stat or start time cannot be read. At most 256 steps (a parent chain is a tree; the
/// bound only guards a corrupt read).
pub fn ancestors(pid: u32) -> Vec<(u32, StartTime)> {
    let mut chain = Vec::new();
    let mut current = pid;
    for _ in 0..256 {
        let Ok(stat) = backend::stat(current) else {
            break;
        };
        let parent = stat.ppid;
        if parent <= 1 || parent == current {
            break;
        }
        let Some(start) = backend::stat(parent).ok().and_then(|s| s.start) else {
            break;
        };
        chain.push((parent, start));
        current = parent;
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_pids_are_never_probed() {
        assert_eq!(probe(0), Probe::Invalid);
        assert_eq!(probe(u32::MAX), Probe::Invalid);
    }

    #[test]
    fn own_process_is_running_with_its_start_time() {
        let p = probe(std::process::id());
        assert!(
            matches!(
                p,
                Probe::Running {
                    start_time: Some(_)
                }
            ),
            "{p:?}"
        );
    }

    #[test]
    fn unused_pid_has_exited() {
        // Above the kernel's pid_max (at most 2^22), so never in use.
        assert_eq!(probe(999_999_999), Probe::Exited { zombie: false });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn zombie_counts_as_exited() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Until waited for, the exited child stays a zombie. Poll its state (not a sleep
        // standing in for synchronisation: we wait for the kernel to report the exit).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match probe(pid) {
                Probe::Exited { zombie } => {
                    assert!(zombie, "an unreaped child must be seen as a zombie");
                    break;
                }
                Probe::Running { .. } if std::time::Instant::now() < deadline => {
                    std::thread::yield_now()
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        child.wait().expect("reap");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_cmdline_and_environ_are_readable() {
        let pid = std::process::id();
        let exe = std::env::args().next().expect("argv0");
        assert_eq!(cmdline_contains(pid, &[exe.as_bytes()]), Some(true));
        assert_eq!(
            cmdline_contains(pid, &[b"no-such-needle-\x01"]),
            Some(false)
        );
        let (key, value) = std::env::vars().next().expect("some env var");
        let entry = format!("{key}={value}");
        assert_eq!(environ_contains(pid, entry.as_bytes()), Some(true));
    }
}
