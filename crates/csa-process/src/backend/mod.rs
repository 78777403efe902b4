//! The process backends behind one interface: what csa reads about a process (state, parent,
//! process group, session id, owner, start time, command line, environment), the process list,
//! the boot's identity and how held locks are found.
//!
//! - [`Backend::Procfs`] (Linux): the `/proc` readers of [`crate::platform`]: start ticks, the
//!   threads of a zombie leader, `/proc/locks`, the boot id and the PID namespace.
//! - [`Backend::Portable`] (every Unix, Linux included): no `/proc` of its own (the `portable` module):
//!   sysinfo for the process list, state, parent, owner, command line and environment;
//!   `getpgid(2)`/`getsid(2)` for the process group and session id; the start time in
//!   microseconds from `proc_pidinfo` on macOS, in whole seconds since boot elsewhere; the
//!   boot time from sysinfo; held locks by a test lock ([`crate::LockTable::testing_only`]).
//!
//! Both compile on every platform (only the thin switches below them are behind `cfg`), so a
//! Linux build type-checks the portable path, and the test suite runs on Linux with either
//! (`CSA_PROCESS_BACKEND`, [`select`]).

use std::io;

use crate::StartTime;

mod portable;
mod procfs;
pub mod select;

pub use select::{current, selection, Backend, Selection, ENV};

/// Whether a process has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It has not exited: running, sleeping, stopped, or a zombie thread-group leader with a
    /// thread still running (Linux: a main thread that called `pthread_exit(3)`).
    Live,
    /// A zombie: exited, not yet reaped.
    Zombie,
    /// Dead (`X`): exited and being reaped.
    Dead,
}

/// What a backend reads about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStat {
    /// Whether it has exited.
    pub status: Status,
    /// Its parent's pid (0 when it has none).
    pub ppid: u32,
    /// Its process group id.
    pub pgid: u32,
    /// Its session id (the pid of the process that called `setsid(2)`).
    pub sid: u32,
    /// When it started, in the backend's unit; `None` when unreadable.
    pub start: Option<StartTime>,
    /// Its effective user id, when the backend read it with the rest (the portable backend
    /// does; procfs reads it apart, [`owner_uid`]).
    pub uid: Option<u32>,
}

impl ProcessStat {
    /// Whether it has not exited.
    pub fn is_live(&self) -> bool {
        self.status == Status::Live
    }
}

/// Reads what [`ProcessStat`] holds about `pid`, through the backend in use.
///
/// # Errors
/// `NotFound` when no such process is visible; `InvalidData` for a record that does not parse;
/// `Unsupported` when the backend cannot read processes here; any other I/O error of the read.
pub fn stat(pid: u32) -> io::Result<ProcessStat> {
    match current() {
        Backend::Procfs => procfs::stat(pid),
        Backend::Portable => portable::stat(pid),
    }
}

/// The effective user id owning `pid`.
///
/// # Errors
/// As [`stat`].
pub fn owner_uid(pid: u32) -> io::Result<u32> {
    match current() {
        Backend::Procfs => crate::platform::owner_uid(pid),
        Backend::Portable => portable::owner_uid(pid),
    }
}

/// The command line of `pid`: its arguments, each followed by a NUL (the shape of
/// `/proc/<pid>/cmdline`), at most 4 MiB on procfs.
///
/// # Errors
/// `NotFound` when the process does not exist; `PermissionDenied` when it cannot be read.
pub fn cmdline(pid: u32) -> io::Result<Vec<u8>> {
    match current() {
        Backend::Procfs => crate::platform::cmdline(pid),
        Backend::Portable => portable::cmdline(pid),
    }
}

/// The environment of `pid` at its `exec`: `KEY=VALUE` entries, each followed by a NUL (the
/// shape of `/proc/<pid>/environ`).
///
/// # Errors
/// `PermissionDenied` for another user's process (the rule on every platform), and on the
/// portable backend for an environment that reads empty (an unreadable one reads empty there);
/// `NotFound` when the process does not exist.
pub fn environ(pid: u32) -> io::Result<Vec<u8>> {
    match current() {
        Backend::Procfs => crate::platform::environ(pid),
        Backend::Portable => portable::environ(pid),
    }
}

