//! Why a turn could not be launched. The CLI maps each variant to its exit code and hint.

use std::path::PathBuf;

use csa_session::claim::Busy;
use csa_session::resume::Refusal;
use csa_session::StoreError;

use crate::contain::ContainError;
use crate::spawn::SpawnError;

/// Why a turn could not be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A bad request: an unusable `--cd`, tool name or parent (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The project directory is claimed by a running session (exit 75).
    #[error("{} is busy: {}", dir.display(), describe(busy))]
    Busy {
        /// The project directory.
        dir: PathBuf,
        /// Who holds it.
        busy: Busy,
    },
    /// The agent could not be started after its session existed (exit 127, 126 or 1); the
    /// session was retired as `spawn_failed` unless `retire_error` says why not.
    #[error("{error}")]
    Spawn {
        /// What failed.
        error: SpawnError,
        /// The session.
        session_id: String,
        /// Why the session could not be retired, if it could not.
        retire_error: Option<String>,
    },
    /// The turn ended but could not be finalized (a full disk, say; exit 3): its outcome is
    /// kept in its completion record (`kept`, csa-session `turn_end`), from which reconcile
    /// finalizes it once it can write.
    #[error("session {session_id}'s turn ended (exit status {exit_code}) but could not be finalized: {error}")]
    Unfinalized {
        /// The session.
        session_id: String,
        /// The agent's exit status (its code, or 128 + N).
        exit_code: u8,
        /// The completion record holding the outcome, when it could be written.
        kept: Option<PathBuf>,
        /// Why finalizing failed.
        #[source]
        error: StoreError,
    },
    /// The turn's processes could not be contained (exit 3).
    #[error(transparent)]
    Contain(#[from] ContainError),
    /// `csa session resume` refused (exit 75, or 2 for a missing command).
    #[error(transparent)]
    Resume(#[from] Refusal),
    /// The store failed (exit per the store error).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Any other I/O error, naming its path (exit 3).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `session 01J… (its supervisor, pid 42, running since …)`.
pub fn describe(busy: &Busy) -> String {
    let mut who = match &busy.session_id {
        Some(id) => format!("session {id}"),
        None => "another csa run".to_owned(),
    };
    let mut details = Vec::new();
    if let Some(pid) = busy.pid {
        details.push(format!("pid {pid}, {}", busy.role));
    } else {
        details.push(busy.role.clone());
    }
    if let Some(at) = &busy.started_at {
        details.push(format!("running since {at}"));
    }
    who.push_str(&format!(" ({})", details.join(", ")));
    who
}
