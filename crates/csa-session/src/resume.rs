//! Starting a new turn in an existing session (`csa session resume`), as a compare-and-swap:
//! decided and written under the session's `.reconcile.lock`, after re-reading state.toml, with
//! the one resumability predicate ([`StateView::is_resumable`]).
//!
//! Steps under the lock, in this order (so a crash at any point leaves a consistent session):
//! 1. the session enters the project's active record (before it can become active);
//! 2. the previous turn's `result.toml` moves to `output/turns/turn-NNNNNN/result.toml`
//!    (NNNNNN: that turn's number); a crash after this, before step 5, leaves an ended session
//!    without result.toml whose turn history holds its current turn's result: the next
//!    reconcile, which visits it because of step 1, moves it back ([`undo_interrupted_archive`]),
//!    and the invariant checker accepts exactly that window;
//! 3. `daemon.pid` names the new supervisor and it takes `locks/<tool>.lock`;
//! 4. run.toml gains the new turn;
//! 5. state.toml: `phase = "active"`, `turn_count` + 1, `last_accessed` now, no
//!    `termination_reason`. From here the session is Active with its liveness signals in place;
//!    a crash leaves a dead supervisor, and reconcile retires the turn as `orphaned_process`,
//!    which is resumable again.

use std::fs::File;
use std::io;

use chrono::Utc;
use csa_process::HostIdentity;
use nix::fcntl::Flock;

use crate::active::ActiveRecord;
use crate::atomic::{sync_dir, write_atomic, Publish};
use crate::create::{take_tool_lock, timestamp, Created, RunRecord, TurnRecord, RUN_FILE};
use crate::dirfd::StoreDir;
use crate::error::{Result, StoreError};
use crate::liveness::{assess, LivenessContext, Verdict};
use crate::lock::ReconcileLock;
use crate::paths::OpenSession;
use crate::result::RESULT_FILE;
use crate::state::{Phase, SessionState, StateView};

