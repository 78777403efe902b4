//! Creating a session for `csa run`: built under a dot-name with everything liveness needs, then
//! renamed into place, so a concurrent reconcile never sees it Active without its signals.
//!
//! Order (each step durable before the next, through [`write_atomic`]):
//! 1. add the session to the project's active record (docs/reconcile.md: an entry exists before
//!    a session becomes active);
//! 2. `sessions/.build-<ULID>/` (0700): state.toml (`phase = "active"`, `turn_count = 1`,
//!    genealogy, `[tools.<tool>]`), metadata.toml, run.toml (csa's own: the command line, its
//!    environment additions, turn history; upstream never rewrites it), empty output.log and
//!    stderr.log, `daemon.pid` naming the supervisor (pid and start ticks; the pid alone on
//!    the portable backend, which has no ticks), and
//!    `locks/<tool>.lock` flock-held by the supervisor, its JSON body naming it;
//! 3. [`Draft::publish`]: rename to `sessions/<ULID>/`, fsync `sessions/`.
//!
//! A kill -9 before 3 leaves a `.build-*` directory (never a session) and a record entry that
//! costs one check until it is pruned. The agent, spawned after 3, inherits the held tool lock,
//! so the session reads as alive while the agent lives even if the supervisor is killed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use csa_process::{HostIdentity, StartTime};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::active::ActiveRecord;
use crate::atomic::{sync_dir, with_path, write_atomic, Publish};
use crate::dirfd::StoreDir;
use crate::error::{Result, StoreError};
use crate::lock::rewrite_lock_body;
use crate::paths::{OpenSession, Project};

/// What a new session is made of.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Its ULID (chosen by the caller, which needs it for the agent's environment first).
    pub id: String,
    /// Canonical project directory (`project_path`).
    pub project_path: PathBuf,
    /// Tool name: `[tools.<tool>]`, `locks/<tool>.lock`. See [`is_valid_tool_name`].
    pub tool: String,
    /// Free-form description.
    pub description: Option<String>,
    /// The parent session, if any.
    pub parent: Option<Parent>,
    /// The first turn's command line and environment additions.
    pub turn: TurnRecord,
}

/// A parent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// Its ULID.
    pub session_id: String,
    /// Its depth (the child's is this + 1).
    pub depth: u32,
}

/// One turn in run.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// Turn number, from 1.
    pub turn: u32,
    /// The command and its arguments, exactly as run (never through a shell).
    pub command: Vec<String>,
    /// Where it ran.
    pub cwd: String,
    /// Environment variables csa added.
    pub env: BTreeMap<String, String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Size in bytes of output.log when the turn started: where this turn's stdout begins in
    /// it (the logs are appended to across turns; see [`crate::turns`]). Absent in run.toml
    /// files written before csa recorded it, or when the size could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_offset: Option<u64>,
    /// Size in bytes of stderr.log when the turn started, as [`TurnRecord::stdout_offset`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_offset: Option<u64>,
}

/// run.toml: csa's own record of a session's turns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Every turn started, oldest first.
    pub turns: Vec<TurnRecord>,
}

/// File name of csa's run record.
pub const RUN_FILE: &str = "run.toml";

