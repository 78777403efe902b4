//! The working-directory claim: at most one running session per project directory.
//!
//! The claim is a kernel lock: an exclusive `flock(2)` on `<project>/sessions/.csa-claim.lock`,
//! taken before a session is created and held until its turn is finalized, so there is no
//! window between "checked" and "claimed" (the failure class of guards that check "is anything
//! running?" and then mark their own run in a second step). The kernel releases it when every
//! process holding the open file is gone; nothing releases it by timer or timestamp.
//!
//! The holder writes who it is into the same file (a small JSON object) after taking the lock,
//! for the message a loser prints. That body is informational only: the flock decides.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::lock::{open_lock_file, rewrite_lock_body};

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

/// A held claim on a project directory; released on drop, or by the kernel when every process
/// holding it (the supervisor, and the agent, which inherits it) is gone.
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
    /// Another process holds it; its recorded holder, when readable.
    Busy(Option<ClaimHolder>),
}

impl DirClaim {
    /// Tries to claim the project whose sessions live in `sessions_dir` (created 0700 if
    /// missing), without waiting.
    ///
    /// # Errors
    /// I/O errors creating or opening the claim file, or of `flock` other than `EWOULDBLOCK`,
    /// naming the path.
    pub fn try_acquire(sessions_dir: &Path) -> io::Result<ClaimAttempt> {
        crate::create::create_private_dirs(sessions_dir)?;
        let path = sessions_dir.join(CLAIM_FILE);
        let file = open_lock_file(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(ClaimAttempt::Claimed(DirClaim { flock, path })),
            Err((file, Errno::EWOULDBLOCK)) => Ok(ClaimAttempt::Busy(read_holder(file))),
            Err((_, errno)) => Err(crate::atomic::with_path(errno.into(), "flock", &path)),
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

    /// The open claim file, for a child process to inherit (which then holds the claim too).
    /// Note that a child holding it keeps the directory claimed after this value is dropped.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.flock.as_fd()
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

/// How long a loser waits for the holder's record: the holder writes it right after taking
/// the flock, so an empty or stale record is only ever seen for microseconds, except after a
/// holder crashed.
const HOLDER_WAIT: Duration = Duration::from_secs(1);

/// Largest holder record read (bytes); csa writes about a hundred. Regression: a 100 MB claim
/// file was read whole by every loser (tests/cli/corpus.rs).
pub(crate) const MAX_HOLDER_BYTES: u64 = 64 << 10;

/// Reads the holder record of a busy claim: retried (every 5 ms, at most [`HOLDER_WAIT`])
/// while it is empty or names a supervisor that is not running, then the last record read.
/// At most [`MAX_HOLDER_BYTES`] are read (a longer record does not parse).
fn read_holder(mut file: File) -> Option<ClaimHolder> {
    let deadline = Instant::now() + HOLDER_WAIT;
    let mut last = None;
    loop {
        let mut body = Vec::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.by_ref().take(MAX_HOLDER_BYTES).read_to_end(&mut body));
        if let Ok(holder) = read
            .map_err(drop)
            .and_then(|_| serde_json::from_slice::<ClaimHolder>(&body).map_err(drop))
        {
            if csa_process::probe(holder.pid).is_running() {
                return Some(holder);
            }
            last = Some(holder);
        }
        if Instant::now() >= deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_at_a_time_and_the_loser_learns_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sessions = dir.path().join("sessions");
        let ClaimAttempt::Claimed(mut claim) = DirClaim::try_acquire(&sessions).expect("io") else {
            panic!("first claim must succeed");
        };
        let holder = ClaimHolder {
            session_id: "01M7YCZAQ6TZ9E7YGFW7ZMM2X7".into(),
            pid: std::process::id(),
            started_at: "2026-11-21T00:00:00Z".into(),
        };
        claim.record_holder(&holder).expect("record");
        match DirClaim::try_acquire(&sessions).expect("io") {
            ClaimAttempt::Busy(Some(h)) => assert_eq!(h, holder),
            other => panic!("{other:?}"),
        }
        drop(claim);
        assert!(matches!(
            DirClaim::try_acquire(&sessions).expect("io"),
            ClaimAttempt::Claimed(_)
        ));
    }
}