/// Why a session cannot be resumed now.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Its phase (and termination reason) do not allow a new turn.
    #[error("not resumable: session {id} is {phase}{}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    NotResumable {
        /// The session.
        id: String,
        /// Its phase.
        phase: &'static str,
        /// Its termination reason, if any.
        reason: Option<String>,
    },
    /// Another resume of it is starting (it holds the project's directory claim).
    #[error("not resumable: session {0} is already being resumed or changed by another command")]
    Busy(String),
    /// An owned process of its previous turn is still alive.
    #[error("not resumable: session {id} still has a live process ({why})")]
    Alive {
        /// The session.
        id: String,
        /// The liveness signal.
        why: String,
    },
    /// Its owner is foreign: on another machine or in another PID namespace, so whether its
    /// previous turn still runs cannot be told from here.
    #[error("not resumable: session {id} is foreign: its owner runs on another machine or in another PID namespace ({why})")]
    Foreign {
        /// The session.
        id: String,
        /// The liveness signal naming the other machine or namespace.
        why: String,
    },
    /// It has no recorded command and none was given.
    #[error("session {0} has no recorded command to resume: give one after --")]
    NoCommand(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<io::Error> for Refusal {
    fn from(err: io::Error) -> Self {
        Refusal::Store(StoreError::Io(err))
    }
}

/// A begun turn.
#[derive(Debug)]
pub struct Begun {
    /// The session, its tool lock held by this process.
    pub created: Created,
    /// The new turn's number.
    pub turn: u32,
    /// The session's tool.
    pub tool: String,
    /// The command of the new turn.
    pub command: Vec<String>,
}

/// Begins a new turn of the open `session` (steps 1–5 of the module docs). `command`:
/// the new turn's command, or `None` for the previous turn's (from run.toml). `turn_record`
/// builds the run.toml entry from the turn number and the command. `lock` is the session's
/// lock, which the caller has taken (waiting for it as long as a person will:
/// [`ReconcileLock::acquire_with`] on `session.dir`); everything is decided again under it,
/// and written through the directory descriptor the lock holds.
///
/// # Errors
/// A [`Refusal`]; nothing is changed unless the refusal is [`Refusal::Store`] after step 1.
pub fn begin_turn(
    session: &OpenSession,
    command: Option<Vec<String>>,
    turn_record: impl FnOnce(u32, &[String]) -> TurnRecord,
    supervisor: (u32, Option<csa_process::StartTime>),
    host: &HostIdentity,
    lock: &ReconcileLock,
) -> std::result::Result<Begun, Refusal> {
    let id = session.id.as_str();
    let dir = lock.dir();
    // The locked directory must still be the session at `sessions/<ULID>` (not deleted,
    // quarantined or swapped for something else while the lock was awaited).
    if !session.in_place()? {
        return Err(StoreError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{}: the session directory was moved or replaced",
                session.sessions.join(id).display()
            ),
        ))
        .into());
    }
    let swept = crate::leftovers::sweep_session(lock);
    for err in swept.errors {
        tracing::warn!("{err}");
    }
    let state = SessionState::load(dir)?;
    let view: &StateView = &state.view;
    if !view.is_resumable() {
        return Err(Refusal::NotResumable {
            id: id.to_owned(),
            phase: view.phase.as_str(),
            reason: view.termination_reason.clone(),
        });
    }
    match assess(&LivenessContext::new(), dir, id, false).verdict {
        Verdict::Alive(why) => {
            return Err(Refusal::Alive {
                id: id.to_owned(),
                why,
            })
        }
        Verdict::Foreign(why) => {
            return Err(Refusal::Foreign {
                id: id.to_owned(),
                why,
            })
        }
        Verdict::Dead { .. } => {}
    }
    let mut run = RunRecord::load(dir)?;
    let command = match command.or_else(|| run.turns.last().map(|t| t.command.clone())) {
        Some(c) if !c.is_empty() => c,
        _ => return Err(Refusal::NoCommand(id.to_owned())),
    };
    let previous = u32::try_from(view.turn_count.unwrap_or(1).max(1)).unwrap_or(u32::MAX);
    let turn = previous.saturating_add(1);
    let tool = view
        .latest_tool()
        .map(str::to_owned)
        .unwrap_or_else(|| "unknown".to_owned());
    let depth = view.genealogy.as_ref().and_then(|g| g.depth).unwrap_or(0);

    // 1.
    ActiveRecord::new(&session.sessions).add(id)?;
    // Steps 2–5 are undone if one of them fails, so a failed resume leaves the session as it
    // was (its phase is only changed by step 5, the last).
    let prior_daemon = read_prior(dir, "daemon.pid");
    let prior_run = read_prior(dir, RUN_FILE);
    let steps = || -> std::result::Result<Flock<File>, Refusal> {
        // 2.
        if dir.exists(RESULT_FILE) {
            // Created without following a link the agent may have left (`output -> /elsewhere`).
            let history = dir.create_private_path(
                &std::path::Path::new("output/turns").join(format!("turn-{previous:06}")),
            )?;
            if history.exists(RESULT_FILE) {
                return Err(StoreError::Io(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{}: turn history already has this turn's result",
                        history.join(RESULT_FILE).display()
                    ),
                ))
                .into());
            }
            crate::failpoint!("resume::archive_result", "rename", &dir.join(RESULT_FILE))
                .and_then(|()| dir.rename_noreplace(RESULT_FILE, &history, RESULT_FILE))
                .map_err(StoreError::from)?;
            sync_dir(&history)?;
            sync_dir(dir)?;
        }
        // 3.
        let now = timestamp(Utc::now());
        let (pid, start) = supervisor;
        let daemon = crate::create::daemon_pid(pid, start);
        write_atomic(
            dir,
            "daemon.pid",
            daemon.as_bytes(),
            0o600,
            Publish::Replace,
        )?;
        crate::failpoint!("resume::take_tool_lock", "lock", &dir.join("locks"))?;
        let flock = take_tool_lock(dir, &tool, supervisor, host, &now)?;
        // 4.
        run.turns.push(turn_record(turn, &command));
        let body = toml::to_string(&run)
            .map_err(io::Error::other)
            .map_err(StoreError::from)?;
        write_atomic(dir, RUN_FILE, body.as_bytes(), 0o600, Publish::Replace)?;
        // 5.
        state.edit(lock, |doc| {
            doc["phase"] = toml_edit::value(Phase::Active.as_str());
            doc["turn_count"] = toml_edit::value(i64::from(turn));
            doc["last_accessed"] = toml_edit::value(now.as_str());
            doc.remove("termination_reason");
            let entry = &mut doc["tools"][tool.as_str()];
            entry["last_action_summary"] = toml_edit::value("started");
            entry["updated_at"] = toml_edit::value(now.as_str());
        })?;
        Ok(flock)
    };
    let flock = match steps() {
        Ok(flock) => flock,
        Err(err) => {
            undo(lock, prior_daemon.as_deref(), prior_run.as_deref());
            return Err(err);
        }
    };
    let held = OpenSession {
        id: id.to_owned(),
        sessions: session.sessions.try_clone()?,
        dir: dir.try_clone()?,
    };
    Ok(Begun {
        created: Created::held(held, depth, flock),
        turn,
        tool,
        command,
    })
}

