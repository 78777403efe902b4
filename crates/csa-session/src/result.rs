//! `result.toml`: the outcome of a session's current turn, in upstream's format.

use std::fmt;
use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::dirfd::StoreDir;
use crate::error::{Result, StoreError};

/// File name of the turn result.
pub const RESULT_FILE: &str = "result.toml";

/// Largest result.toml csa reads; larger ones are reported unreadable rather than read whole.
pub const MAX_RESULT_BYTES: u64 = 16 << 20;

/// `status` of a result. Statuses upstream may add later are kept as [`ResultStatus::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ResultStatus {
    /// Exit code 0.
    Success,
    /// Non-zero exit, or a synthetic failure.
    Failure,
    /// The turn ran out of time.
    Timeout,
    /// The agent was killed by a signal.
    Signal,
    /// The agent could not be started or csa failed.
    Error,
    /// Any other status string, kept as written.
    Other(String),
}

impl From<String> for ResultStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "success" => ResultStatus::Success,
            "failure" => ResultStatus::Failure,
            "timeout" => ResultStatus::Timeout,
            "signal" => ResultStatus::Signal,
            "error" => ResultStatus::Error,
            _ => ResultStatus::Other(s),
        }
    }
}

impl From<ResultStatus> for String {
    fn from(s: ResultStatus) -> Self {
        s.to_string()
    }
}

impl fmt::Display for ResultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResultStatus::Success => "success",
            ResultStatus::Failure => "failure",
            ResultStatus::Timeout => "timeout",
            ResultStatus::Signal => "signal",
            ResultStatus::Error => "error",
            ResultStatus::Other(s) => s,
        })
    }
}

/// One `[[artifacts]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Path relative to the session directory (`output/…`).
    pub path: String,
}

/// A parsed result.toml. Keys csa does not know are kept in `other` and written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionResult {
    /// Outcome.
    pub status: ResultStatus,
    /// The agent's exit code (128 + N for signal N where csa ran it).
    pub exit_code: i64,
    /// Human summary (for synthetic results: why, and the last lines of output).
    pub summary: String,
    /// The tool that ran.
    pub tool: String,
    /// When the turn started.
    pub started_at: DateTime<Utc>,
    /// When the turn ended.
    pub completed_at: DateTime<Utc>,
    /// Files the turn produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Every other key, kept as read.
    #[serde(flatten)]
    pub other: toml::Table,
}

impl SessionResult {
    /// Reads the `result.toml` of the session directory `dir`. `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`StoreError::InvalidResult`] when it exists but is not a valid result (not UTF-8, not
    /// TOML, a required key missing or mistyped, larger than [`MAX_RESULT_BYTES`]);
    /// [`StoreError::Io`] for other read errors.
    pub fn load(dir: &StoreDir) -> Result<Option<Self>> {
        crate::toml_file::parse_capped(dir.read_capped(RESULT_FILE, MAX_RESULT_BYTES), |reason| {
            StoreError::InvalidResult {
                path: dir.join(RESULT_FILE),
                reason,
            }
        })
    }

    /// The TOML text of this result.
    pub fn to_toml(&self) -> String {
        // Serializing plain strings, integers, timestamps and tables cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}

/// The fields of a result.toml that listings show, read without keeping the rest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResultHead {
    /// Outcome.
    pub status: ResultStatus,
    /// The agent's exit code.
    pub exit_code: i64,
    /// The tool that ran.
    pub tool: String,
}

impl ResultHead {
    /// Reads the head of the `result.toml` of `dir`: `Ok(None)` when there is none, `Err` when
    /// it cannot be read or lacks these fields. (Validity in full is [`SessionResult::load`]'s
    /// job; listings only show these fields.)
    ///
    /// # Errors
    /// As [`SessionResult::load`].
    pub fn load(dir: &StoreDir) -> Result<Option<Self>> {
        let path = dir.join(RESULT_FILE);
        Self::parse(dir.read_capped(RESULT_FILE, MAX_RESULT_BYTES), &path)
    }

    /// [`ResultHead::load`] of bytes already read (`read`) from `path`.
    ///
    /// # Errors
    /// As [`SessionResult::load`].
    pub fn parse(
        read: io::Result<(Vec<u8>, std::fs::Metadata)>,
        path: &Path,
    ) -> Result<Option<Self>> {
        crate::toml_file::parse_capped(read, |reason| StoreError::InvalidResult {
            path: path.to_owned(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_unknown_keys() {
        let text = r#"status = "success"
exit_code = 0
summary = "real result"
tool = "codex"
started_at = "2026-01-01T00:00:00Z"
completed_at = "2026-01-01T00:00:01Z"
events_count = 3

[[artifacts]]
path = "output/a.txt"
"#;
        let r: SessionResult = toml::from_str(text).expect("parse");
        assert_eq!(r.status, ResultStatus::Success);
        assert_eq!(
            r.other.get("events_count").and_then(|v| v.as_integer()),
            Some(3)
        );
        let again: SessionResult = toml::from_str(&r.to_toml()).expect("reparse");
        assert_eq!(again, r);
    }

    #[test]
    fn unknown_status_is_kept() {
        let r: SessionResult = toml::from_str(
            "status = \"cancelled\"\nexit_code = 1\nsummary = \"\"\ntool = \"x\"\n\
             started_at = \"2026-01-01T00:00:00Z\"\ncompleted_at = \"2026-01-01T00:00:00Z\"\n",
        )
        .expect("parse");
        assert_eq!(r.status, ResultStatus::Other("cancelled".into()));
        assert!(r.to_toml().contains("status = \"cancelled\""));
    }
}
