//! `membership.toml`: csa's own record of who runs a session's current turn (upstream never
//! reads it): the supervisor and the agent (pid and start time), how the session's processes
//! are identified (a cgroup v2, or the agent's process session plus the marker
//! `CSA_SESSION_ID=<ULID>`: csa-process `Membership`), whether the turn holds the directory
//! claim or runs nested under another session's, and what the turn's end did with leftover
//! processes.
//!
//! ```toml
//! turn = 1
//! boot_id = "6b1d…"                 # the boot it was written in; in another boot it means nothing
//! boot_time = 1733300000            # portable backend instead of boot_id: boot start, Unix seconds
//! claim = "held"                    # "held", "nested" (under `nested_in`'s claim) or "none"
//! nested_in = "01J…"                # with claim = "nested"
//! mechanism = "cgroup"              # or "process-session"
//! cgroup = "/sys/fs/cgroup/…/csa-01J…"
//! sid = 4242                        # process-session: the agent's pid, once it runs
//! interactive = true                # csa run --tty: the supervisor serves a pseudo-terminal
//! [supervisor]
//! pid = 4200
//! start_ticks = 123456              # procfs; or start_time_us (macOS), start_time_boot_s
//! [agent]                           # once spawned
//! pid = 4242
//! start_ticks = 123460
//! [[released]]                      # csa run --leave-running: no longer members
//! pid = 4300
//! start_ticks = 123999
//! ```
//!
//! Written with the store's atomic writer by the supervisor (boot-scoped: renamed into place
//! without fsync, since in another boot it names nothing): before the agent is spawned (so a
//! crashed supervisor never leaves an agent nobody can find: the agent is born a member), and
//! again once it runs. A record that does not parse names nothing and is a warning.

use std::io;
use std::path::{Path, PathBuf};

use csa_process::{Membership, Released, StartTime};
use serde::{Deserialize, Serialize};

use crate::atomic::{write_atomic, Publish};
use crate::dirfd::StoreDir;

/// File name of the record, in the session directory.
pub const MEMBERSHIP_FILE: &str = "membership.toml";
/// Largest record read (bytes).
const MAX_RECORD: u64 = 64 << 10;

/// How the turn relates to the directory claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimRole {
    /// The turn holds its project directory's claim.
    Held,
    /// The turn runs nested under an ancestor session's claim (`nested_in`).
    Nested,
    /// No claim (`--allow-concurrent`).
    #[default]
    None,
}

/// The mechanism that identifies the session's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// A cgroup v2 per session.
    Cgroup,
    /// The agent's process session and the marker.
    ProcessSession,
}

/// A process and its start time, under the key of the start time's unit (csa-process
/// `StartTime`; at most one is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Its pid.
    pub pid: u32,
    /// Its start ticks (clock ticks since boot; procfs backend), when readable.
    pub start_ticks: Option<u64>,
    /// Its start in microseconds since the Unix epoch (portable backend on macOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_us: Option<u64>,
    /// Its start in whole seconds since boot (portable backend elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_boot_s: Option<u64>,
}

impl ProcessId {
    /// `pid` with its start time `start` (as csa-process read it), under its unit's key.
    pub fn new(pid: u32, start: Option<StartTime>) -> Self {
        ProcessId {
            pid,
            start_ticks: start.and_then(StartTime::ticks),
            start_time_us: start.and_then(StartTime::micros),
            start_time_boot_s: start.and_then(StartTime::boot_seconds),
        }
    }

    /// The recorded start time, whichever its unit.
    pub fn start(&self) -> Option<StartTime> {
        StartTime::from_recorded(self.start_ticks, self.start_time_us, self.start_time_boot_s)
    }
}

/// A released process (`--leave-running`), with its start time under its unit's key (one of
/// the three is present).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedProcess {
    /// Its pid.
    pub pid: u32,
    /// Its start ticks (procfs backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// Its start in microseconds since the Unix epoch (portable backend on macOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_us: Option<u64>,
    /// Its start in whole seconds since boot (portable backend elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_boot_s: Option<u64>,
}

impl ReleasedProcess {
    /// `pid` with its start time `start`.
    pub fn new(pid: u32, start: StartTime) -> Self {
        ReleasedProcess {
            pid,
            start_ticks: start.ticks(),
            start_time_us: start.micros(),
            start_time_boot_s: start.boot_seconds(),
        }
    }
}

