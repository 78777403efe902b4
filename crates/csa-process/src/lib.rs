//! Process liveness for csa sessions: the probes, the session's membership, verified signals
//! and the verdict.
//!
//! - [`backend`]: where process facts come from, behind one interface: the Linux `/proc`
//!   readers ([`platform`]) or the portable backend (sysinfo, `getpgid`/`getsid`, and on macOS
//!   `proc_pidinfo`), chosen by `CSA_PROCESS_BACKEND` or by whether `/proc/self/stat` can be
//!   read ([`backend::selection`], which `csa doctor` reports).
//! - Probes answer one question about one pid at a time: "is this process alive, and is it the
//!   one that was recorded?" ([`probe`], [`observe()`]): `kill(pid, 0)` plus a targeted read
//!   through the backend.
//! - [`Membership`] answers "which processes belong to this session?" from the kernel's own
//!   records, a cgroup v2 ([`cgroup`]) or the agent's process session plus the session's marker,
//!   without relying on inherited descriptors. Only this lists the process table (a process
//!   session has no other index), and only when no cheaper signal decided.
//! - [`LockTable`] tells whether lock files are held, on any filesystem.
//! - [`signal::signal_member`] signals a pid only once it is pinned and verified as a member.
//! - [`verdict::decide`] turns what the probes saw into alive, dead or foreign, as a pure
//!   function (csa-session gathers the evidence from the session's files).
//!
//! Invariants:
//! - **Unknown counts as alive.** Every function that cannot decide returns a value that callers
//!   treat as alive (fail closed): a session must never be declared dead by mistake, while a dead
//!   session wrongly seen as alive only waits for the next reconcile.
//! - **PID reuse is detected by the start time** ([`StartTime`]): on procfs field 22 of
//!   `/proc/<pid>/stat`, clock ticks (`sysconf(_SC_CLK_TCK)`, usually 100 per second) since
//!   boot; on the portable backend microseconds since the epoch (macOS) or whole seconds since
//!   boot (elsewhere). A PID whose start time differs from the recorded one belongs to another
//!   process; start times in units that cannot be compared are unknown.
//! - All `/proc` parsing of the project lives here and nowhere else.
//!
//! Platform support (docs/platforms.md): Linux with either backend; macOS with the portable
//! backend. On a platform where neither can read a process, existence comes from
//! `kill(pid, 0)` only and every ambiguous case reads as alive.

#![warn(missing_docs)]

pub mod backend;
pub mod cgroup;
mod host;
mod locks;
pub mod membership;
pub mod mountinfo;
pub mod observe;
pub mod platform;
mod probe;
pub mod signal;
mod start;
pub mod verdict;

pub use backend::{Backend, Selection};
pub use host::{HostIdentity, BOOT_TIME_SLACK};
pub use locks::{FileId, HeldLocks, LockState, LockTable};
pub use membership::{Membership, Released};
pub use observe::{observe, Identify};
pub use probe::{
    ancestors, cmdline_contains, environ_contains, group_is_running, probe, running_as, Probe,
};
pub use start::{clock_ticks_per_second, StartTime};
pub use verdict::{decide, Evidence, Verdict};

/// The start time of `pid` in the unit of the backend in use ([`StartTime`]).
///
/// Returns `None` when the process does not exist or its start time cannot be read.
pub fn start_time(pid: u32) -> Option<StartTime> {
    backend::start_time(pid)
}

/// The start ticks of `pid` (field 22 of `/proc/<pid>/stat`: clock ticks since boot), as the
/// procfs backend reads them.
///
/// Returns `None` when the process does not exist or its stat cannot be read or parsed, and
/// always on the portable backend, which has no clock ticks ([`start_time`] gives its unit).
pub fn start_ticks(pid: u32) -> Option<u64> {
    start_time(pid).and_then(StartTime::ticks)
}
