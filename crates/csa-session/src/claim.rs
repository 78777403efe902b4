//! The working-directory claim: at most one running session per project directory.
//!
//! Two parts, so that the claim never rests on an agent inheriting a descriptor:
//! - **Mutual exclusion among csa processes**: an exclusive `flock(2)` on
//!   `<project>/sessions/.csa-claim.lock`, held by the supervisor from before its session exists
//!   until its turn is finalized (never passed to the agent: a lock shared with the agent's tree
//!   would be released for all of them by the supervisor's unlock, and lost by an agent that
//!   closes inherited descriptors). So there is no window between "checked" and "claimed".
//! - **The processes of the last holder**: once the flock is taken, the project's sessions that
//!   may be active (its active record) and whose turn held a claim or ran nested under one
//!   (their `membership.toml`) are checked for a live process ([`crate::liveness`], processes
//!   only, no grace for fresh output): while any session process still runs in the directory
//!   (a killed supervisor's agent, a background child it left), the directory is busy, and the
//!   loser is told which process holds it.
//!
//! The holder writes who it is into the claim file (a small JSON object) after taking the lock,
//! for the message a loser prints while the flock is held. That body is informational only.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::active::ActiveRecord;
use crate::dirfd::StoreDir;
use crate::liveness::{gather, LivenessContext};
use crate::lock::rewrite_lock_body;
use crate::membership::{ClaimRole, MembershipRecord};
use crate::paths::{open_session_in, Project};
use crate::state::SessionState;

/// File name of the claim, in the project's `sessions/` directory.
pub const CLAIM_FILE: &str = ".csa-claim.lock";

/// Who holds a claim, as its holder recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimHolder {
    /// The session running in the directory.
    pub session_id: String,
    /// The supervising csa process.
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started_at: String,
}

/// Who keeps a directory busy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// The session running in the directory, when known.
    pub session_id: Option<String>,
    /// The live process that holds it, when known.
    pub pid: Option<u32>,
    /// What that process is: `its supervisor (holds the claim)`, `daemon.pid`,
    /// `locks/codex.lock`, `member of the cgroup …`.
    pub role: String,
    /// When the session's turn started (RFC 3339), when recorded.
    pub started_at: Option<String>,
    /// The holding session's agent has exited and only its supervisor remains, finishing the
    /// turn (stopping leftovers, publishing the result): the directory is free in a moment.
    pub finishing: bool,
}

/// A held claim on a project directory; released on drop, or by the kernel when the
/// supervisor holding it is gone.
#[derive(Debug)]
pub struct DirClaim {
    flock: Flock<File>,
    path: PathBuf,
}

/// The outcome of trying to claim a directory.
#[derive(Debug)]
pub enum ClaimAttempt {
    /// Claimed.
    Claimed(DirClaim),
    /// Busy.
    Busy(Busy),
}