/// The record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRecord {
    /// The turn it describes.
    pub turn: u32,
    /// The boot it was written in (`/proc/sys/kernel/random/boot_id`; procfs backend).
    pub boot_id: Option<String>,
    /// The boot it was written in, by its start in seconds since the Unix epoch (portable
    /// backend, which has no boot id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<u64>,
    /// The claim the turn runs under.
    #[serde(default)]
    pub claim: ClaimRole,
    /// With [`ClaimRole::Nested`]: the session whose claim it runs under.
    pub nested_in: Option<String>,
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The cgroup's directory, with [`Mechanism::Cgroup`].
    pub cgroup: Option<PathBuf>,
    /// The process session id (the agent's pid), with [`Mechanism::ProcessSession`] once the
    /// agent runs.
    pub sid: Option<u32>,
    /// The supervisor.
    pub supervisor: ProcessId,
    /// The agent, once spawned.
    pub agent: Option<ProcessId>,
    /// Whether the turn runs on a pseudo-terminal its supervisor serves (`csa run --tty`):
    /// people can attach to it while its supervisor lives.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interactive: bool,
    /// Processes let go with `--leave-running`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<ReleasedProcess>,
}

impl MembershipRecord {
    /// The membership it records (for a process session before the agent runs, the marker
    /// alone identifies members); `None` for a cgroup record without its path.
    pub fn membership(&self) -> Option<Membership> {
        match self.mechanism {
            Mechanism::Cgroup => self.cgroup.clone().map(|path| Membership::Cgroup { path }),
            Mechanism::ProcessSession => Some(Membership::ProcessSession {
                sid: self.sid,
                leader_start: self
                    .agent
                    .filter(|a| Some(a.pid) == self.sid)
                    .and_then(|a| a.start()),
            }),
        }
    }

    /// The released processes, as csa-process takes them (an entry without a start time
    /// cannot be told from a reused pid and releases nothing).
    pub fn released(&self) -> Vec<Released> {
        self.released
            .iter()
            .filter_map(|r| {
                Some(Released {
                    pid: r.pid,
                    start: StartTime::from_recorded(
                        r.start_ticks,
                        r.start_time_us,
                        r.start_time_boot_s,
                    )?,
                })
            })
            .collect()
    }

    /// Reads the record of the session directory `dir`; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// An unreadable file, or one that does not parse (`InvalidData`), naming the path.
    pub fn load(dir: &StoreDir) -> io::Result<Option<Self>> {
        let path = dir.join(MEMBERSHIP_FILE);
        let bytes = match dir.read_capped(MEMBERSHIP_FILE, MAX_RECORD) {
            Ok((bytes, _)) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| invalid(&path, &e))?;
        toml::from_str(text)
            .map(Some)
            .map_err(|e| invalid(&path, &e))
    }

    /// Writes the record into the session directory `dir` (replacing the previous one).
    ///
    /// # Errors
    /// The atomic writer's errors, naming the path.
    pub fn store(&self, dir: &StoreDir) -> io::Result<()> {
        let text = toml::to_string(self).map_err(io::Error::other)?;
        crate::failpoint!("membership::store", "write", &dir.join(MEMBERSHIP_FILE))?;
        // Boot-scoped: in another boot the record names nothing, so it needs no fsync.
        write_atomic(
            dir,
            MEMBERSHIP_FILE,
            text.as_bytes(),
            0o600,
            Publish::ReplaceBootScoped,
        )
    }
}

fn invalid(path: &Path, err: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: does not parse ({}); it names no process",
            path.display(),
            crate::state::one_line(err)
        ),
    )
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_its_membership() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = crate::dirfd::test_dir(tmp.path());
        assert_eq!(MembershipRecord::load(&dir).expect("load"), None);
        let mut record = MembershipRecord {
            turn: 1,
            boot_id: Some("b".into()),
            boot_time: None,
            claim: ClaimRole::Held,
            nested_in: None,
            mechanism: Mechanism::ProcessSession,
            cgroup: None,
            sid: None,
            supervisor: ProcessId::new(10, Some(StartTime::Ticks(1))),
            agent: None,
            released: Vec::new(),
            interactive: true,
        };
        assert_eq!(
            record.membership(),
            Some(Membership::ProcessSession {
                sid: None,
                leader_start: None
            })
        );
        record.sid = Some(11);
        record.agent = Some(ProcessId::new(11, Some(StartTime::Micros(2))));
        record.store(&dir).expect("store");
        // Each start time under its own unit's key, never under another's.
        let text = fs_err::read_to_string(tmp.path().join(MEMBERSHIP_FILE)).expect("read");
        let agent = text.split("[agent]").nth(1).expect("[agent]");
        assert!(agent.contains("start_time_us = 2"), "{text}");
        assert!(!agent.contains("start_ticks"), "{text}");
        let loaded = MembershipRecord::load(&dir).expect("load").expect("some");
        assert_eq!(loaded, record);
        assert_eq!(
            loaded.membership(),
            Some(Membership::ProcessSession {
                sid: Some(11),
                leader_start: Some(StartTime::Micros(2))
            })
        );
        fs_err::write(tmp.path().join(MEMBERSHIP_FILE), "turn = \"x\"").expect("write");
        let err = MembershipRecord::load(&dir).expect_err("garbage");
        assert!(err.to_string().contains(MEMBERSHIP_FILE), "{err}");
    }
}
