//! `state.toml`: the session's state, in upstream `cli-sub-agent`'s format.
//!
//! Reading uses a typed view ([`StateView`]) of the keys csa understands, so that a wrong type
//! (`turn_count = "zero"`) is an error rather than a silent default. Writing never goes through
//! the typed view: the original text is edited in place with `toml_edit`, so every key csa does
//! not know (upstream has dozens) and the formatting of untouched lines survive unchanged.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::atomic::{write_atomic, Publish};
use crate::dirfd::StoreDir;
use crate::error::{Result, StoreError};
use crate::lock::ReconcileLock;

/// File name of the session state.
pub const STATE_FILE: &str = "state.toml";

/// A session's lifecycle phase (`phase` in state.toml; `active` when absent, as upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A turn is running, or its owner died without finalizing it.
    #[default]
    Active,
    /// The last turn ended; the session can be resumed.
    Available,
    /// Finalized for good (see `termination_reason`).
    Retired,
    /// The tool ran out of quota or budget.
    ToolExhausted,
}

impl Phase {
    /// The name used in state.toml and in csa's output.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Active => "active",
            Phase::Available => "available",
            Phase::Retired => "retired",
            Phase::ToolExhausted => "tool_exhausted",
        }
    }

    /// Whether the session has ended (every phase but `active`).
    pub fn is_ended(self) -> bool {
        self != Phase::Active
    }
}

/// Per-tool entry `[tools.<name>]` (only the keys csa reads; others are kept on rewrite).
#[derive(Debug, Clone, Deserialize)]
pub struct ToolState {
    /// Summary of the tool's last action.
    pub last_action_summary: Option<String>,
    /// Exit code of the tool's last run.
    pub last_exit_code: Option<i64>,
    /// When this entry was last updated.
    pub updated_at: Option<DateTime<Utc>>,
}

/// `[genealogy]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Genealogy {
    /// Nesting depth: 0 for a top-level session, parent's + 1 for a child.
    pub depth: Option<u32>,
    /// The parent session's ULID, if any.
    pub parent_session_id: Option<String>,
}

/// The keys of state.toml csa understands, type-checked.
#[derive(Debug, Clone, Deserialize)]
pub struct StateView {
    /// The session's ULID.
    pub meta_session_id: String,
    /// Absolute path of the project directory.
    pub project_path: String,
    /// Creation time (RFC 3339 string).
    pub created_at: DateTime<Utc>,
    /// When the session was last used (RFC 3339 string): csa sets it when a turn starts and
    /// again when it ends (finalized by its owner, reconciled or killed).
    pub last_accessed: DateTime<Utc>,
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: Phase,
    /// Why the session ended, when it did (`orphaned_process`, `completed`, …).
    pub termination_reason: Option<String>,
    /// Free-form description given at creation.
    pub description: Option<String>,
    /// Number of turns started.
    pub turn_count: Option<u64>,
    /// Parentage.
    pub genealogy: Option<Genealogy>,
    /// Per-tool entries.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolState>,
}

impl StateView {
    /// Whether a new turn may start in this session: phase `available`, or `retired` because
    /// its turn crashed (`termination_reason = "orphaned_process"`). The one predicate `csa
    /// session resume` and `csa session list --resumable` use.
    pub fn is_resumable(&self) -> bool {
        match self.phase {
            Phase::Available => true,
            Phase::Retired => self.termination_reason.as_deref() == Some("orphaned_process"),
            Phase::Active | Phase::ToolExhausted => false,
        }
    }

    /// The tool whose `[tools]` entry was updated last, if any entry has `updated_at`.
    pub fn latest_tool(&self) -> Option<&str> {
        self.tools
            .iter()
            .filter_map(|(name, t)| t.updated_at.map(|at| (at, name)))
            .max()
            .map(|(_, name)| name.as_str())
    }
}

/// A state.toml as read from disk: the exact bytes, their typed view, and the file's mode.
#[derive(Debug, Clone)]
pub struct SessionState {
    path: PathBuf,
    text: String,
    mode: u32,
    /// The typed view of the known keys.
    pub view: StateView,
}

