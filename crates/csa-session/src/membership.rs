//! `membership.toml`: csa's own record of who runs a session's current turn (upstream never
//! reads it): the supervisor and the agent (pid and start ticks), how the session's processes
//! are identified (a cgroup v2, or the agent's process session plus the marker
//! `CSA_SESSION_ID=<ULID>`: csa-process `Membership`), whether the turn holds the directory
//! claim or runs nested under another session's, and what the turn's end did with leftover
//! processes.
//!
//! ```toml
//! turn = 1
//! boot_id = "6b1d…"                 # the boot it was written in; in another boot it means nothing
//! claim = "held"                    # "held", "nested" (under `nested_in`'s claim) or "none"
//! nested_in = "01J…"                # with claim = "nested"
//! mechanism = "cgroup"              # or "process-session"
//! cgroup = "/sys/fs/cgroup/…/csa-01J…"
//! sid = 4242                        # process-session: the agent's pid, once it runs
//! interactive = true                # csa run --tty: the supervisor serves a pseudo-terminal
//! [supervisor]
//! pid = 4200
//! start_ticks = 123456
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

use csa_process::{Membership, Released};
use serde::{Deserialize, Serialize};

use crate::atomic::{write_atomic, Publish};

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

/// A process and its start ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Its pid.
    pub pid: u32,
    /// Its start ticks (clock ticks since boot), when readable.
    pub start_ticks: Option<u64>,
}

/// A released process (`--leave-running`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedProcess {
    /// Its pid.
    pub pid: u32,
    /// Its start ticks.
    pub start_ticks: u64,
}

/// The record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRecord {
    /// The turn it describes.
    pub turn: u32,
    /// The boot it was written in (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: Option<String>,
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
    /// Whether the turn runs on a pseudo-terminal its supervisor serves (`csa run --tty`):
    /// people can attach to it while its supervisor lives.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interactive: bool,
    /// The supervisor.
    pub supervisor: ProcessId,
    /// The agent, once spawned.
    pub agent: Option<ProcessId>,
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
                leader_ticks: self
                    .agent
                    .filter(|a| Some(a.pid) == self.sid)
                    .and_then(|a| a.start_ticks),
            }),
        }
    }

    /// The released processes, as csa-process takes them.
    pub fn released(&self) -> Vec<Released> {
        self.released
            .iter()
            .map(|r| Released {
                pid: r.pid,
                start_ticks: r.start_ticks,
            })
            .collect()
    }

    /// Reads the record of `session_dir`; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// An unreadable file, or one that does not parse (`InvalidData`), naming the path.
    pub fn load(session_dir: &Path) -> io::Result<Option<Self>> {
        let path = session_dir.join(MEMBERSHIP_FILE);
        let bytes = match crate::read_capped(&path, MAX_RECORD) {
            Ok((bytes, _)) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| invalid(&path, &e))?;
        toml::from_str(text)
            .map(Some)
            .map_err(|e| invalid(&path, &e))
    }

    /// Writes the record into `session_dir` (replacing the previous one).
    ///
    /// # Errors
    /// The atomic writer's errors, naming the path.
    pub fn store(&self, session_dir: &Path) -> io::Result<()> {
        let text = toml::to_string(self).map_err(io::Error::other)?;
        crate::failpoint!(
            "membership::store",
            "write",
            &session_dir.join(MEMBERSHIP_FILE)
        )?;
        // Boot-scoped: in another boot the record names nothing, so it needs no fsync.
        write_atomic(
            session_dir,
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
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_its_membership() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(MembershipRecord::load(dir.path()).expect("load"), None);
        let mut record = MembershipRecord {
            turn: 1,
            boot_id: Some("b".into()),
            claim: ClaimRole::Held,
            nested_in: None,
            mechanism: Mechanism::ProcessSession,
            cgroup: None,
            sid: None,
            interactive: true,
            supervisor: ProcessId {
                pid: 10,
                start_ticks: Some(1),
            },
            agent: None,
            released: Vec::new(),
        };
        assert_eq!(
            record.membership(),
            Some(Membership::ProcessSession {
                sid: None,
                leader_ticks: None
            })
        );
        record.sid = Some(11);
        record.agent = Some(ProcessId {
            pid: 11,
            start_ticks: Some(2),
        });
        record.store(dir.path()).expect("store");
        let loaded = MembershipRecord::load(dir.path())
            .expect("load")
            .expect("some");
        assert_eq!(loaded, record);
        assert_eq!(
            loaded.membership(),
            Some(Membership::ProcessSession {
                sid: Some(11),
                leader_ticks: Some(2)
            })
        );
        fs_err::write(dir.path().join(MEMBERSHIP_FILE), "turn = \"x\"").expect("write");
        let err = MembershipRecord::load(dir.path()).expect_err("garbage");
        assert!(err.to_string().contains(MEMBERSHIP_FILE), "{err}");
    }
}
