//! Read-only views of sessions for `list`, `result` and `is-alive`: finding a session by id or
//! prefix, and deriving its user-facing status. Nothing here writes a file.

use std::path::PathBuf;

use serde::Serialize;

use crate::dirfd::{Kind, StoreDir};
use crate::error::{Result, StoreError};
use crate::liveness::{self, LivenessContext, Verdict};
use crate::paths::{self, open_session_in, OpenSession, Project, StateRoots};
use crate::result::{ResultHead, MAX_RESULT_BYTES, RESULT_FILE};
use crate::state::{Phase, SessionState, StateView, MAX_STATE_BYTES, STATE_FILE};

/// A session's status as users see it: the phase, refined by liveness for Active sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Active, and its owner is alive.
    Running,
    /// Active, and its owner is dead: reconcile would finalize it.
    Orphaned,
    /// Active, owned from another machine or PID namespace.
    Foreign,
    /// Ended; resumable.
    Available,
    /// Ended for good.
    Retired,
    /// Ended: the tool ran out of quota.
    ToolExhausted,
}

impl Status {
    /// Derives the status from a phase and, for Active sessions, a liveness verdict (the one
    /// predicate `list --status` and every command use).
    pub fn derive(phase: Phase, verdict: Option<&Verdict>) -> Self {
        match phase {
            Phase::Available => Status::Available,
            Phase::Retired => Status::Retired,
            Phase::ToolExhausted => Status::ToolExhausted,
            Phase::Active => match verdict {
                Some(Verdict::Dead { .. }) => Status::Orphaned,
                Some(Verdict::Foreign(_)) => Status::Foreign,
                Some(Verdict::Alive(_)) | None => Status::Running,
            },
        }
    }

    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Orphaned => "orphaned",
            Status::Foreign => "foreign",
            Status::Available => "available",
            Status::Retired => "retired",
            Status::ToolExhausted => "tool_exhausted",
        }
    }
}

/// One session located on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    /// Its ULID.
    pub id: String,
    /// Its project.
    pub project: Project,
}

impl SessionRef {
    /// Its directory, for messages (files are reached through [`SessionRef::open`]).
    pub fn dir(&self) -> PathBuf {
        self.project.session_dir(&self.id)
    }

    /// Opens the session: its project's `sessions/` and its directory, from the state root,
    /// never following a link ([`Project::open`]).
    ///
    /// # Errors
    /// As [`Project::open`].
    pub fn open(&self) -> Result<OpenSession> {
        self.project.open(&self.id)
    }
}

/// Finds the session `arg` (a ULID or a unique case-insensitive prefix) in `scope`, or, when
/// nothing matches there, in every project of `roots`.
///
/// # Errors
/// [`StoreError::MalformedSessionId`] when `arg` cannot begin a ULID;
/// [`StoreError::NoSuchSession`] when nothing matches; [`StoreError::AmbiguousSession`] when
/// more than one session matches; [`StoreError::Io`] when a directory cannot be read.
pub fn find_session(roots: &StateRoots, scope: &[Project], arg: &str) -> Result<SessionRef> {
    if !paths::is_ulid_prefix(arg) {
        return Err(StoreError::MalformedSessionId(arg.to_owned()));
    }
    let prefix = arg.to_ascii_uppercase();
    let mut found = matches_in(scope, &prefix)?;
    if found.is_empty() {
        let mut all = Vec::new();
        for root in roots.iter() {
            all.extend(paths::all_projects(root)?);
        }
        found = matches_in(&all, &prefix)?;
    }
    match found.len() {
        0 => Err(StoreError::NoSuchSession(arg.to_owned())),
        1 => Ok(found.remove(0)),
        _ => Err(StoreError::AmbiguousSession {
            prefix: arg.to_owned(),
            candidates: found.into_iter().map(|s| s.id).collect(),
        }),
    }
}

