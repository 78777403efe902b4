//! Completion records: what upstream `cli-sub-agent` leaves when its agent exits, and how a
//! session whose owner is dead is finalized from them, exactly as upstream's reconciler does
//! (upstream `crates/cli-sub-agent/src/session_cmds_daemon_completion.rs` and
//! `session_cmds_reconcile.rs`, version 0.1.1142; docs/format.md § 8).
//!
//! Two files, read only, never written or removed by csa:
//! - `daemon-completion.toml`, written by upstream's daemon when its agent exits (atomically:
//!   temp file, rename): `exit_code` (integer), `status` (string: upstream writes `success` for
//!   0, `signal` for 137 and 143, `failure` otherwise) and an optional `reason` (string);
//! - the legacy `.complete` marker: one decimal exit code, read as a record with the status
//!   above and `reason = "legacy_complete_marker"`.
//!
//! When both exist, `daemon-completion.toml` is the record (as upstream). The rules are a pure
//! function of the record and one more observation ([`Record::outcome`]), so each is a
//! table-driven unit test. A record is consulted only for an Active session whose owner is dead
//! (crate::liveness): a live owned process always outranks it.

use std::io::{self, Read};
use std::path::PathBuf;

use serde::Deserialize;

use crate::dirfd::StoreDir;
use crate::result::ResultStatus;

/// File name of upstream's daemon completion record.
pub const DAEMON_COMPLETION_FILE: &str = "daemon-completion.toml";
/// File name of the legacy completion marker.
pub const COMPLETE_MARKER: &str = ".complete";
/// Largest completion record read (bytes); upstream's are a few dozen. A larger one is an
/// [`RecordError`], never read whole.
pub const MAX_RECORD_BYTES: u64 = 64 << 10;
/// At most this many bytes of `stdout.log` are read to tell whether it holds output
/// ([`Record::outcome`]).
pub const MAX_STDOUT_PROBE: u64 = 64 << 10;

/// `termination_reason` of a session finalized from a record that says success (or exit code 0)
/// while result.toml is missing (upstream's constant).
pub const MISSING_RESULT: &str = "daemon_completion_missing_result";
/// `termination_reason` of a session finalized from a record without a `reason` and a non-zero
/// exit code (upstream's).
pub const DAEMON_COMPLETION: &str = "daemon_completion";
/// `reason` of a record read from a legacy `.complete` marker (upstream's).
pub const LEGACY_MARKER: &str = "legacy_complete_marker";

/// Where a record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `daemon-completion.toml`.
    DaemonCompletion,
    /// The legacy `.complete` marker.
    LegacyMarker,
}

/// A completion record, as upstream's `DaemonCompletionPacket`. Keys csa does not know are
/// ignored, as upstream ignores them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Record {
    /// The agent's exit code (`i32` in upstream).
    pub exit_code: i32,
    /// The status upstream recorded (`success`, `failure`, `signal`, …; kept as written).
    pub status: String,
    /// Why it ended, when upstream said.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a session finalized from a record gets (upstream's `daemon_completion_effective_outcome`
/// and `retire_session_from_daemon_completion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// result.toml's `status`.
    pub status: ResultStatus,
    /// result.toml's `exit_code`.
    pub exit_code: i64,
    /// result.toml's `raw_process_exit_code`, when the status overrides the recorded exit code.
    pub raw_process_exit_code: Option<i64>,
    /// state.toml's `termination_reason`.
    pub termination_reason: String,
    /// The record said success but the agent left no result: the result is a failure.
    pub missing_result_failure: bool,
}

impl Record {
    /// The record upstream reads from a legacy `.complete` marker holding `exit_code`.
    pub fn legacy_marker(exit_code: i32) -> Self {
        Record {
            exit_code,
            status: status_from_exit_code(exit_code).to_owned(),
            reason: Some(LEGACY_MARKER.to_owned()),
        }
    }

    /// state.toml's `termination_reason` for a session finalized from this record: its
    /// `reason`, else [`MISSING_RESULT`] for exit code 0, else [`DAEMON_COMPLETION`].
    pub fn termination_reason(&self) -> String {
        match &self.reason {
            Some(reason) => reason.clone(),
            None if self.exit_code == 0 => MISSING_RESULT.to_owned(),
            None => DAEMON_COMPLETION.to_owned(),
        }
    }

    /// The outcome of finalizing a session, whose agent left no result.toml, from this record.
    /// `stdout_has_output`: whether the session's `stdout.log` holds non-blank text
    /// ([`stdout_has_output`]).
    ///
    /// Upstream's rules: a record saying `success`, or exit code 0, is taken as a success only
    /// when `stdout.log` holds output (ACP tools write no result.toml); otherwise it is a failure
    /// with exit code 1 that keeps the recorded code in `raw_process_exit_code` (unless that is
    /// 1). Any other record gives its own status and exit code. The termination reason is
    /// [`Record::termination_reason`].
    pub fn outcome(&self, stdout_has_output: bool) -> Outcome {
        let code = i64::from(self.exit_code);
        let termination_reason = self.termination_reason();
        let (status, exit_code, raw_process_exit_code, missing_result_failure) =
            if self.status == "success" || self.exit_code == 0 {
                if stdout_has_output {
                    (ResultStatus::Success, 0, Some(code), false)
                } else {
                    (ResultStatus::Failure, 1, (code != 1).then_some(code), true)
                }
            } else {
                (ResultStatus::from(self.status.clone()), code, None, false)
            };
        Outcome {
            status,
            exit_code,
            raw_process_exit_code,
            termination_reason,
            missing_result_failure,
        }
    }
}

