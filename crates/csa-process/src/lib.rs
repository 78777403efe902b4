//! Process identity and liveness for csa sessions.
//!
//! This crate answers one question about one PID at a time: "is this process alive, and is it
//! the one that was recorded?". Every probe is a targeted read of `/proc/<pid>/…` (Linux) plus
//! `kill(pid, 0)`; the process table is listed only by [`group_is_running`], because nothing
//! else names the members of a process group.
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

mod host;
mod locks;
pub mod platform;
mod probe;

pub use host::HostIdentity;
pub use locks::{FileId, HeldLocks};
pub use probe::{cmdline_contains, environ_contains, group_is_running, probe, Probe};

/// Reads the start ticks of `pid` (field 22 of `/proc/<pid>/stat`: clock ticks since boot).
///
/// Returns `None` when the process does not exist or its stat cannot be read or parsed (and
/// always on platforms without `/proc`).
pub fn start_ticks(pid: u32) -> Option<u64> {
    platform::stat(pid).ok().map(|s| s.start_ticks)
}
