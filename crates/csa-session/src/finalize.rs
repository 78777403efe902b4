//! Finalizing a turn by its owner (`csa run`'s supervisor): publish result.toml and move the
//! session out of `active`, under the session's `.reconcile.lock`, so that a reconciler and the
//! owner never both finalize. The same protocol as reconcile (docs/reconcile.md): the result is
//! published with `link(2)` (an existing result wins), then state.toml is rewritten; if that
//! fails, the result is taken back only if it is still byte-for-byte ours. Every file is written
//! through the session directory's descriptor, which the supervisor opened when it created (or
//! resumed) the session and which the lock verifies ([`crate::dirfd`]): the turn is finalized in
//! its own directory, whatever is renamed or swapped at its path meanwhile.

use std::io;

use chrono::Utc;

use crate::active::ActiveRecord;
use crate::atomic::{write_atomic, Publish};
use crate::create::timestamp;
use crate::dirfd::StoreDir;
use crate::error::Result;
use crate::lock::{Holder, ReconcileLock, Wait};
use crate::paths::OpenSession;
use crate::result::{SessionResult, RESULT_FILE};
use crate::state::{Phase, SessionState};

/// What finalizing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalized {
    /// Our result was published and the session moved to the requested phase.
    Published,
    /// The session had already ended (someone else finalized it): nothing was changed.
    AlreadyEnded(Phase),
    /// A result already existed and was kept; the session moved to the requested phase.
    KeptExistingResult,
}

/// How a turn ends.
#[derive(Debug, Clone)]
pub struct TurnEnd<'a> {
    /// The result to publish.
    pub result: &'a SessionResult,
    /// The phase to move to (`available` after a run, `retired` after a launch failure).
    pub phase: Phase,
    /// `termination_reason` to set, if any.
    pub termination_reason: Option<&'a str>,
    /// The `[tools.<tool>]` entry to update.
    pub tool: &'a str,
}

/// Finalizes the turn of the open `session`. Waits for the session's lock as long as it takes
/// (the owner owes the outcome), saying once, as a warning, which lock it waits for and who
/// holds it.
///
/// # Errors
/// [`crate::StoreError`] from reading or writing the session's files, naming the path; after a
/// failed state write the published result has been taken back (if still ours).
pub fn finalize_turn(session: &OpenSession, end: &TurnEnd<'_>) -> Result<Finalized> {
    finalize_turn_with(session, end, Wait::Forever, |holder| {
        tracing::warn!(
            lock = %holder.path.display(),
            "waiting to finalize the turn: {} holds the session's lock",
            holder.describe()
        );
    })
}

/// [`finalize_turn`], waiting for the session's lock as `wait` says and calling `on_wait` once
/// if it has to wait ([`ReconcileLock::acquire_with`]). Besides the result and the phase, the
/// turn's end (`end.result.completed_at`) becomes the session's `last_accessed`: the time of
/// last use is the end of the last turn.
///
/// # Errors
/// As [`finalize_turn`], plus [`crate::StoreError::LockTimeout`] when a bounded wait gives up
/// (nothing was changed).
pub fn finalize_turn_with(
    session: &OpenSession,
    end: &TurnEnd<'_>,
    wait: Wait,
    on_wait: impl FnOnce(&Holder),
) -> Result<Finalized> {
    let id = session.id.as_str();
    let lock = ReconcileLock::acquire_with(&session.dir, wait, on_wait)?;
    sweep(&lock);
    finalize_locked(&lock, &session.sessions, id, end)
}

/// [`finalize_turn`]'s writes, for a caller that holds the session's lock already (reconcile
/// finalizing from a turn-end record).
///
/// # Errors
/// As [`finalize_turn`].
pub fn finalize_locked(
    lock: &ReconcileLock,
    sessions: &StoreDir,
    id: &str,
    end: &TurnEnd<'_>,
) -> Result<Finalized> {
    let session_dir = lock.dir();
    let state = SessionState::load(session_dir)?;
    if state.view.phase.is_ended() {
        return Ok(Finalized::AlreadyEnded(state.view.phase));
    }
    // A kill was requested while the agent ran: the turn ends as killed, whoever finalizes it
    // and however the agent ended (crate::kill, step 3).
    let killed =
        crate::kill::requested(session_dir).map(|signal| killed_result(end.result, signal));
    let (phase, termination_reason, result) = match &killed {
        Some(result) => (Phase::Retired, Some("killed"), result),
        None => (end.phase, end.termination_reason, end.result),
    };
    let ours = result.to_toml();
    let outcome = match crate::failpoint!(
        "finalize::publish_result",
        "write",
        &session_dir.join(RESULT_FILE)
    )
    .and_then(|()| {
        write_atomic(
            session_dir,
            RESULT_FILE,
            ours.as_bytes(),
            0o600,
            Publish::CreateNew,
        )
    }) {
        Ok(()) => Finalized::Published,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Finalized::KeptExistingResult,
        Err(e) => return Err(e.into()),
    };
    let now = timestamp(Utc::now());
    let ended = timestamp(result.completed_at.max(state.view.last_accessed));
    let written = state.edit(lock, |doc| {
        doc["phase"] = toml_edit::value(phase.as_str());
        doc["last_accessed"] = toml_edit::value(ended.as_str());
        if let Some(reason) = termination_reason {
            doc["termination_reason"] = toml_edit::value(reason);
        }
        let summary = result.summary.lines().last().unwrap_or_default();
        let tool = &mut doc["tools"][end.tool];
        tool["last_exit_code"] = toml_edit::value(result.exit_code);
        tool["last_action_summary"] = toml_edit::value(summary);
        tool["updated_at"] = toml_edit::value(now.as_str());
    });
    if let Err(err) = written {
        if outcome == Finalized::Published {
            let note = crate::reconcile::roll_back(session_dir, ours.as_bytes());
            tracing::warn!("{note}");
        }
        return Err(err);
    }
    if let Err(err) = crate::failpoint!(
        "finalize::clear_kill_marker",
        "remove",
        &session_dir.join(crate::kill::KILL_MARKER)
    )
    .and_then(|()| crate::kill::clear(lock))
    {
        tracing::warn!(%err, "could not remove the kill marker");
    }
    if let Err(err) = ActiveRecord::new(sessions).remove(id, lock) {
        tracing::warn!(%err, "could not prune the finished session's record entry");
    }
    Ok(outcome)
}

/// The result of a turn that a kill ended: status `signal`, exit code 128 + the signal that
/// ended the agent (or, if it exited on its own after the kill's signal, 128 + the last signal
/// sent, with its own exit code kept as upstream's `raw_process_exit_code`).
pub fn killed_result(result: &SessionResult, last_sent: nix::sys::signal::Signal) -> SessionResult {
    let mut killed = result.clone();
    if result.status != crate::result::ResultStatus::Signal {
        killed.exit_code = 128 + last_sent as i64;
        killed.other.insert(
            "raw_process_exit_code".into(),
            toml::Value::Integer(result.exit_code),
        );
    }
    killed.status = crate::result::ResultStatus::Signal;
    if !killed.summary.starts_with("killed by csa session kill") {
        killed.summary = format!(
            "killed by csa session kill ({last_sent}): {}",
            result.summary
        );
    }
    killed
}

/// Sweeps what crashed writers left in the session directory (a kill killed while writing its
/// marker, say): finalizing is the next command to hold the lock. Best effort.
fn sweep(lock: &ReconcileLock) {
    let swept = crate::leftovers::sweep_session(lock);
    for err in swept.errors {
        tracing::warn!("{err}");
    }
}
