//! The upstream `cli-sub-agent` on-disk session format, as text.
//!
//! A state root (`--state-dir`) holds one folder per project, named by the project's key: its
//! canonical path without the leading `/` ([`project_key`]). Each session is
//! `<root>/<key>/sessions/<ULID>/` holding `state.toml`, `metadata.toml`, and, once ended, a
//! `result.toml`; a session whose daemon runs has `daemon.pid` (`"<pid> <start ticks>\n"`).
//! The texts below copy the shape that upstream csa 0.1.1142 writes (see
//! `crates/cli-sub-agent/tests/fixtures/upstream-sessions/` and the benchmark brief), with realistic sizes.

use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use ulid::Ulid;

/// Name of the per-project folder that holds the session directories.
pub const SESSIONS_DIR: &str = "sessions";
/// The session state file; every session has one.
pub const STATE_FILE: &str = "state.toml";
/// The tool metadata file; every session has one.
pub const METADATA_FILE: &str = "metadata.toml";
/// The result file; only ended sessions have one.
pub const RESULT_FILE: &str = "result.toml";
/// The daemon pid file (`"<pid> <start ticks>\n"`); only running sessions have one.
pub const DAEMON_PID_FILE: &str = "daemon.pid";
/// The content of `metadata.toml`, identical for every generated session.
pub const METADATA_TOML: &str = "tool = \"codex\"\ntool_locked = true\n";

/// The life stage of a generated session, with upstream's `phase` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// `phase = "retired"`, `termination_reason = "completed"`, with a result.
    Retired,
    /// `phase = "available"` (ended, resumable), with a result.
    Available,
    /// `phase = "active"`, no result; alive only while its `daemon.pid` names a live process.
    Active,
}

impl SessionKind {
    /// The `phase` value upstream writes for this kind.
    pub fn phase(self) -> &'static str {
        match self {
            SessionKind::Retired => "retired",
            SessionKind::Available => "available",
            SessionKind::Active => "active",
        }
    }

    /// Whether the session has ended (and so has a `result.toml`).
    pub fn is_ended(self) -> bool {
        !matches!(self, SessionKind::Active)
    }
}

/// One generated session: what its files say.
#[derive(Debug, Clone)]
pub struct SessionSpec<'a> {
    /// The session id, also its directory name and `meta_session_id`.
    pub id: Ulid,
    /// Its life stage.
    pub kind: SessionKind,
    /// Canonical absolute project path, as written in `project_path`.
    pub project_path: &'a str,
    /// Creation time (`created_at`, `last_accessed`, the result's `started_at`).
    pub created_at: DateTime<Utc>,
}

impl SessionSpec<'_> {
    /// The text of `state.toml`.
    pub fn state_toml(&self) -> String {
        let created = timestamp(self.created_at);
        let updated = timestamp(self.created_at + TimeDelta::milliseconds(12));
        let termination = match self.kind {
            SessionKind::Retired => "termination_reason = \"completed\"\n",
            SessionKind::Available | SessionKind::Active => "",
        };
        format!(
            "meta_session_id = \"{id}\"\n\
             description = \"bench\"\n\
             project_path = {project}\n\
             created_at = \"{created}\"\n\
             last_accessed = \"{created}\"\n\
             csa_version = \"0.1.1142\"\n\
             phase = \"{phase}\"\n\
             {termination}\
             turn_count = 1\n\
             is_seed_candidate = false\n\
             identity_version = 2\n\
             \n\
             [genealogy]\n\
             depth = 0\n\
             \n\
             [tools.codex]\n\
             provider_session_id = \"thread_{thread:016x}\"\n\
             last_action_summary = \"did things\"\n\
             last_exit_code = 0\n\
             updated_at = \"{updated}\"\n\
             tool_version = \"codex-cli 0.1\"\n\
             \n\
             [tools.codex.token_usage]\n\
             input_tokens = 10\n\
             output_tokens = 5\n\
             total_tokens = 15\n\
             \n\
             [context_status]\n\
             is_compacted = false\n\
             \n\
             [task_context]\n\
             task_type = \"run\"\n\
             tier_name = \"tier-2-standard\"\n",
            id = self.id,
            project = toml::Value::String(self.project_path.to_owned()),
            phase = self.kind.phase(),
            thread = self.id.random() as u64,
        )
    }

    /// The text of `result.toml` (a success one minute after creation), or `None` for a session
    /// that has not ended.
    pub fn result_toml(&self) -> Option<String> {
        self.kind.is_ended().then(|| {
            format!(
                "status = \"success\"\n\
                 exit_code = 0\n\
                 summary = \"done\"\n\
                 tool = \"codex\"\n\
                 started_at = \"{}\"\n\
                 completed_at = \"{}\"\n",
                timestamp(self.created_at),
                timestamp(self.created_at + TimeDelta::seconds(60)),
            )
        })
    }
}

