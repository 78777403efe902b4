//! Which processes belong to a session: every process its agent started, whatever descriptors
//! they close, whether they call `setsid(2)`, and whether the supervisor lives. Two mechanisms,
//! the strongest available first (docs/lifecycle.md says which escapes what):
//!
//! - [`Membership::Cgroup`]: the session's cgroup v2 ([`crate::cgroup`]). Exact: a process
//!   leaves it only if something with write access to a cgroup above it moves it out.
//! - [`Membership::ProcessSession`]: the process session the supervisor created for the agent
//!   (`setsid(2)`: its sid is the agent's pid), plus every process of this user whose
//!   environment carries the session's marker `CSA_SESSION_ID=<ULID>` (inherited by every
//!   descendant that does not clear its environment, which covers the processes that call
//!   `setsid` themselves, like daemons). Found by listing the process table through the
//!   backend in use ([`crate::backend::table`]: `/proc`, or sysinfo's process list on the
//!   portable backend, which never has a cgroup). A process that both leaves the process
//!   session and drops or replaces the marker escapes.
//!
//! The session id of a process session cannot be reused while any process is in that session
//! (the kernel keeps a pid in use as long as it names a session or group), so a member found by
//! its sid is the session's. Once every member has exited, the number is free: a new process
//! could get it and lead a new session, so when the process whose pid is the sid is running
//! with a start time other than the agent's, the sid no longer names the session.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use crate::backend::{self, ProcessStat};
use crate::cgroup::SessionCgroup;
use crate::observe::marker_entry;
use crate::StartTime;

/// How a session's processes are identified (recorded in csa's own files when the turn
/// starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// The session's cgroup v2 directory.
    Cgroup {
        /// Its path under the cgroup2 mount.
        path: PathBuf,
    },
    /// The agent's process session, and the marker.
    ProcessSession {
        /// The session id (the agent's pid); `None` before the agent runs, when only the
        /// marker identifies members.
        sid: Option<u32>,
        /// The start time of the session's leader (the agent), to tell a reused sid.
        leader_start: Option<StartTime>,
    },
}

/// A process a session lets go of knowingly (`csa run --leave-running`): it and its
/// descendants are not members any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Its pid.
    pub pid: u32,
    /// Its start time.
    pub start: StartTime,
}

impl Membership {
    /// A short description for messages: `cgroup /sys/fs/cgroup/…/csa-<ULID>`, `process
    /// session 4242`.
    pub fn describe(&self) -> String {
        match self {
            Membership::Cgroup { path } => format!("cgroup {}", path.display()),
            Membership::ProcessSession { sid: Some(sid), .. } => format!("process session {sid}"),
            Membership::ProcessSession { sid: None, .. } => "CSA_SESSION_ID marker".to_owned(),
        }
    }

    /// The live processes of session `id` (its ULID), except `exclude` (the supervisor) and,
    /// for a process session, the `released` ones and their descendants.
    ///
    /// # Errors
    /// The cgroup cannot be read, or the process table cannot be listed (no `/proc`): callers
    /// count the session as alive (fail closed).
    pub fn members(
        &self,
        id: &str,
        exclude: &[u32],
        released: &[Released],
    ) -> io::Result<Vec<u32>> {
        let mut pids = match self {
            Membership::Cgroup { path } => match SessionCgroup::recorded(path, id) {
                Some(cgroup) => cgroup.members()?,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: not session {id}'s cgroup", path.display()),
                    ))
                }
            },
            Membership::ProcessSession { sid, leader_start } => {
                scan(id, *sid, *leader_start, released)?
            }
        };
        pids.retain(|pid| !exclude.contains(pid));
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Whether `pid` is a live member of session `id` right now (before it is signalled).
    /// Fails closed the other way: anything that cannot be read makes it *not* a member, so
    /// no signal is sent on doubt.
    pub fn contains(&self, id: &str, pid: u32) -> bool {
        match self {
            Membership::Cgroup { path } => SessionCgroup::recorded(path, id)
                .is_some_and(|cgroup| cgroup.contains(pid).unwrap_or(false)),
            Membership::ProcessSession { sid, leader_start } => {
                let Ok(stat) = backend::stat(pid) else {
                    return false;
                };
                let by_sid = sid.is_some_and(|sid| {
                    sid > 0 && stat.sid == sid && sid_is_ours(sid, *leader_start)
                });
                by_sid || has_marker(pid, id) == Some(true)
            }
        }
    }
}

