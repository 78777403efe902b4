//! Errors of the session store.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

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

    /// A SESSION argument is not a ULID or a prefix of one. The message quotes at most
    /// [`ECHO_CHARS`] characters of it ([`shorten`]).
    #[error("{} is not a session id: expected a ULID or a unique prefix of one (1-26 characters of Crockford base32: 0-9 and A-Z without I, L, O, U)", shorten_quoted(.0))]
    MalformedSessionId(String),

    /// No session matches the given ULID or prefix.
    #[error("no session matches {}", shorten(.0))]
    NoSuchSession(String),

    /// A prefix matches more than one session. The message lists the first
    /// [`LISTED_CANDIDATES`] and counts the rest.
    #[error(
        "session prefix {prefix} is ambiguous: it matches {}",
        list_capped(candidates)
    )]
    AmbiguousSession {
        /// The prefix given.
        prefix: String,
        /// Every matching session id, sorted.
        candidates: Vec<String>,
    },

    /// A lock stayed busy for the whole bound of a [`crate::lock::Wait::AtMost`]: another
    /// process holds it.
    #[error("gave up waiting for {} after {:.1}s: {} holds it", path.display(), waited.as_secs_f64(), crate::lock::describe_pids(holders))]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// The pids holding it when the wait gave up, from `/proc/locks` (empty when unknown).
        holders: Vec<u32>,
        /// How long it waited.
        waited: Duration,
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

/// A store error where an I/O error is expected: an I/O error as it is; a refused directory as
/// `PermissionDenied`, anything else as `Other`, each with the store error's message.
impl From<StoreError> for io::Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Io(e) => e,
            insecure @ StoreError::Insecure(_) => {
                io::Error::new(io::ErrorKind::PermissionDenied, insecure)
            }
            other => io::Error::other(other),
        }
    }
}

/// Arguments echoed in messages are cut to this many characters ([`shorten`]).
pub const ECHO_CHARS: usize = 64;

/// A listing of ambiguous candidates names this many ([`StoreError::AmbiguousSession`]).
pub const LISTED_CANDIDATES: usize = 10;

/// `s` as it can be echoed in a message: whole when it has at most [`ECHO_CHARS`] characters,
/// else its first [`ECHO_CHARS`] characters then `… (N bytes)`. Regression: a 100 KB SESSION
/// argument was echoed back whole.
pub fn shorten(s: &str) -> String {
    match s.char_indices().nth(ECHO_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes)", &s[..cut], s.len()),
    }
}

/// [`shorten`], the kept part quoted as `{:?}` quotes a string.
fn shorten_quoted(s: &str) -> String {
    match s.char_indices().nth(ECHO_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
    }
}

/// The first [`LISTED_CANDIDATES`] of `all`, comma-separated, then `and N more` for the rest.
/// Regression: an ambiguous prefix over 20,000 sessions printed every id on one 561 KB line.
fn list_capped(all: &[String]) -> String {
    let shown = all
        .iter()
        .take(LISTED_CANDIDATES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    match all.len().saturating_sub(LISTED_CANDIDATES) {
        0 => shown,
        rest => format!("{shown} and {rest} more"),
    }
}

/// Shorthand for results of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_arguments_are_cut_and_counted() {
        assert_eq!(shorten("01M7"), "01M7");
        let long = "x".repeat(100_000);
        let cut = shorten(&long);
        assert_eq!(cut, format!("{}… (100000 bytes)", "x".repeat(ECHO_CHARS)));
        let err = StoreError::MalformedSessionId(long).to_string();
        assert!(err.len() < 300, "{err}");
        // Multi-byte characters are cut on a character boundary.
        assert!(shorten(&"é".repeat(100)).starts_with(&"é".repeat(ECHO_CHARS)));
    }

    #[test]
    fn ambiguous_listings_are_capped() {
        let candidates: Vec<String> = (0..25).map(|n| format!("01M7{n:022}")).collect();
        let err = StoreError::AmbiguousSession {
            prefix: "01M7".into(),
            candidates: candidates.clone(),
        }
        .to_string();
        assert!(
            err.contains(&candidates[9]) && !err.contains(&candidates[10]),
            "{err}"
        );
        assert!(err.ends_with("and 15 more"), "{err}");
    }
}