/// The text of `daemon.pid` for a daemon with `pid` that started `start_ticks` clock ticks after
/// boot (field 22 of `/proc/<pid>/stat`).
pub fn daemon_pid(pid: u32, start_ticks: u64) -> String {
    format!("{pid} {start_ticks}\n")
}

/// The key of a project: its canonical path (`fs::canonicalize`) with the root component
/// removed, e.g. `/home/user/project` → `home/user/project`.
pub fn project_key(canonical: &Path) -> PathBuf {
    canonical
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect()
}

/// RFC 3339 in UTC with nanoseconds and a `Z`, as upstream writes (`2026-11-21T06:33:50.574231058Z`).
fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: SessionKind) -> SessionSpec<'static> {
        SessionSpec {
            id: Ulid::from_string("01M7YCZAQ6TZ9E7YGFW7ZMM2X7").expect("valid ulid"),
            kind,
            project_path: "/abs/project/path",
            created_at: DateTime::parse_from_rfc3339("2026-11-21T06:33:50.574231058Z")
                .expect("valid time")
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn retired_state_has_the_upstream_shape() {
        let text = spec(SessionKind::Retired).state_toml();
        let table: toml::Table = toml::from_str(&text).expect("state.toml parses");
        assert_eq!(
            table["meta_session_id"].as_str(),
            Some("01M7YCZAQ6TZ9E7YGFW7ZMM2X7")
        );
        assert_eq!(table["project_path"].as_str(), Some("/abs/project/path"));
        assert_eq!(table["phase"].as_str(), Some("retired"));
        assert_eq!(table["termination_reason"].as_str(), Some("completed"));
        assert_eq!(
            table["created_at"].as_str(),
            Some("2026-11-21T06:33:50.574231058Z")
        );
        assert_eq!(
            table["tools"]["codex"]["token_usage"]["total_tokens"].as_integer(),
            Some(15)
        );
        assert_eq!(
            table["task_context"]["tier_name"].as_str(),
            Some("tier-2-standard")
        );
    }

    #[test]
    fn only_retired_sessions_have_a_termination_reason() {
        for kind in [SessionKind::Available, SessionKind::Active] {
            let table: toml::Table = toml::from_str(&spec(kind).state_toml()).expect("parses");
            assert_eq!(table["phase"].as_str(), Some(kind.phase()));
            assert!(!table.contains_key("termination_reason"));
        }
    }

    #[test]
    fn only_ended_sessions_have_a_result() {
        let result = spec(SessionKind::Retired)
            .result_toml()
            .expect("has a result");
        let table: toml::Table = toml::from_str(&result).expect("result.toml parses");
        assert_eq!(table["status"].as_str(), Some("success"));
        assert_eq!(
            table["completed_at"].as_str(),
            Some("2026-11-21T06:34:50.574231058Z")
        );
        assert!(spec(SessionKind::Active).result_toml().is_none());
    }

    #[test]
    fn project_key_drops_the_leading_slash() {
        assert_eq!(
            project_key(Path::new("/home/user/project")),
            PathBuf::from("home/user/project")
        );
    }
}