/// Every visible process with what [`stat`] reads about it, in no order: the process table,
/// listed only to find the members of a process session ([`crate::Membership`]). Processes
/// that exit while it is read are left out.
///
/// # Errors
/// The process list cannot be read (`Unsupported` where the backend has none).
pub fn table() -> io::Result<Vec<(u32, ProcessStat)>> {
    match current() {
        Backend::Procfs => procfs::table(),
        Backend::Portable => portable::table(),
    }
}

/// The start time of `pid` in the backend's unit; `None` when it does not exist or it cannot
/// be read.
pub fn start_time(pid: u32) -> Option<StartTime> {
    stat(pid).ok().and_then(|s| s.start)
}

/// This boot's id (procfs: `/proc/sys/kernel/random/boot_id`, a UUID new at every boot); the
/// portable backend has none and gives `None`.
pub fn boot_id() -> Option<String> {
    match current() {
        Backend::Procfs => crate::platform::boot_id().ok().filter(|s| !s.is_empty()),
        Backend::Portable => None,
    }
}

/// When this boot started, in seconds since the Unix epoch (portable backend: sysinfo's boot
/// time, which moves when the wall clock is set); procfs gives `None` (it has the boot id).
pub fn boot_time() -> Option<u64> {
    match current() {
        Backend::Procfs => None,
        Backend::Portable => portable::boot_time(),
    }
}

/// The PID namespace (procfs: the inode of `/proc/self/ns/pid`); the portable backend has no
/// way to read it and gives `None`.
pub fn pid_namespace() -> Option<u64> {
    match current() {
        Backend::Procfs => crate::platform::pid_namespace().ok(),
        Backend::Portable => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable backend reads what procfs reads, on Linux where both work: the same
    /// parent, process group, session, owner and state, and a start time in whole seconds
    /// since boot equal to the start ticks divided by the tick rate.
    #[cfg(target_os = "linux")]
    #[test]
    fn portable_agrees_with_procfs() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        // Until it has exec'd, the child's command line is this test's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !crate::platform::cmdline(child.id()).is_ok_and(|c| c.starts_with(b"sleep\0")) {
            assert!(std::time::Instant::now() < deadline, "sleep never ran");
            std::thread::yield_now();
        }
        for pid in [std::process::id(), child.id()] {
            let a = procfs::stat(pid).expect("procfs");
            let b = portable::stat(pid).expect("portable");
            assert_eq!(
                (a.status, a.ppid, a.pgid, a.sid),
                (b.status, b.ppid, b.pgid, b.sid)
            );
            // The sysinfo path (other platforms, and macOS's fallback) reads the same.
            let c = portable::sysinfo_stat(pid).expect("sysinfo");
            assert_eq!(
                (b.status, b.ppid, b.pgid, b.sid, b.start, b.uid),
                (c.status, c.ppid, c.pgid, c.sid, c.start, c.uid)
            );
            assert_eq!(
                crate::platform::owner_uid(pid).ok(),
                portable::owner_uid(pid).ok()
            );
            let (Some(ticks), Some(start)) = (a.start, b.start) else {
                panic!("start times: {a:?} {b:?}");
            };
            assert!(matches!(start, StartTime::BootSeconds(_)), "{start:?}");
            assert_eq!(StartTime::same_process(ticks, start), Some(true));
            assert_eq!(
                crate::platform::cmdline(pid).expect("cmdline"),
                portable::cmdline(pid).expect("cmdline")
            );
        }
        let env = portable::environ(std::process::id()).expect("environ");
        assert_eq!(
            env,
            crate::platform::environ(std::process::id()).expect("env")
        );
        let table = portable::table().expect("table");
        assert!(table.iter().any(|(pid, _)| *pid == child.id()));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            portable::stat(child.id()).map_err(|e| e.kind()),
            Err(io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn portable_reads_this_process_and_the_boot_time() {
        let me = portable::stat(std::process::id()).expect("stat");
        assert!(me.is_live());
        assert!(me.start.is_some());
        assert_eq!(me.uid, Some(nix::unistd::geteuid().as_raw()));
        assert_eq!(
            me.sid,
            nix::unistd::getsid(None).expect("sid").as_raw() as u32
        );
        let boot = portable::boot_time().expect("boot time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(boot > 0 && boot <= now, "{boot} vs {now}");
    }
}