impl SessionState {
    /// Reads and type-checks the `state.toml` of the session directory `dir`.
    ///
    /// # Errors
    /// [`StoreError::MissingState`] when the file does not exist;
    /// [`StoreError::InvalidState`] when it is not UTF-8 TOML with the required keys and types;
    /// [`StoreError::Io`] for other read errors.
    pub fn load(dir: &StoreDir) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        let (text, metadata) = state_text(
            dir.read_capped(STATE_FILE, MAX_STATE_BYTES),
            dir.path(),
            &path,
        )?;
        let view: StateView = toml::from_str(&text).map_err(|e| invalid_state(&path, &e))?;
        let mode = metadata.permissions().mode() & 0o7777;
        Ok(SessionState {
            path,
            text,
            mode,
            view,
        })
    }

    /// The path this state was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The exact text that was read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Writes this state back as a turn that ended at `ended_at`: `phase` and
    /// `termination_reason` set, and `last_accessed` moved to `ended_at` (never back: the later
    /// of the two is kept), since the time of last use is the end of the last turn. Every other
    /// key, the formatting of untouched lines, and the file's mode are kept. See
    /// [`SessionState::edit`].
    ///
    /// # Errors
    /// As [`SessionState::edit`].
    pub fn end_turn(
        &self,
        lock: &ReconcileLock,
        phase: Phase,
        termination_reason: &str,
        ended_at: DateTime<Utc>,
    ) -> Result<()> {
        let last_accessed = crate::create::timestamp(ended_at.max(self.view.last_accessed));
        self.edit(lock, |doc| {
            doc["phase"] = toml_edit::value(phase.as_str());
            doc["termination_reason"] = toml_edit::value(termination_reason);
            doc["last_accessed"] = toml_edit::value(last_accessed);
        })
    }

    /// Applies `change` to the document of this state's text and writes it back atomically
    /// (temp, fsync, rename, fsync of the directory), keeping every key `change` does not touch,
    /// the formatting of untouched lines, and the file's mode.
    ///
    /// Takes the session's [`ReconcileLock`] as proof that the caller holds it and has re-read
    /// the state under it.
    ///
    /// # Errors
    /// [`StoreError::InvalidState`] if the text no longer parses (it did when loaded, so this
    /// means a bug); [`StoreError::Io`] for any failure of the write, in which case state.toml
    /// is unchanged.
    pub fn edit(
        &self,
        lock: &ReconcileLock,
        change: impl FnOnce(&mut toml_edit::DocumentMut),
    ) -> Result<()> {
        debug_assert_eq!(Some(lock.session_dir()), self.path.parent());
        let mut doc: toml_edit::DocumentMut = self
            .text
            .parse()
            .map_err(|e: toml_edit::TomlError| invalid_state(&self.path, &e))?;
        change(&mut doc);
        crate::failpoint!("state::write", "write", &self.path)?;
        write_atomic(
            lock.dir(),
            STATE_FILE,
            doc.to_string().as_bytes(),
            self.mode,
            Publish::Replace,
        )?;
        Ok(())
    }
}