/// Upstream's `SessionResult::status_from_exit_code`: 0 is `success`, 137 and 143 (killed by
/// SIGKILL, SIGTERM) are `signal`, anything else `failure`.
pub fn status_from_exit_code(exit_code: i32) -> &'static str {
    match exit_code {
        0 => "success",
        137 | 143 => "signal",
        _ => "failure",
    }
}

/// A record and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The record.
    pub record: Record,
    /// Which file it came from.
    pub source: Source,
    /// That file.
    pub path: PathBuf,
}

/// A completion record that exists but cannot be used: the session is finalized as if it had
/// none (as upstream does), and the file is left byte-identical.
#[derive(Debug, thiserror::Error)]
#[error("{}: unusable completion record, ignored: {reason}", path.display())]
pub struct RecordError {
    /// The record's file.
    pub path: PathBuf,
    /// Why: the parser's message, or the read's error.
    pub reason: String,
}

/// Reads the completion record of the session in `session_dir`: `daemon-completion.toml` when
/// it exists, else the legacy `.complete` marker (upstream's order). `Ok(None)` when neither
/// exists. Reads are bounded ([`MAX_RECORD_BYTES`]) and never wait (a FIFO in place of a
/// record is an error, not a hang: crate's `read_capped`).
///
/// # Errors
/// [`RecordError`] naming the file when the record exists but cannot be read, is larger than
/// [`MAX_RECORD_BYTES`], is not a regular file, is not UTF-8, or does not parse (a
/// `daemon-completion.toml` without an integer `exit_code` and a string `status`; a `.complete`
/// that is not one integer).
pub fn load(session_dir: &StoreDir) -> Result<Option<Completion>, RecordError> {
    if let Some(record) = load_daemon(session_dir)? {
        return Ok(Some(record));
    }
    let marker = session_dir.join(COMPLETE_MARKER);
    let Some(text) = read_record(session_dir, COMPLETE_MARKER)? else {
        return Ok(None);
    };
    let exit_code = text.trim().parse::<i64>().map_err(|e| RecordError {
        path: marker.clone(),
        reason: format!("not an exit code: {e}"),
    })?;
    legacy_marker(session_dir, exit_code).map(Some)
}

/// Reads only the session's `daemon-completion.toml` ([`load`]'s first step): for a caller that
/// has read the legacy `.complete` already (liveness does) and passes its exit code to
/// [`legacy_marker`].
///
/// # Errors
/// As [`load`], for `daemon-completion.toml`.
pub fn load_daemon(session_dir: &StoreDir) -> Result<Option<Completion>, RecordError> {
    let daemon = session_dir.join(DAEMON_COMPLETION_FILE);
    let Some(text) = read_record(session_dir, DAEMON_COMPLETION_FILE)? else {
        return Ok(None);
    };
    let record: Record = toml::from_str(&text).map_err(|e| RecordError {
        path: daemon.clone(),
        reason: crate::state::one_line(&e),
    })?;
    Ok(Some(Completion {
        record,
        source: Source::DaemonCompletion,
        path: daemon,
    }))
}

/// The record of the legacy `.complete` marker of the session in `session_dir`, which holds
/// `exit_code` ([`Record::legacy_marker`]).
///
/// # Errors
/// [`RecordError`] naming the marker when the code does not fit upstream's `i32`.
pub fn legacy_marker(session_dir: &StoreDir, exit_code: i64) -> Result<Completion, RecordError> {
    let path = session_dir.join(COMPLETE_MARKER);
    let exit_code = i32::try_from(exit_code).map_err(|e| RecordError {
        path: path.clone(),
        reason: format!("not an exit code: {e}"),
    })?;
    Ok(Completion {
        record: Record::legacy_marker(exit_code),
        source: Source::LegacyMarker,
        path,
    })
}