impl RunRecord {
    /// Reads the `run.toml` of the session directory `dir` (at most 16 MiB); an empty record
    /// when there is none (a session upstream wrote).
    ///
    /// # Errors
    /// [`StoreError::InvalidState`] naming the file when it does not parse; the read's error
    /// otherwise.
    pub fn load(dir: &StoreDir) -> Result<Self> {
        let path = dir.join(RUN_FILE);
        match dir.read_capped(RUN_FILE, 16 << 20) {
            Ok((bytes, _)) => {
                let text = String::from_utf8_lossy(&bytes);
                toml::from_str(&text).map_err(|e| StoreError::InvalidState {
                    path,
                    reason: crate::state::one_line(&e),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RunRecord::default()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `name` can name a tool: 1–64 characters of `A-Z a-z 0-9 . _ -`, not starting with
/// `.` (it becomes a file name and a TOML table name).
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// RFC 3339 with nanoseconds, as upstream writes timestamps.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The JSON body of a tool lock written by csa (docs/format.md § 6). The start time goes under
/// the key of its unit, never under another's: upstream's `pid_start_time_ticks` (`null` when
/// the backend has no ticks), or csa's own `pid_start_time_us` / `pid_start_time_boot_s`.
#[derive(Debug, Clone, Serialize)]
pub struct LockRecord<'a> {
    /// The process named.
    pub pid: u32,
    /// Its start ticks (procfs backend).
    pub pid_start_time_ticks: Option<u64>,
    /// Its start in microseconds since the Unix epoch (portable backend on macOS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_start_time_us: Option<u64>,
    /// Its start in whole seconds since boot (portable backend elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_start_time_boot_s: Option<u64>,
    /// The tool.
    pub tool_name: &'a str,
    /// When csa took the lock.
    pub acquired_at: &'a str,
    /// Why.
    pub reason: &'a str,
    /// This boot (procfs backend).
    pub boot_id: Option<&'a str>,
    /// This boot's start, seconds since the Unix epoch (portable backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<u64>,
    /// This machine.
    pub machine_id: Option<&'a str>,
    /// This host.
    pub hostname: Option<&'a str>,
    /// This PID namespace.
    pub pid_ns: Option<u64>,
}

impl<'a> LockRecord<'a> {
    /// The body naming `pid`, started at `start`, with the identity of `host`.
    pub fn new(
        pid: u32,
        start: Option<StartTime>,
        tool_name: &'a str,
        acquired_at: &'a str,
        reason: &'a str,
        host: &'a HostIdentity,
    ) -> Self {
        LockRecord {
            pid,
            pid_start_time_ticks: start.and_then(StartTime::ticks),
            pid_start_time_us: start.and_then(StartTime::micros),
            pid_start_time_boot_s: start.and_then(StartTime::boot_seconds),
            tool_name,
            acquired_at,
            reason,
            boot_id: host.boot_id.as_deref(),
            boot_time: host.boot_time,
            machine_id: host.machine_id.as_deref(),
            hostname: host.hostname.as_deref(),
            pid_ns: host.pid_ns,
        }
    }
}

/// Name prefix of a session being built, in `sessions/`: `.build-<ULID>.<pid>.<ticks>`, naming
/// the building process (its pid and start ticks) so that a later command can tell a crashed
/// build from one in progress ([`crate::leftovers`]).
pub const BUILD_PREFIX: &str = ".build-";

/// `.build-<ULID>.<pid>.<start>` for session `id` built by this process (the owner tag of
/// `atomic::owner_tag`: start ticks, or the portable backend's start with its unit's letter).
fn build_dir_name(id: &str) -> String {
    format!("{BUILD_PREFIX}{id}.{}", crate::atomic::owner_tag())
}

/// A session being built under `sessions/.build-<ULID>.<pid>.<ticks>/`, not yet visible.
#[derive(Debug)]
pub struct Draft {
    id: String,
    sessions: StoreDir,
    build_name: String,
    build: StoreDir,
    depth: u32,
    tool_lock: Flock<File>,
}

/// A published session whose supervisor holds its tool lock.
#[derive(Debug)]
pub struct Created {
    /// Its ULID.
    pub id: String,
    /// `sessions/<ULID>/`, for messages and for the agent's environment.
    pub dir: PathBuf,
    /// Its genealogy depth.
    pub depth: u32,
    session: OpenSession,
    tool_lock: Flock<File>,
}

impl Draft {
    /// Builds a new session of `project` (steps 1–2 of the module docs). `supervisor` is the
    /// supervising process's pid and start time (`csa_process::start_time`).
    ///
    /// # Errors
    /// [`StoreError::Io`] for any failed write, naming the path, and
    /// [`StoreError::Insecure`] for a refused directory; the partial build directory is removed
    /// (best effort) and nothing is visible as a session.
    pub fn build(
        project: &Project,
        new: &NewSession,
        supervisor: (u32, Option<StartTime>),
        host: &HostIdentity,
    ) -> Result<Self> {
        let sessions = project.create_sessions()?;
        let id = new.id.clone();
        ActiveRecord::new(&sessions).add(&id)?;
        let build_name = build_dir_name(&id);
        crate::failpoint!(
            "create::make_build_dir",
            "create",
            &sessions.join(&build_name)
        )?;
        let build = sessions.create_private_dir(&build_name)?;
        let depth = new.parent.as_ref().map_or(0, |p| p.depth + 1);
        match write_files(&build, &id, new, depth, supervisor, host) {
            Ok(tool_lock) => Ok(Draft {
                id,
                sessions,
                build_name,
                build,
                depth,
                tool_lock,
            }),
            Err(err) => {
                // Our own dot-directory, never a session: safe to remove (through descriptors,
                // never following a link).
                let _ = sessions.remove_tree(&build_name);
                Err(err)
            }
        }
    }

    /// The session's ULID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Makes the session visible (step 3): rename into place (never over anything), fsync
    /// `sessions/`. What was renamed is checked to be the directory built (the descriptor csa
    /// wrote through), which the session keeps.
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the paths; the draft is then removed (best effort).
    pub fn publish(self) -> Result<Created> {
        let Draft {
            id,
            sessions,
            build_name,
            build,
            depth,
            tool_lock,
        } = self;
        let published = crate::failpoint!("create::publish", "rename", &sessions.join(&build_name))
            .and_then(|()| sessions.rename_noreplace(&build_name, &sessions, &id))
            .and_then(|()| {
                if sessions.same_dir(&id, &build)? {
                    Ok(())
                } else {
                    // Something else moved: put it back.
                    let _ = sessions.rename_noreplace(&id, &sessions, &build_name);
                    Err(io::Error::other(format!(
                        "{}: replaced while the session was published",
                        sessions.join(&build_name).display()
                    )))
                }
            })
            .and_then(|()| sync_dir(&sessions));
        if let Err(err) = published {
            let _ = sessions.remove_tree(&build_name);
            return Err(StoreError::Io(err));
        }
        let dir = sessions.join(&id);
        let build = build.renamed(dir.clone());
        Ok(Created {
            id: id.clone(),
            dir,
            depth,
            session: OpenSession {
                id,
                sessions,
                dir: build,
            },
            tool_lock,
        })
    }
}

impl Created {
    /// A session whose supervisor holds its tool lock (for a resumed turn).
    pub(crate) fn held(session: OpenSession, depth: u32, tool_lock: Flock<File>) -> Self {
        Created {
            id: session.id.clone(),
            dir: session.dir.path().to_owned(),
            depth,
            session,
            tool_lock,
        }
    }

    /// The session, as the descriptors of its directory and of its project's `sessions/`:
    /// everything its supervisor writes in the session goes through them.
    pub fn session(&self) -> &OpenSession {
        &self.session
    }

    /// The held tool lock's file, for the agent to inherit (then the agent holds it too).
    pub fn tool_lock_fd(&self) -> BorrowedFd<'_> {
        self.tool_lock.as_fd()
    }

    /// Rewrites the tool lock's body, in place (the flock is on this inode), to name the agent.
    ///
    /// # Errors
    /// I/O errors of the write, naming the path.
    pub fn record_agent(&mut self, record: &LockRecord<'_>) -> io::Result<()> {
        let path = self
            .dir
            .join("locks")
            .join(format!("{}.lock", record.tool_name));
        let body = serde_json::to_string(record).map_err(io::Error::other)?;
        rewrite_lock_body(&mut self.tool_lock, &path, body.as_bytes())
    }
}

fn write_files(
    dir: &StoreDir,
    id: &str,
    new: &NewSession,
    depth: u32,
    (pid, start): (u32, Option<StartTime>),
    host: &HostIdentity,
) -> Result<Flock<File>> {
    let now = timestamp(Utc::now());
    let mut doc = toml_edit::DocumentMut::new();
    doc["meta_session_id"] = toml_edit::value(id);
    if let Some(description) = &new.description {
        doc["description"] = toml_edit::value(description.as_str());
    }
    doc["project_path"] = toml_edit::value(new.project_path.to_string_lossy().as_ref());
    doc["created_at"] = toml_edit::value(now.as_str());
    doc["last_accessed"] = toml_edit::value(now.as_str());
    doc["csa_version"] = toml_edit::value(concat!("csa ", env!("CARGO_PKG_VERSION")));
    doc["phase"] = toml_edit::value("active");
    doc["turn_count"] = toml_edit::value(1);
    doc["is_seed_candidate"] = toml_edit::value(false);
    let mut genealogy = toml_edit::Table::new();
    genealogy["depth"] = toml_edit::value(i64::from(depth));
    if let Some(parent) = &new.parent {
        genealogy["parent_session_id"] = toml_edit::value(parent.session_id.as_str());
    }
    doc["genealogy"] = toml_edit::Item::Table(genealogy);
    let mut tool = toml_edit::Table::new();
    tool["last_action_summary"] = toml_edit::value("started");
    tool["last_exit_code"] = toml_edit::value(0);
    tool["updated_at"] = toml_edit::value(now.as_str());
    let mut tools = toml_edit::Table::new();
    tools.set_implicit(true);
    tools[new.tool.as_str()] = toml_edit::Item::Table(tool);
    doc["tools"] = toml_edit::Item::Table(tools);
    let mut context = toml_edit::Table::new();
    context["is_compacted"] = toml_edit::value(false);
    doc["context_status"] = toml_edit::Item::Table(context);

    let metadata = format!(
        "tool = {}\ntool_locked = true\n",
        toml_edit::Value::from(new.tool.as_str())
    );
    let run = toml::to_string(&RunRecord {
        turns: vec![new.turn.clone()],
    })
    .map_err(io::Error::other)?;
    for (name, body) in [
        ("state.toml", doc.to_string()),
        ("metadata.toml", metadata),
        (RUN_FILE, run),
        ("output.log", String::new()),
        ("stderr.log", String::new()),
        ("daemon.pid", daemon_pid(pid, start)),
    ] {
        write_atomic(dir, name, body.as_bytes(), 0o600, Publish::CreateNew)?;
    }
    take_tool_lock(dir, &new.tool, (pid, start), host, &now)
}

/// `daemon.pid`'s body in upstream's format, `<pid> [<start ticks>]`: the ticks only when the
/// start time is in ticks (upstream's file has no key for another unit).
pub(crate) fn daemon_pid(pid: u32, start: Option<StartTime>) -> String {
    match start.and_then(StartTime::ticks) {
        Some(t) => format!("{pid} {t}\n"),
        None => format!("{pid}\n"),
    }
}

/// Creates `locks/<tool>.lock` if needed, takes its flock (without waiting) and writes its body
/// naming the supervisor `(pid, start)`. Shared by new sessions and resumed turns.
///
/// # Errors
/// [`StoreError::Io`] naming the path; `WouldBlock` when another process holds the lock.
pub(crate) fn take_tool_lock(
    dir: &StoreDir,
    tool: &str,
    (pid, start): (u32, Option<StartTime>),
    host: &HostIdentity,
    now: &str,
) -> Result<Flock<File>> {
    crate::failpoint!("create::make_locks_dir", "create", &dir.join("locks"))?;
    // Not through a symlink in its place (a resumed session's `locks` may be anything).
    let locks = dir.create_private_dir("locks")?;
    let name = format!("{tool}.lock");
    let lock_path = locks.join(&name);
    crate::failpoint!("create::take_tool_lock", "lock", &lock_path)?;
    let file = locks.open_lock(&name)?;
    let mut flock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| with_path(e.into(), "flock", &lock_path))?;
    let body = serde_json::to_string(&LockRecord::new(
        pid,
        start,
        tool,
        now,
        "csa run supervisor",
        host,
    ))
    .map_err(io::Error::other)?;
    rewrite_lock_body(&mut flock, &lock_path, body.as_bytes())?;
    flock
        .sync_all()
        .map_err(|e| with_path(e, "fsync", &lock_path))?;
    sync_dir(&locks)?;
    Ok(flock)
}

#[cfg(test)]
// Tests inspect their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::state::{Phase, SessionState};

    #[test]
    fn tool_names() {
        for ok in ["codex", "claude-code", "gemini_cli", "a.b"] {
            assert!(is_valid_tool_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "..", "x\n"] {
            assert!(!is_valid_tool_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn builds_an_invisible_draft_then_publishes_a_loadable_active_session() {
        let root = tempfile::tempdir().expect("tempdir");
        let project = Project::new(root.path(), "p");
        let new = NewSession {
            id: ulid::Ulid::new().to_string(),
            project_path: root.path().to_owned(),
            tool: "sh".into(),
            description: Some("say \"hi\"".into()),
            parent: Some(Parent {
                session_id: "01M7YCZAQ6TZ9E7YGFW7ZMM2X7".into(),
                depth: 2,
            }),
            turn: TurnRecord {
                turn: 1,
                command: vec!["sh".into(), "-c".into(), "true".into()],
                cwd: "/".into(),
                env: BTreeMap::new(),
                started_at: timestamp(Utc::now()),
                stdout_offset: Some(0),
                stderr_offset: None,
            },
        };
        let me = std::process::id();
        let draft = Draft::build(
            &project,
            &new,
            (me, csa_process::start_time(me)),
            &HostIdentity::current(),
        )
        .expect("build");
        assert!(
            project.session_ids().expect("ids").is_empty(),
            "a draft is not a session"
        );
        let sessions = project.open_sessions().expect("open").expect("exists");
        assert_eq!(
            ActiveRecord::new(&sessions).ids().expect("ids"),
            [draft.id().to_owned()]
        );
        let created = draft.publish().expect("publish");
        assert_eq!(
            project.session_ids().expect("ids"),
            std::slice::from_ref(&created.id)
        );
        let state = SessionState::load(&created.session().dir).expect("load");
        assert_eq!(state.view.phase, Phase::Active);
        assert_eq!(state.view.turn_count, Some(1));
        assert_eq!(state.view.genealogy.as_ref().and_then(|g| g.depth), Some(3));
        assert_eq!(state.view.description.as_deref(), Some("say \"hi\""));
        assert_eq!(state.view.latest_tool(), Some("sh"));
        // The supervisor (this process) holds the tool lock, so the session is alive.
        let a = crate::liveness::assess(
            &crate::liveness::LivenessContext::new(),
            &created.session().dir,
            &created.id,
            true,
        );
        assert!(a.verdict.is_alive(), "{a:?}");
    }
}