/// Whether the process whose environment is readable has `CSA_SESSION_ID=<id>`.
fn has_marker(pid: u32, id: &str) -> Option<bool> {
    crate::environ_contains(pid, marker_entry(id).as_bytes())
}

/// Whether `sid` still names the session whose leader started at `leader_start`: its leader is
/// gone (the sid stays reserved while members remain), or is still that process (or its start
/// cannot be compared: unknown counts as ours).
fn sid_is_ours(sid: u32, leader_start: Option<StartTime>) -> bool {
    let now = backend::stat(sid).ok().and_then(|leader| leader.start);
    match (leader_start, now) {
        (Some(recorded), Some(now)) => StartTime::same_process(recorded, now) != Some(false),
        _ => true,
    }
}

/// Lists the process table: members by sid or by marker, minus the released and their
/// descendants.
fn scan(
    id: &str,
    sid: Option<u32>,
    leader_start: Option<StartTime>,
    released: &[Released],
) -> io::Result<Vec<u32>> {
    let euid = nix::unistd::geteuid().as_raw();
    let sid = sid.filter(|&sid| sid > 0 && sid_is_ours(sid, leader_start));
    let table: HashMap<u32, ProcessStat> = backend::table()?.into_iter().collect();
    let is_released = |mut pid: u32| {
        // Walk up the parent chain (bounded: pid 1 and cycles stop it).
        for _ in 0..64 {
            let Some(stat) = table.get(&pid) else {
                return false;
            };
            if released.iter().any(|r| {
                r.pid == pid
                    && stat
                        .start
                        .is_some_and(|now| StartTime::same_process(r.start, now) == Some(true))
            }) {
                return true;
            }
            if stat.ppid <= 1 || stat.ppid == pid {
                return false;
            }
            pid = stat.ppid;
        }
        false
    };
    let mut members = Vec::new();
    for (&pid, stat) in &table {
        if !stat.is_live() {
            continue;
        }
        let by_sid = sid == Some(stat.sid);
        // Only this user's environments are readable; reading them is the costly part, so
        // only for processes not already members.
        let owner = stat.uid.map_or_else(|| backend::owner_uid(pid).ok(), Some);
        let by_marker = !by_sid && owner == Some(euid) && has_marker(pid, id) == Some(true);
        if (by_sid || by_marker) && !is_released(pid) {
            members.push(pid);
        }
    }
    Ok(members)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_process_session_and_the_marker_find_every_member() {
        let id = ulid_like();
        // A shell in a new session (setsid) that starts a child which calls setsid itself and
        // keeps the marker: both are members.
        let mut leader = Command::new("setsid")
            .args(["-w", "sh", "-c", "setsid sleep 30 & sleep 30"])
            .env("CSA_SESSION_ID", &id)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        // setsid(1) forks when it is a group leader: find the shell by the marker and wait
        // until both sleeps run.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let membership = loop {
            let found: Vec<u32> = backend::table()
                .expect("table")
                .into_iter()
                .map(|(p, _)| p)
                .filter(|&p| has_marker(p, &id) == Some(true))
                .collect();
            let sleeps = found
                .iter()
                .filter(|&&p| crate::cmdline_contains(p, &[b"sleep\x0030"]) == Some(true))
                .count();
            if sleeps == 2 {
                let shell = found
                    .iter()
                    .copied()
                    .find(|&p| crate::cmdline_contains(p, &[b"sh\0-c"]) == Some(true))
                    .expect("the shell");
                let stat = backend::stat(shell).expect("stat");
                break Membership::ProcessSession {
                    sid: Some(stat.sid),
                    leader_start: backend::start_time(stat.sid),
                };
            }
            assert!(
                std::time::Instant::now() < deadline,
                "members never started"
            );
            std::thread::yield_now();
        };
        let members = membership.members(&id, &[], &[]).expect("members");
        assert_eq!(
            members.len(),
            3,
            "shell, its sleep, the setsid sleep: {members:?}"
        );
        for &pid in &members {
            assert!(membership.contains(&id, pid));
        }
        assert!(!membership.contains(&id, std::process::id()));
        for pid in members {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = leader.kill();
        let _ = leader.wait();
    }

    fn ulid_like() -> String {
        format!("01M7YCZAQ6TZ9E7YGFW{:07}", std::process::id() % 10_000_000)
    }
}
