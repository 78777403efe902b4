//! Process liveness for csa sessions: the probes, the session's membership, verified signals
//! and the verdict.
//!
//! - Probes answer one question about one pid at a time: "is this process alive, and is it the
//!   one that was recorded?" ([`probe`], [`observe()`]): a targeted read of `/proc/<pid>/…`
//!   (Linux) plus `kill(pid, 0)`.
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
//! - **PID reuse is detected by start ticks**: field 22 of `/proc/<pid>/stat`, the process start
//!   time in clock ticks (`sysconf(_SC_CLK_TCK)`, usually 100 per second) since boot. A PID whose
//!   start ticks differ from the recorded ones belongs to another process.
//! - All `/proc` parsing of the project lives here and nowhere else.
//!
//! Platform support: the probes are implemented for Linux (`/proc`). On other platforms
//! ([`platform`] fallback) process existence comes from `kill(pid, 0)` only, start ticks,
//! command lines and environments are unknown, and held flocks cannot be listed, so every
//! ambiguous case reads as alive.

#![warn(missing_docs)]

pub mod cgroup;
mod host;
mod locks;
pub mod membership;
pub mod mountinfo;
pub mod observe;
pub mod platform;
mod probe;
pub mod signal;
pub mod verdict;

pub use host::HostIdentity;
pub use locks::{FileId, HeldLocks, LockState, LockTable};
pub use membership::{Membership, Released};
pub use observe::{observe, Identify};
pub use probe::{ancestors, cmdline_contains, environ_contains, group_is_running, probe, Probe};
pub use verdict::{decide, Evidence, Verdict};

/// Reads the start ticks of `pid` (field 22 of `/proc/<pid>/stat`: clock ticks since boot).
///
/// Returns `None` when the process does not exist or its stat cannot be read or parsed (and
/// always on platforms without `/proc`).
pub fn start_ticks(pid: u32) -> Option<u64> {
    platform::stat(pid).ok().map(|s| s.start_ticks)
}
