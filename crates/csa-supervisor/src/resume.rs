//! `csa session resume`: a new turn in an existing session, started exactly like `csa run`'s
//! (directory claim, containment, supervision, end of turn, finalize) once csa-session's
//! `resume::begin_turn` has made the compare-and-swap under the session's lock.

use std::path::PathBuf;

use chrono::Utc;
use csa_process::HostIdentity;
use csa_session::create::{timestamp, Parent, TurnRecord};
use csa_session::inventory::SessionRef;
use csa_session::lock::{ReconcileLock, Wait};
use csa_session::paths::StateRoots;
use csa_session::resume::{begin_turn, Refusal};
use csa_session::state::SessionState;

use crate::contain::{Choice, EarlyCgroup};
use crate::error::LaunchError;
use crate::launch::{launch, session_env, EndOfTurn, Events, Finished, Interactive, Mode, Turn};
use crate::run::claim_dir;

/// What to resume.
#[derive(Debug, Clone)]
pub struct ResumeRequest {
    /// The state directory given with `--state-dir`, if any.
    pub state_dir: Option<PathBuf>,
    /// The new turn's command, or empty for the previous turn's.
    pub command: Vec<String>,
    /// What to do with leftovers at the end of the turn.
    pub end: EndOfTurn,
    /// Run the agent on a pseudo-terminal people attach to (`--tty`; a detached supervisor).
    pub interactive: Option<Interactive>,
    /// How long to wait for the session's `.reconcile.lock` when another process holds it,
    /// before giving up ([`csa_session::StoreError::LockTimeout`]).
    pub lock_timeout: std::time::Duration,
}

/// Starts and supervises a new turn of `session`.
///
/// # Errors
/// [`LaunchError::Resume`] when the session cannot be resumed (not resumable, already being
/// resumed, a live process, no command, its lock held by another process for the whole
/// `lock_timeout`), [`LaunchError::Busy`] when its directory is claimed by another session,
/// and the errors of [`launch`].
pub fn resume(
    request: &ResumeRequest,
    session: &SessionRef,
    mode: Mode<'_>,
    events: &mut dyn Events,
) -> Result<Finished, LaunchError> {
    let roots = StateRoots::resolve(request.state_dir.as_deref())?;
    let dir = session.dir();
    // Opened from the state root without following a link; the lock, the checks under it and
    // every write of the new turn go through these descriptors.
    let open = session.open()?;
    let state = SessionState::load(&open.dir)?;
    // Say why early, before claiming anything, when the session cannot be resumed at all.
    if !state.view.is_resumable() {
        return Err(Refusal::NotResumable {
            id: session.id.clone(),
            phase: state.view.phase.as_str(),
            reason: state.view.termination_reason.clone(),
        }
        .into());
    }
    let project_dir = PathBuf::from(&state.view.project_path);
    let genealogy = state.view.genealogy.as_ref();
    let parent = genealogy.and_then(|g| g.parent_session_id.clone());
    let depth = genealogy.and_then(|g| g.depth).unwrap_or(0);
    let parent_ref = parent.as_ref().map(|p| Parent {
        session_id: p.clone(),
        depth: depth.saturating_sub(1),
    });
    let claim = match claim_dir(
        &roots,
        &session.project,
        &project_dir,
        None,
        parent_ref.as_ref(),
        events,
    ) {
        Ok(claim) => claim,
        Err(LaunchError::Busy { busy, .. })
            if busy.session_id.as_deref() == Some(session.id.as_str()) =>
        {
            return Err(Refusal::Busy(session.id.clone()).into());
        }
        Err(err) => return Err(err),
    };
    let me = std::process::id();
    let host = HostIdentity::current();
    let started = Utc::now();
    let env = session_env(&session.id, &dir, depth, &project_dir, parent.as_deref());
    let command = (!request.command.is_empty()).then(|| request.command.clone());
    let record_env = env.clone();
    let cwd = project_dir.to_string_lossy().into_owned();
    // Waits a bounded time for the session's lock, saying once who holds it (issue 11).
    let bound = request.lock_timeout;
    let lock = ReconcileLock::acquire_with(&open.dir, Wait::AtMost(bound), |holder| {
        events.waiting_for_lock(holder, bound);
    })?;
    let begun = begin_turn(
        &open,
        command,
        |turn, command| {
            let (stdout_offset, stderr_offset) = csa_session::turns::log_offsets(&open.dir);
            TurnRecord {
                turn,
                command: command.to_vec(),
                cwd,
                env: record_env.into_iter().collect(),
                started_at: timestamp(started),
                stdout_offset,
                stderr_offset,
            }
        },
        (me, csa_process::start_time(me)),
        &host,
        &lock,
    );
    drop(lock);
    let begun = begun?;
    // Only now: a previous turn's cgroup has the same name, and this process in it would read
    // as that turn's live process to begin_turn's check.
    let early = EarlyCgroup::start(&session.id, Choice::from_env());
    launch(
        Turn {
            created: begun.created,
            number: begun.turn,
            tool: begun.tool,
            command: begun.command,
            project_dir,
            env,
            has_parent: parent.is_some(),
            started,
            claim,
            mode,
            host,
            end: request.end,
            interactive: request.interactive.clone(),
            early,
        },
        events,
    )
}
