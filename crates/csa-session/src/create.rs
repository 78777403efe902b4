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
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use csa_process::{HostIdentity, StartTime};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::active::ActiveRecord;
use crate::atomic::{sync_dir, with_path, write_atomic, Publish};
use crate::error::{Result, StoreError};
use crate::lock::{open_lock_file, rewrite_lock_body};
use crate::paths::Project;

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
    /// Reads `<dir>/run.toml` (at most 16 MiB); an empty record when there is none (a session
    /// upstream wrote).
    ///
    /// # Errors
    /// [`StoreError::InvalidState`] naming the file when it does not parse; the read's error
    /// otherwise.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(RUN_FILE);
        match crate::read_capped(&path, 16 << 20) {
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

/// Creates `dir` and its missing parents with mode 0700.
///
/// # Errors
/// The error of `mkdir`, naming the path.
pub fn create_private_dirs(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| with_path(e, "create", dir))
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
    sessions_dir: PathBuf,
    build_dir: PathBuf,
    depth: u32,
    tool_lock: Flock<File>,
}

/// A published session whose supervisor holds its tool lock.
#[derive(Debug)]
pub struct Created {
    /// Its ULID.
    pub id: String,
    /// `sessions/<ULID>/`.
    pub dir: PathBuf,
    /// Its genealogy depth.
    pub depth: u32,
    tool_lock: Flock<File>,
}

impl Draft {
    /// Builds a new session of `project` (steps 1–2 of the module docs). `supervisor` is the
    /// supervising process's pid and start time (`csa_process::start_time`).
    ///
    /// # Errors
    /// [`StoreError::Io`] for any failed write, naming the path; the partial build directory
    /// is removed (best effort) and nothing is visible as a session.
    pub fn build(
        project: &Project,
        new: &NewSession,
        supervisor: (u32, Option<StartTime>),
        host: &HostIdentity,
    ) -> Result<Self> {
        let sessions_dir = project.sessions_dir.clone();
        create_private_dirs(&sessions_dir)?;
        let id = new.id.clone();
        ActiveRecord::new(&sessions_dir).add(&id)?;
        let build_dir = sessions_dir.join(build_dir_name(&id));
        crate::failpoint!("create::make_build_dir", "create", &build_dir)?;
        create_private_dirs(&build_dir)?;
        let depth = new.parent.as_ref().map_or(0, |p| p.depth + 1);
        match write_files(&build_dir, &id, new, depth, supervisor, host) {
            Ok(tool_lock) => Ok(Draft {
                id,
                sessions_dir,
                build_dir,
                depth,
                tool_lock,
            }),
            Err(err) => {
                // Our own dot-directory, never a session: safe to remove (no symlink is
                // followed by remove_dir_all).
                let _ = fs_err::remove_dir_all(&build_dir);
                Err(err)
            }
        }
    }

    /// The session's ULID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Makes the session visible (step 3): rename into place, fsync `sessions/`.
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the paths; the draft is then removed (best effort).
    pub fn publish(self) -> Result<Created> {
        let dir = self.sessions_dir.join(&self.id);
        if let Err(err) = crate::failpoint!("create::publish", "rename", &self.build_dir)
            .and_then(|()| fs_err::rename(&self.build_dir, &dir))
            .and_then(|()| sync_dir(&self.sessions_dir))
        {
            let _ = fs_err::remove_dir_all(&self.build_dir);
            return Err(StoreError::Io(err));
        }
        Ok(Created {
            id: self.id,
            dir,
            depth: self.depth,
            tool_lock: self.tool_lock,
        })
    }
}

impl Created {
    /// A session whose supervisor holds its tool lock (for a resumed turn).
    pub(crate) fn held(id: String, dir: PathBuf, depth: u32, tool_lock: Flock<File>) -> Self {
        Created {
            id,
            dir,
            depth,
            tool_lock,
        }
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
    dir: &Path,
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
    dir: &Path,
    tool: &str,
    (pid, start): (u32, Option<StartTime>),
    host: &HostIdentity,
    now: &str,
) -> Result<Flock<File>> {
    let locks = dir.join("locks");
    crate::failpoint!("create::make_locks_dir", "create", &locks)?;
    // Not through a symlink in its place (a resumed session's `locks` may be anything).
    crate::secure::create_dirs_under(dir, Path::new("locks"))?;
    let lock_path = locks.join(format!("{tool}.lock"));
    crate::failpoint!("create::take_tool_lock", "lock", &lock_path)?;
    let file = open_lock_file(&lock_path)?;
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
        assert_eq!(
            ActiveRecord::new(&project.sessions_dir).ids().expect("ids"),
            [draft.id().to_owned()]
        );
        let created = draft.publish().expect("publish");
        assert_eq!(
            project.session_ids().expect("ids"),
            std::slice::from_ref(&created.id)
        );
        let state = SessionState::load(&created.dir).expect("load");
        assert_eq!(state.view.phase, Phase::Active);
        assert_eq!(state.view.turn_count, Some(1));
        assert_eq!(state.view.genealogy.as_ref().and_then(|g| g.depth), Some(3));
        assert_eq!(state.view.description.as_deref(), Some("say \"hi\""));
        assert_eq!(state.view.latest_tool(), Some("sh"));
        // The supervisor (this process) holds the tool lock, so the session is alive.
        let a = crate::liveness::assess(
            &crate::liveness::LivenessContext::new(),
            &created.dir,
            &created.id,
            true,
        );
        assert!(a.verdict.is_alive(), "{a:?}");
    }
}