/// The root-table part of a state.toml text: everything before the first line that starts with
/// `[`. TOML requires a document's root key/values to come before its first table header, so when
/// this prefix parses, it holds exactly the root keys (`phase`, `created_at`, …). A `[` line
/// inside a value (a multi-line string or array) cuts that value open, so such a prefix fails to
/// parse and callers fall back to the whole text.
fn root_prefix(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('[') {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

impl StateView {
    /// Reads the view `csa session list` needs: like [`SessionState::load`], but when the root
    /// table alone parses (see `root_prefix`), the tables after it (`[tools]`, `[genealogy]`, …)
    /// are not parsed, so `tools` and `genealogy` are empty. TOML parsing dominates listing cost,
    /// and upstream's tables are most of the file.
    ///
    /// # Errors
    /// As [`SessionState::load`]; errors always come from parsing the whole text.
    pub fn load_root(dir: &StoreDir) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        Self::parse_root(
            dir.read_capped(STATE_FILE, MAX_STATE_BYTES),
            dir.path(),
            &path,
        )
    }

    /// [`StateView::load_root`] of bytes already read (`read`) from `path` in `session_dir`.
    ///
    /// # Errors
    /// As [`SessionState::load`].
    pub fn parse_root(
        read: io::Result<(Vec<u8>, std::fs::Metadata)>,
        session_dir: &Path,
        path: &Path,
    ) -> Result<Self> {
        let (text, _) = state_text(read, session_dir, path)?;
        let prefix = root_prefix(&text);
        if prefix.len() < text.len() {
            if let Ok(view) = toml::from_str(prefix) {
                return Ok(view);
            }
        }
        toml::from_str(&text).map_err(|e| invalid_state(path, &e))
    }
}

/// The text of a state.toml read from `path` in `session_dir`, with the store's error for each
/// way the read can fail (shared by every reader of state.toml).
fn state_text(
    read: io::Result<(Vec<u8>, std::fs::Metadata)>,
    session_dir: &Path,
    path: &Path,
) -> Result<(String, std::fs::Metadata)> {
    let (bytes, metadata) = match read {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::MissingState {
                dir: session_dir.to_owned(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8(bytes).map_err(|e| invalid_state(path, &e))?;
    Ok((text, metadata))
}

fn invalid_state(path: &Path, err: &dyn std::fmt::Display) -> StoreError {
    StoreError::InvalidState {
        path: path.to_owned(),
        reason: one_line(err),
    }
}

/// Largest state.toml csa reads (upstream's are a few KiB); larger ones are reported invalid
/// rather than read whole.
pub const MAX_STATE_BYTES: u64 = 16 << 20;

/// A parser error on one line (toml's messages span several lines with a caret diagram).
pub(crate) fn one_line(err: &dyn std::fmt::Display) -> String {
    err.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^'))
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
// Tests lay out and inspect their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::dirfd::test_dir;

    const ORPHAN_FULL: &str = r#"meta_session_id = "01M7YCZAQ6TZ9E7YGFW7ZMM2X7"
description = "orphan-full"
project_path = "/home/user/project"
created_at = "2026-11-21T06:33:50.574231058Z"
last_accessed = "2026-11-21T06:33:50.574231058Z"
csa_version = "0.1.1142"
phase = "active"
turn_count = 1

[genealogy]
depth = 0

[tools.codex]
provider_session_id = "thread_abc"
last_action_summary = "did things"
last_exit_code = 0
updated_at = "2026-11-21T06:33:50.586026588Z"

[tools.codex.token_usage]
input_tokens = 10

[sandbox_info]
mode = "cgroup"
"#;

    fn session_with(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs_err::write(dir.path().join(STATE_FILE), text).expect("write");
        dir
    }

    #[test]
    fn rewrite_keeps_unknown_keys_and_changes_only_phase_and_last_use() {
        let dir = session_with(ORPHAN_FULL);
        let state = SessionState::load(&test_dir(dir.path())).expect("load");
        assert_eq!(state.view.latest_tool(), Some("codex"));
        let lock = ReconcileLock::try_acquire(&test_dir(dir.path()))
            .expect("io")
            .expect("free");
        let ended = "2026-11-21T07:00:00.5Z".parse().expect("time");
        state
            .end_turn(&lock, Phase::Retired, "orphaned_process", ended)
            .expect("write");
        let after = fs_err::read_to_string(dir.path().join(STATE_FILE)).expect("read");
        let expected = ORPHAN_FULL
            .replace(
                "phase = \"active\"\nturn_count = 1\n",
                "phase = \"retired\"\nturn_count = 1\ntermination_reason = \"orphaned_process\"\n",
            )
            .replace(
                "last_accessed = \"2026-11-21T06:33:50.574231058Z\"",
                "last_accessed = \"2026-11-21T07:00:00.500000000Z\"",
            );
        assert_eq!(after, expected);
        // Never moved back.
        let state = SessionState::load(&test_dir(dir.path())).expect("load");
        let earlier = "2026-01-01T00:00:00Z".parse().expect("time");
        state
            .end_turn(&lock, Phase::Retired, "completed", earlier)
            .expect("write");
        let again = SessionState::load(&test_dir(dir.path())).expect("load");
        assert_eq!(again.view.last_accessed, ended);
    }

    #[test]
    fn wrong_type_is_invalid_not_defaulted() {
        let dir = session_with(&ORPHAN_FULL.replace("turn_count = 1", "turn_count = \"zero\""));
        let err = SessionState::load(&test_dir(dir.path())).expect_err("must fail");
        assert!(matches!(err, StoreError::InvalidState { .. }), "{err}");
        assert!(err.to_string().contains("turn_count"), "{err}");
    }

    #[test]
    fn root_view_skips_tables_but_not_errors() {
        let dir = session_with(ORPHAN_FULL);
        let view = StateView::load_root(&test_dir(dir.path())).expect("load");
        assert_eq!(view.phase, Phase::Active);
        assert_eq!(view.turn_count, Some(1));
        assert!(view.tools.is_empty(), "tables are not parsed");
        // A root-key type error is still an error.
        let bad = session_with(&ORPHAN_FULL.replace("turn_count = 1", "turn_count = \"zero\""));
        assert!(matches!(
            StateView::load_root(&test_dir(bad.path())),
            Err(StoreError::InvalidState { .. })
        ));
    }

    #[test]
    fn root_prefix_never_cuts_a_value_silently() {
        // A line starting with `[` inside a multi-line string or array is not a table header.
        for text in [
            "phase = \"retired\"\ns = \"\"\"\n[not a table]\n\"\"\"\nmeta_session_id = \"x\"\n",
            "a = [\n[1, 2],\n]\nphase = \"retired\"\n",
        ] {
            let prefix = super::root_prefix(text);
            assert!(prefix.len() < text.len());
            assert!(prefix.parse::<toml::Table>().is_err(), "{prefix:?}");
        }
        let text = "phase = \"retired\"\n\n[tools.x]\nupdated_at = 1\n";
        assert_eq!(super::root_prefix(text), "phase = \"retired\"\n\n");
    }

    #[test]
    fn missing_phase_means_active() {
        let dir = session_with(&ORPHAN_FULL.replace("phase = \"active\"\n", ""));
        let state = SessionState::load(&test_dir(dir.path())).expect("load");
        assert_eq!(state.view.phase, Phase::Active);
    }
}