fn matches_in(projects: &[Project], prefix: &str) -> Result<Vec<SessionRef>> {
    let mut found = Vec::new();
    for project in projects {
        if prefix.len() == 26 {
            // A directory, or a link where one should be (found, so that the command that
            // opens it refuses it by name).
            let present = project.open_sessions()?.is_some_and(|sessions| {
                sessions
                    .symlink_metadata(prefix)
                    .is_ok_and(|m| matches!(m.kind, Kind::Dir | Kind::Symlink))
            });
            if present {
                found.push(SessionRef {
                    id: prefix.to_owned(),
                    project: project.clone(),
                });
            }
            continue;
        }
        for id in project.session_ids()? {
            if id.starts_with(prefix) {
                found.push(SessionRef {
                    id,
                    project: project.clone(),
                });
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found.dedup_by(|a, b| a.id == b.id);
    Ok(found)
}

/// What `list` shows of one session. Field names are the JSON output contract.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    /// ULID.
    pub session_id: String,
    /// Derived status.
    pub status: Status,
    /// Phase from state.toml.
    pub phase: Phase,
    /// result.toml's `status`, or null (also null when result.toml does not parse).
    pub result_status: Option<String>,
    /// result.toml's `exit_code`, or null.
    pub exit_code: Option<i64>,
    /// The result's tool, else the most recently updated `[tools]` entry.
    pub tool: Option<String>,
    /// state.toml's description.
    pub description: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub last_accessed: String,
    /// The project directory.
    pub project_path: String,
    /// Whether `csa session resume` would accept it ([`StateView::is_resumable`]).
    pub resumable: bool,
    /// For an Active session, what liveness decided and why (`alive: …`, `dead: …`,
    /// `foreign: …`; e.g. `alive: processes gone; output.log written 4s ago, grace ends in
    /// 26s`). Absent for an ended session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<String>,
    /// For a running interactive session (`csa run --tty`): whether one can attach to it and
    /// who is attached. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal: Option<TerminalStatus>,
}

/// Who is attached to a running interactive session (`attach.toml`, which its supervisor
/// rewrites on every change; docs/format.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TerminalStatus {
    /// Its supervisor runs and serves the terminal: `csa session attach` can connect.
    #[serde(default)]
    pub attachable: bool,
    /// A writer is attached.
    #[serde(default)]
    pub writer: bool,
    /// How many read-only watchers are attached.
    #[serde(default)]
    pub watchers: u32,
}

impl TerminalStatus {
    /// The status of the interactive session in `dir`, when its membership record says it is
    /// interactive and the verdict says it runs: attachable while its recorded supervisor runs
    /// (pid and start time), with `attach.toml`'s counts. Reads two small files.
    pub fn of(dir: &StoreDir, verdict: Option<&Verdict>) -> Option<Self> {
        if !verdict.is_some_and(Verdict::is_alive) {
            return None;
        }
        let record = crate::membership::MembershipRecord::load(dir).ok()??;
        if !record.interactive {
            return None;
        }
        let supervisor = record.supervisor;
        let attachable = csa_process::running_as(supervisor.pid, supervisor.start());
        let counts = dir
            .read_capped("attach.toml", 4096)
            .ok()
            .and_then(|(bytes, _)| {
                toml::from_str::<TerminalStatus>(&String::from_utf8_lossy(&bytes)).ok()
            })
            .unwrap_or_default();
        Some(TerminalStatus {
            attachable,
            writer: attachable && counts.writer,
            watchers: if attachable { counts.watchers } else { 0 },
        })
    }
}

/// Reads one session for `list`, through `sessions` (the project's open `sessions/`
/// directory). Liveness is checked for Active sessions only.
///
/// # Errors
/// The state.toml errors of [`SessionState::load`]. An unparsable result.toml is not an error
/// here (its status shows as null).
pub fn summarize(ctx: &LivenessContext, sessions: &StoreDir, id: &str) -> Result<SessionSummary> {
    let dir = open_session_in(sessions, id)?;
    let result = ResultHead::parse(
        dir.read_capped(RESULT_FILE, MAX_RESULT_BYTES),
        &dir.join(RESULT_FILE),
    )
    .ok()
    .flatten();
    let v = match result {
        Some(_) => StateView::parse_root(
            dir.read_capped(STATE_FILE, MAX_STATE_BYTES),
            dir.path(),
            &dir.join(STATE_FILE),
        )?,
        // Without a result to name the tool, it comes from [tools]: read the whole state.
        None => SessionState::load(&dir)?.view,
    };
    let verdict = (v.phase == Phase::Active).then(|| liveness::assess(ctx, &dir, id, true).verdict);
    match &verdict {
        None => tracing::info!(
            "session {id}: {} (ended): liveness not checked",
            v.phase.as_str()
        ),
        Some(Verdict::Alive(why)) => tracing::info!("session {id}: active: alive: {why}"),
        Some(Verdict::Foreign(why)) => tracing::info!("session {id}: active: foreign: {why}"),
        Some(Verdict::Dead { reason, .. }) => {
            tracing::info!("session {id}: active: dead: {reason}")
        }
    }
    let resumable = v.is_resumable();
    Ok(SessionSummary {
        session_id: id.to_owned(),
        status: Status::derive(v.phase, verdict.as_ref()),
        phase: v.phase,
        result_status: result.as_ref().map(|r| r.status.to_string()),
        exit_code: result.as_ref().map(|r| r.exit_code),
        tool: result
            .as_ref()
            .map(|r| r.tool.clone())
            .or_else(|| v.latest_tool().map(str::to_owned)),
        description: v.description,
        created_at: v
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        last_accessed: v
            .last_accessed
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        resumable,
        project_path: v.project_path,
        terminal: TerminalStatus::of(&dir, verdict.as_ref()),
        liveness: verdict.as_ref().map(|v| match v {
            Verdict::Alive(why) => format!("alive: {why}"),
            Verdict::Foreign(why) => format!("foreign: {why}"),
            Verdict::Dead { reason, .. } => format!("dead: {reason}"),
        }),
    })
}

/// Most sessions [`lineage`] follows: a longer chain is a loop or a corrupt file, not a real
/// nesting of agents.
pub const MAX_LINEAGE: usize = 64;

/// The session `id` and its ancestors, nearest first: each session's parent is its state.toml's
/// `[genealogy] parent_session_id`, looked up as [`find_session`] does (in `scope` first, then
/// every project of `roots`). The chain stops at a session that cannot be found or read, at a
/// parent id that is not a ULID, at a session seen before (a loop), and after
/// [`MAX_LINEAGE`] sessions. `id` itself is always included (uppercased), found or not, so a
/// caller can exclude its own session even when it lives under another state root.
///
/// Used to leave the caller's own session and the sessions that started it out of `csa session
/// list --check` (an agent committing from inside csa must not be blocked by itself). Reads
/// state.toml files only; writes nothing.
pub fn lineage(roots: &StateRoots, scope: &[Project], id: &str) -> Vec<String> {
    let mut chain = vec![id.to_ascii_uppercase()];
    while chain.len() < MAX_LINEAGE {
        let current = &chain[chain.len() - 1];
        if !paths::is_ulid(current) {
            break;
        }
        let Ok(session) = find_session(roots, scope, current) else {
            break;
        };
        let parent = match session.open().and_then(|s| SessionState::load(&s.dir)) {
            Ok(state) => state
                .view
                .genealogy
                .and_then(|g| g.parent_session_id)
                .map(|p| p.to_ascii_uppercase()),
            Err(_) => None,
        };
        match parent {
            Some(parent) if !chain.contains(&parent) => chain.push(parent),
            _ => break,
        }
    }
    chain
}

/// The Active sessions whose `[genealogy] parent_session_id` is one of `parents` (ULIDs, any
/// case), in every project of `roots`: the child sessions a session's agent started and that
/// have not ended (a `csa run` from inside a session is a child session of its own, which
/// stops neither with its parent's turn nor with its parent's kill). Only the sessions each
/// project's active record says may be Active are read ([`crate::active::may_be_active`]);
/// sessions or projects that cannot be read are left out. Sorted by id; reads state.toml files
/// only, writes nothing.
pub fn active_children(roots: &StateRoots, parents: &[String]) -> Vec<SessionRef> {
    let parents: Vec<String> = parents.iter().map(|p| p.to_ascii_uppercase()).collect();
    let mut children = Vec::new();
    for root in roots.iter() {
        let Ok(projects) = paths::all_projects(root) else {
            continue;
        };
        for project in projects {
            let Ok(Some(sessions)) = project.open_sessions() else {
                continue;
            };
            let Ok(ids) = crate::active::may_be_active(&sessions) else {
                continue;
            };
            for id in ids {
                let Ok(dir) = open_session_in(&sessions, &id) else {
                    continue;
                };
                let Ok(state) = SessionState::load(&dir) else {
                    continue;
                };
                let parent = state
                    .view
                    .genealogy
                    .and_then(|g| g.parent_session_id)
                    .map(|p| p.to_ascii_uppercase());
                if state.view.phase == Phase::Active && parent.is_some_and(|p| parents.contains(&p))
                {
                    children.push(SessionRef {
                        id,
                        project: project.clone(),
                    });
                }
            }
        }
    }
    children.sort_by(|a, b| a.id.cmp(&b.id));
    children
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    /// A session `id` of `project` whose state names `parent`.
    fn session(project: &Project, id: &str, parent: Option<&str>) {
        let dir = project.session_dir(id);
        fs_err::create_dir_all(&dir).expect("mkdir");
        let genealogy = parent.map_or(String::new(), |p| {
            format!("\n[genealogy]\ndepth = 1\nparent_session_id = \"{p}\"\n")
        });
        fs_err::write(
            dir.join(STATE_FILE),
            format!(
                "meta_session_id = \"{id}\"\nproject_path = \"/p\"\n\
                 created_at = \"2026-01-01T00:00:00Z\"\nlast_accessed = \"2026-01-01T00:00:00Z\"\n{genealogy}"
            ),
        )
        .expect("write");
    }

    #[test]
    fn lineage_follows_parents_across_projects_and_stops_at_loops_and_gaps() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let roots = StateRoots::resolve(Some(tmp.path())).expect("roots");
        let here = Project::new(tmp.path(), "home/u/repo");
        let there = Project::new(tmp.path(), "home/u/other");
        let [a, b, c, d, e] = [
            "01M90XTCEET4PBPD2FJ7MV21JA",
            "01M90XTCEET4PBPD2FJ7MV21JB",
            "01M90XTCEET4PBPD2FJ7MV21JC",
            "01M90XTCEET4PBPD2FJ7MV21JD",
            "01M90XTCEET4PBPD2FJ7MV21JE",
        ];
        // c (here) -> b (there) -> a (here); d -> e -> d (a loop); a parent that is missing.
        session(&here, a, None);
        session(&there, b, Some(a));
        session(&here, c, Some(b));
        session(&here, d, Some(e));
        session(&here, e, Some(d));
        let scope = [here.clone()];
        assert_eq!(lineage(&roots, &scope, &c.to_lowercase()), [c, b, a]);
        assert_eq!(lineage(&roots, &scope, d), [d, e]);
        let gone = "01M90XTCEET4PBPD2FJ7MV21JF";
        session(&here, "01M90XTCEET4PBPD2FJ7MV21JG", Some(gone));
        assert_eq!(
            lineage(&roots, &scope, "01M90XTCEET4PBPD2FJ7MV21JG"),
            ["01M90XTCEET4PBPD2FJ7MV21JG", gone]
        );
        // Not a session id at all: only itself, nothing looked up.
        assert_eq!(lineage(&roots, &scope, "../x"), ["../X"]);
    }
}
