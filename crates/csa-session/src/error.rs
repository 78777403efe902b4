//! Errors of the session store.

use std::io;
use std::path::PathBuf;

/// Everything the store can fail with. I/O errors come from `fs-err` and name their path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed. The message names the operation and the path.
    #[error(transparent)]
    Io(#[from] io::Error),

    /// `state.toml` does not parse as TOML, lacks a required key, or has a key of the wrong
    /// type. The file is left byte-identical.
    #[error("{}: invalid state.toml: {reason}", path.display())]
    InvalidState {
        /// The state.toml that failed.
        path: PathBuf,
        /// The parser's message (line and column included).
        reason: String,
    },

    /// `state.toml` is missing from a session directory.
    #[error("{}: state.toml is missing", dir.display())]
    MissingState {
        /// The session directory.
        dir: PathBuf,
    },

    /// `result.toml` exists but does not parse (a late or foreign writer's, or corrupt).
    #[error("{}: invalid result.toml: {reason}", path.display())]
    InvalidResult {
        /// The result.toml that failed.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },

    /// A SESSION argument is not a ULID or a prefix of one.
    #[error("{0:?} is not a session id: expected a ULID or a unique prefix of one (1-26 characters of Crockford base32: 0-9 and A-Z without I, L, O, U)")]
    MalformedSessionId(String),

    /// No session matches the given ULID or prefix.
    #[error("no session matches {0}")]
    NoSuchSession(String),

    /// A prefix matches more than one session.
    #[error("session prefix {prefix} is ambiguous: it matches {}", candidates.join(", "))]
    AmbiguousSession {
        /// The prefix given.
        prefix: String,
        /// Every matching session id.
        candidates: Vec<String>,
    },

    /// A directory of the state root is a symbolic link, or is owned by another user, or is
    /// writable by group or others (see [`crate::secure`]). Nothing was changed.
    #[error(transparent)]
    Insecure(#[from] crate::secure::InsecureDir),

    /// The state root could not be determined (neither `--state-dir`, `XDG_STATE_HOME` nor
    /// `HOME` is usable).
    #[error(
        "cannot determine the state directory: set XDG_STATE_HOME or HOME, or pass --state-dir"
    )]
    NoStateRoot,
}

/// Shorthand for results of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