/// Undoes steps 2–4 of a resume whose later step failed (module docs): the archived result
/// goes back, daemon.pid and run.toml get their previous bytes. Best effort: what cannot be
/// undone is logged, and the next reconcile puts the archived result back anyway.
fn undo(lock: &ReconcileLock, daemon: Option<&[u8]>, run: Option<&[u8]>) {
    let dir = lock.dir();
    if let Err(err) = undo_interrupted_archive(lock) {
        tracing::warn!("could not put back the archived result: {err}");
    }
    for (name, prior) in [("daemon.pid", daemon), (RUN_FILE, run)] {
        let restored = match prior {
            Some(bytes) => write_atomic(dir, name, bytes, 0o600, Publish::Replace),
            None => match dir.remove_file(name) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        if let Err(err) = restored {
            tracing::warn!("could not restore {}: {err}", dir.join(name).display());
        }
    }
}

/// The turn-history directory of turn `turn` (`output/turns/turn-NNNNNN`), relative to the
/// session directory.
pub(crate) fn history_dir(turn: u64) -> std::path::PathBuf {
    std::path::Path::new("output/turns").join(format!("turn-{turn:06}"))
}

/// The turn-history path of turn `turn`'s result, relative to the session directory.
pub(crate) fn archived_result(turn: u64) -> std::path::PathBuf {
    history_dir(turn).join(RESULT_FILE)
}

/// Whether the ended session in `dir` (state `view`) is in the window a resume killed between
/// steps 2 and 5 leaves: no result.toml, and its current turn's result in the turn history.
pub(crate) fn archive_interrupted(dir: &StoreDir, view: &StateView) -> bool {
    view.phase.is_ended()
        && !dir.exists(RESULT_FILE)
        && dir
            .metadata(archived_result(view.turn_count.unwrap_or(1).max(1)))
            .is_ok_and(|m| m.is_file())
}

/// The bytes of `name` in `dir` before a resume changes it (`None` when it cannot be read).
fn read_prior(dir: &StoreDir, name: &str) -> Option<Vec<u8>> {
    dir.read_capped(name, 16 << 20).ok().map(|(bytes, _)| bytes)
}

/// Undoes step 2 of a resume that died before step 5, under the session's lock: the current
/// turn's result goes back from the turn history to result.toml (`link(2)`, so a result.toml
/// that appeared meanwhile is never replaced; then the history name is removed). Returns
/// whether it did.
///
/// # Errors
/// [`StoreError`] for an unreadable state.toml or a failed link or unlink, naming the path.
pub fn undo_interrupted_archive(lock: &ReconcileLock) -> Result<bool> {
    let dir = lock.dir();
    let state = SessionState::load(dir)?;
    if !archive_interrupted(dir, &state.view) {
        return Ok(false);
    }
    let Some(history) =
        dir.open_dir_path(&history_dir(state.view.turn_count.unwrap_or(1).max(1)))?
    else {
        return Ok(false);
    };
    match history.hard_link(RESULT_FILE, dir, RESULT_FILE) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    sync_dir(dir)?;
    history.remove_file(RESULT_FILE)?;
    sync_dir(&history)?;
    Ok(true)
}