/// The text of the record file `name` of `dir`, `None` when it does not exist.
fn read_record(dir: &StoreDir, name: &str) -> Result<Option<String>, RecordError> {
    let error = |reason: String| RecordError {
        path: dir.join(name),
        reason,
    };
    match dir.read_capped(name, MAX_RECORD_BYTES) {
        Ok((bytes, _)) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| error(e.to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(error(e.to_string())),
    }
}

/// Whether the session's `stdout.log` holds output: valid UTF-8 with a non-whitespace character
/// (upstream reads the whole file with `read_to_string` and trims it). csa reads at most
/// [`MAX_STDOUT_PROBE`] bytes, without waiting (`O_NONBLOCK`; regular files only): a larger
/// file counts as output when that prefix has a non-whitespace character, whatever its end
/// holds. A missing or unreadable file holds none.
pub fn stdout_has_output(session_dir: &StoreDir) -> bool {
    let Ok(file) = session_dir.open_read("stdout.log") else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let mut buf = Vec::new();
    if file.take(MAX_STDOUT_PROBE).read_to_end(&mut buf).is_err() {
        return false;
    }
    let text = if meta.len() > MAX_STDOUT_PROBE {
        // Cut at most inside the last character; the rest of the file is not judged.
        match std::str::from_utf8(&buf) {
            Ok(text) => text,
            Err(e) if e.error_len().is_none() => {
                std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return false,
        }
    } else {
        match std::str::from_utf8(&buf) {
            Ok(text) => text,
            Err(_) => return false,
        }
    };
    !text.trim().is_empty()
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::dirfd::test_dir;

    fn record(exit_code: i32, status: &str, reason: Option<&str>) -> Record {
        Record {
            exit_code,
            status: status.to_owned(),
            reason: reason.map(str::to_owned),
        }
    }

    /// What a row expects: status, exit code, raw exit code, termination reason.
    type Want = (ResultStatus, i64, Option<i64>, &'static str);

    /// Upstream's rules, one row each: (record, stdout.log has output) → [`Want`].
    #[test]
    fn outcomes_follow_upstream() {
        let rows: [(Record, bool, Want); 9] = [
            // The fixtures' cases (tests/fixtures/upstream-completion).
            (
                record(2, "failure", Some("tool exited 2")),
                false,
                (ResultStatus::Failure, 2, None, "tool exited 2"),
            ),
            (
                record(0, "success", None),
                false,
                (ResultStatus::Failure, 1, Some(0), MISSING_RESULT),
            ),
            (
                Record::legacy_marker(137),
                false,
                (ResultStatus::Signal, 137, None, LEGACY_MARKER),
            ),
            // Success with output on stdout.log: kept, with the raw code.
            (
                record(0, "success", None),
                true,
                (ResultStatus::Success, 0, Some(0), MISSING_RESULT),
            ),
            // "success" with another exit code still counts as a success claim.
            (
                record(1, "success", None),
                false,
                (ResultStatus::Failure, 1, None, DAEMON_COMPLETION),
            ),
            (
                record(143, "signal", Some("sigterm")),
                true,
                (ResultStatus::Signal, 143, None, "sigterm"),
            ),
            (
                record(3, "failure", None),
                false,
                (ResultStatus::Failure, 3, None, DAEMON_COMPLETION),
            ),
            (
                Record::legacy_marker(0),
                false,
                (ResultStatus::Failure, 1, Some(0), LEGACY_MARKER),
            ),
            (
                record(5, "cancelled", None),
                false,
                (
                    ResultStatus::Other("cancelled".into()),
                    5,
                    None,
                    DAEMON_COMPLETION,
                ),
            ),
        ];
        for (record, output, (status, code, raw, reason)) in rows {
            let got = record.outcome(output);
            assert_eq!(
                (
                    got.status,
                    got.exit_code,
                    got.raw_process_exit_code,
                    got.termination_reason.as_str()
                ),
                (status, code, raw, reason),
                "{record:?} with output {output}"
            );
        }
    }

    #[test]
    fn legacy_markers_map_137_and_143_to_signal() {
        assert_eq!(Record::legacy_marker(137).status, "signal");
        assert_eq!(Record::legacy_marker(143).status, "signal");
        assert_eq!(Record::legacy_marker(0).status, "success");
        assert_eq!(Record::legacy_marker(2).status, "failure");
    }

    #[test]
    fn the_daemon_record_wins_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(&test_dir(dir.path())).expect("none"), None);
        fs_err::write(dir.path().join(COMPLETE_MARKER), "137\n").expect("write");
        let got = load(&test_dir(dir.path())).expect("load").expect("marker");
        assert_eq!(got.source, Source::LegacyMarker);
        assert_eq!(got.record, Record::legacy_marker(137));
        fs_err::write(
            dir.path().join(DAEMON_COMPLETION_FILE),
            "exit_code = 2\nstatus = \"failure\"\nreason = \"tool exited 2\"\nextra = 1\n",
        )
        .expect("write");
        let got = load(&test_dir(dir.path())).expect("load").expect("record");
        assert_eq!(got.source, Source::DaemonCompletion);
        assert_eq!(got.record, record(2, "failure", Some("tool exited 2")));
        fs_err::write(
            dir.path().join(DAEMON_COMPLETION_FILE),
            "exit_code = \"2\"\n",
        )
        .expect("write");
        let err = load(&test_dir(dir.path())).expect_err("mistyped");
        assert!(err.to_string().contains(DAEMON_COMPLETION_FILE), "{err}");
    }

    #[test]
    fn stdout_output_is_non_blank_utf8() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!stdout_has_output(&test_dir(dir.path())));
        for (bytes, want) in [
            (&b""[..], false),
            (b" \n\t", false),
            (b"done\n", true),
            (b"\xff\xfe", false),
        ] {
            fs_err::write(dir.path().join("stdout.log"), bytes).expect("write");
            assert_eq!(stdout_has_output(&test_dir(dir.path())), want, "{bytes:?}");
        }
    }
}