impl DirClaim {
    /// Tries to claim `project`'s directory (its `sessions/` is created 0700 if missing),
    /// without waiting (see the module docs).
    ///
    /// # Errors
    /// I/O errors creating or opening the claim file, or of `flock` other than `EWOULDBLOCK`,
    /// naming the path; a refused directory (a link in place of `sessions/`, say) as an error
    /// of kind `PermissionDenied` with the refusal's message.
    pub fn try_acquire(project: &Project) -> io::Result<ClaimAttempt> {
        let sessions = project.create_sessions()?;
        let path = sessions.join(CLAIM_FILE);
        let mut file = sessions.open_lock(CLAIM_FILE)?;
        // Busy: read who holds it. A holder that is letting go clears its record just before
        // its flock goes (and a crashed one leaves a stale record): while the record is empty
        // or names a supervisor that is not running, try the flock again, for at most
        // HOLDER_WAIT. Regression: a run right after the previous turn was told "busy: another
        // csa run", because it read the cleared record in that instant.
        let deadline = Instant::now() + HOLDER_WAIT;
        let flock = loop {
            file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => break flock,
                Err((file, Errno::EWOULDBLOCK)) => file,
                Err((_, errno)) => {
                    return Err(crate::atomic::with_path(errno.into(), "flock", &path))
                }
            };
            let holder = read_holder(&mut file);
            let live = holder
                .as_ref()
                .is_some_and(|h| csa_process::probe(h.pid).is_running());
            if live || Instant::now() >= deadline {
                let finishing = holder.as_ref().is_some_and(|h| {
                    open_session_in(&sessions, &h.session_id).is_ok_and(|d| agent_exited(&d))
                });
                return Ok(ClaimAttempt::Busy(Busy {
                    session_id: holder.as_ref().map(|h| h.session_id.clone()),
                    pid: holder.as_ref().map(|h| h.pid),
                    role: "its supervisor, which holds the claim".to_owned(),
                    started_at: holder.map(|h| h.started_at),
                    finishing,
                }));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let claim = DirClaim { flock, path };
        match live_claimant(&sessions) {
            // Dropping the claim releases the flock (and clears nothing a live holder wrote:
            // the body was cleared by its writer, or names a dead one).
            Some(busy) => Ok(ClaimAttempt::Busy(busy)),
            None => Ok(ClaimAttempt::Claimed(claim)),
        }
    }

    /// Records the holder in the claim file (in place: the flock is on this inode).
    ///
    /// # Errors
    /// I/O errors of the write, naming the path.
    pub fn record_holder(&mut self, holder: &ClaimHolder) -> io::Result<()> {
        let body = serde_json::to_string(holder).map_err(io::Error::other)?;
        crate::failpoint!("claim::record_holder", "write", &self.path)?;
        rewrite_lock_body(&mut self.flock, &self.path, body.as_bytes())
    }
}

impl Drop for DirClaim {
    /// Clears the holder record before the flock is released, so the next loser never reads
    /// a finished holder's record (a crashed holder's stays; see `read_holder`).
    fn drop(&mut self) {
        let file: &mut File = &mut self.flock;
        let _ = file.set_len(0);
    }
}

/// A session of `project` that may be active, ran its turn under a claim (held or nested), and
/// still has a live process: the directory is still in use. Fails closed: a session whose
/// files cannot be read while it may be active keeps the directory busy.
fn live_claimant(sessions: &StoreDir) -> Option<Busy> {
    let ids = match ActiveRecord::new(sessions).ids() {
        Ok(ids) => ids,
        Err(err) => {
            return Some(Busy {
                session_id: None,
                pid: None,
                role: format!("the active-session record cannot be read ({err})"),
                started_at: None,
                finishing: false,
            })
        }
    };
    let ctx = LivenessContext::new();
    for id in ids {
        let dir = match open_session_in(sessions, &id) {
            Ok(dir) => dir,
            // No directory (yet, or any more): no process of it to wait for.
            Err(crate::StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Some(Busy {
                    session_id: Some(id),
                    pid: None,
                    role: format!("its directory cannot be opened ({err})"),
                    started_at: None,
                    finishing: false,
                })
            }
        };
        let record = match MembershipRecord::load(&dir) {
            Ok(Some(record)) => record,
            // No record: not a turn csa ran under a claim (or its directory is gone).
            Ok(None) => continue,
            Err(err) if err.kind() == io::ErrorKind::InvalidData => continue,
            Err(_) => {
                return Some(Busy {
                    session_id: Some(id),
                    pid: None,
                    role: "its membership record cannot be read".to_owned(),
                    started_at: None,
                    finishing: false,
                })
            }
        };
        if record.claim == ClaimRole::None {
            continue;
        }
        match SessionState::load(&dir) {
            Ok(state) if state.view.phase.is_ended() => continue,
            _ => {}
        }
        // Processes only: a turn whose every process is gone frees the directory, even while
        // its output is fresh enough to keep reconcile away.
        let (evidence, _) = gather(&ctx, &dir, &id, false);
        if csa_process::decide(&evidence).is_alive() {
            let (pid, role) = match csa_process::verdict::witness(&evidence) {
                Some((pid, role)) => (Some(pid), role),
                None => (None, "a process of the session".to_owned()),
            };
            // Only the supervisor is left when the witness is it and the agent has exited.
            let finishing = pid == Some(record.supervisor.pid) && agent_exited(&dir);
            return Some(Busy {
                session_id: Some(id),
                pid,
                role,
                started_at: None,
                finishing,
            });
        }
    }
    None
}

/// Whether the agent recorded in the session's membership record has exited (its pid names no
/// running process with its start time). `false` when there is no record or no agent yet.
fn agent_exited(session_dir: &StoreDir) -> bool {
    let Ok(Some(record)) = MembershipRecord::load(session_dir) else {
        return false;
    };
    let Some(agent) = record.agent else {
        return false;
    };
    match csa_process::probe(agent.pid) {
        csa_process::Probe::Running { start_time } => {
            matches!(
                agent.start().zip(start_time),
                Some((recorded, now)) if csa_process::StartTime::same_process(recorded, now) == Some(false)
            )
        }
        _ => true,
    }
}

/// How long a loser looks again at a busy claim whose record is empty or names a supervisor
/// that is not running: the holder writes it right after taking the flock and clears it just
/// before letting go, so that is only ever seen for microseconds, except after a holder
/// crashed.
const HOLDER_WAIT: Duration = Duration::from_secs(1);

/// Largest holder record read (bytes); csa writes about a hundred. Regression: a 100 MB claim
/// file was read whole by every loser (tests/cli/corpus.rs).
pub(crate) const MAX_HOLDER_BYTES: u64 = 64 << 10;

/// Reads the holder record of a busy claim, at most [`MAX_HOLDER_BYTES`] (a longer record does
/// not parse); `None` when it is empty or does not parse.
fn read_holder(file: &mut File) -> Option<ClaimHolder> {
    let mut body = Vec::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.by_ref()
        .take(MAX_HOLDER_BYTES)
        .read_to_end(&mut body)
        .ok()?;
    serde_json::from_slice::<ClaimHolder>(&body).ok()
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_at_a_time_and_the_loser_learns_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = Project::new(dir.path(), "p");
        let ClaimAttempt::Claimed(mut claim) = DirClaim::try_acquire(&project).expect("io") else {
            panic!("first claim must succeed");
        };
        let holder = ClaimHolder {
            session_id: "01M7YCZAQ6TZ9E7YGFW7ZMM2X7".into(),
            pid: std::process::id(),
            started_at: "2026-11-21T00:00:00Z".into(),
        };
        claim.record_holder(&holder).expect("record");
        match DirClaim::try_acquire(&project).expect("io") {
            ClaimAttempt::Busy(busy) => {
                assert_eq!(busy.session_id.as_deref(), Some(holder.session_id.as_str()));
                assert_eq!(busy.pid, Some(holder.pid));
            }
            other => panic!("{other:?}"),
        }
        drop(claim);
        assert!(matches!(
            DirClaim::try_acquire(&project).expect("io"),
            ClaimAttempt::Claimed(_)
        ));
    }
}
