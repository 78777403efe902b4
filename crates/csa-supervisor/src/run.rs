//! `csa run`: a new session for a command, one at a time per project directory.
//!
//! Steps: resolve and check the project directory; claim it ([`csa_session::claim`]), or run
//! nested under an ancestor's claim ([`crate::nesting`]), or wait for it; build and publish the
//! session ([`csa_session::create`]); then [`crate::launch::launch`] the turn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use csa_process::HostIdentity;
use csa_session::claim::{Busy, ClaimAttempt, ClaimHolder, DirClaim};
use csa_session::create::{is_valid_tool_name, timestamp, Draft, NewSession, Parent, TurnRecord};
use csa_session::inventory::find_session;
use csa_session::paths::{project_dir, Project, ProjectDir, ProjectDirError, StateRoots};
use csa_session::state::SessionState;

use crate::contain::{Choice, EarlyCgroup};
use crate::error::{describe, LaunchError};
use crate::launch::{
    launch, session_env, EndOfTurn, Events, Finished, Interactive, Mode, Turn, TurnClaim,
};

/// How long `--wait-for-dir` waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Until the directory is free.
    Forever,
    /// At most this long.
    AtMost(Duration),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The state directory given with `--state-dir`, if any.
    pub state_dir: Option<PathBuf>,
    /// The command and its arguments (non-empty).
    pub command: Vec<String>,
    /// The tool name (default: the command's file name).
    pub tool: Option<String>,
    /// A description for state.toml.
    pub description: Option<String>,
    /// The project directory (default: the current directory).
    pub cd: Option<PathBuf>,
    /// Do not claim the directory.
    pub allow_concurrent: bool,
    /// Wait for a busy directory.
    pub wait_for_dir: Option<WaitFor>,
    /// The parent session (default: `$CSA_SESSION_ID`).
    pub parent: Option<String>,
    /// What to do with leftovers at the end of the turn.
    pub end: EndOfTurn,
    /// Run the agent on a pseudo-terminal people attach to (`--tty`; a detached supervisor).
    pub interactive: Option<Interactive>,
}

/// Runs `request` as a new session supervised by this process.
///
/// # Errors
/// [`LaunchError`]: usage errors (`--cd`, tool name, parent), a busy directory, a launch
/// failure, and store errors.
pub fn run(
    request: &RunRequest,
    mode: Mode<'_>,
    events: &mut dyn Events,
) -> Result<Finished, LaunchError> {
    let roots = StateRoots::resolve(request.state_dir.as_deref())?;
    let cd = match &request.cd {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    // Before anything exists: a missing directory, a file, or a path that is not UTF-8 is a
    // usage error. Regression (issue 11): `run --cd FILE` created a session, then failed to
    // spawn there (exit 1); `n\xff` and `n\xfe` shared one project key.
    let what = if request.cd.is_some() {
        "--cd"
    } else {
        "the current directory"
    };
    let ProjectDir {
        path: project_dir,
        key,
    } = project_dir(&cd).map_err(|e| match e {
        ProjectDirError::Missing(e) => {
            LaunchError::Usage(format!("{what}: no such directory: {e}"))
        }
        other => LaunchError::Usage(format!("{what}: {other}")),
    })?;
    let project = Project::new(roots.primary(), &key);
    // Before creating anything: a root or project directory that another user owns or can
    // write, or that is a symbolic link inside the root, is refused (csa-session `secure`).
    for root in roots.iter() {
        csa_session::secure::check_root(root)?;
    }
    // A `--parent` that is no session id is refused before any directory is opened.
    if let Some(parent) = request.parent.as_deref() {
        if !csa_session::paths::is_ulid_prefix(parent) {
            return Err(csa_session::StoreError::MalformedSessionId(parent.to_owned()).into());
        }
    }
    csa_session::secure::check_project(&project)?;
    let program = &request.command[0];
    let tool = match &request.tool {
        Some(tool) => tool.clone(),
        None => Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if !is_valid_tool_name(&tool) {
        return Err(LaunchError::Usage(format!(
            "{} cannot name a tool: use 1-64 characters of A-Z a-z 0-9 . _ - (pass --tool NAME)",
            csa_session::error::shorten(&format!("{tool:?}"))
        )));
    }
    let parent = parent_of(&roots, request.parent.as_deref())?;

    // 1. Claim the directory (before anything exists), or run nested under an ancestor's.
    let claim = if request.allow_concurrent {
        TurnClaim::None
    } else {
        claim_dir(
            &roots,
            &project,
            &project_dir,
            request.wait_for_dir,
            parent.as_ref(),
            events,
        )?
    };

    // 2. Build and publish the session.
    let id = ulid::Ulid::new().to_string();
    let dir = project.session_dir(&id);
    let depth = parent.as_ref().map_or(0, |p| p.depth + 1);
    let env = session_env(
        &id,
        &dir,
        depth,
        &project_dir,
        parent.as_ref().map(|p| p.session_id.as_str()),
    );
    let started = Utc::now();
    let new = NewSession {
        id: id.clone(),
        project_path: project_dir.clone(),
        tool: tool.clone(),
        description: request.description.clone(),
        parent,
        turn: TurnRecord {
            turn: 1,
            command: request.command.clone(),
            cwd: project_dir.to_string_lossy().into_owned(),
            env: env.iter().cloned().collect::<BTreeMap<_, _>>(),
            started_at: timestamp(started),
            // A new session: its logs start empty.
            stdout_offset: Some(0),
            stderr_offset: Some(0),
        },
    };
    let me = std::process::id();
    let host = HostIdentity::current();
    let mut claim = claim;
    if let TurnClaim::Held(claim) = &mut claim {
        let holder = ClaimHolder {
            session_id: id.clone(),
            pid: me,
            started_at: timestamp(started),
        };
        if let Err(err) = claim.record_holder(&holder) {
            tracing::warn!(%err, "could not record the claim holder");
        }
    }
    // The cgroup is created and joined while the session is built (crate::contain).
    let early = EarlyCgroup::start(&id, Choice::from_env());
    let created = match Draft::build(&project, &new, (me, csa_process::start_time(me)), &host)
        .and_then(Draft::publish)
    {
        Ok(created) => created,
        Err(err) => {
            early.abandon();
            return Err(err.into());
        }
    };

    launch(
        Turn {
            created,
            number: 1,
            tool,
            command: request.command.clone(),
            project_dir,
            env,
            has_parent: new.parent.is_some(),
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

/// How long a run waits for a directory whose holder is only finishing its turn.
const FINISHING: Duration = Duration::from_secs(10);

/// Claims the project directory; runs nested when an ancestor of `parent` holds it and this
/// process descends from `parent`'s turn; otherwise waits with `--wait-for-dir` or reports it
/// busy.
///
/// # Errors
/// [`LaunchError::Busy`] when busy and not waiting (or waited long enough); I/O errors of the
/// claim file.
pub fn claim_dir(
    roots: &StateRoots,
    project: &Project,
    project_dir: &Path,
    wait_for_dir: Option<WaitFor>,
    parent: Option<&Parent>,
    events: &mut dyn Events,
) -> Result<TurnClaim, LaunchError> {
    let start = Instant::now();
    let mut said_waiting = false;
    loop {
        let busy = match DirClaim::try_acquire(project)? {
            ClaimAttempt::Claimed(claim) => return Ok(TurnClaim::Held(claim)),
            ClaimAttempt::Busy(busy) => busy,
        };
        if let Some(holder) = nested_under(roots, &busy, parent) {
            return Ok(TurnClaim::Nested(holder));
        }
        // The holder's agent has exited and its supervisor is finishing the turn: the
        // directory is free in a moment (a script's `csa session wait X && csa run …` must
        // not fail on it). Bounded: a supervisor still stopping leftovers after FINISHING
        // reads as busy.
        if busy.finishing && start.elapsed() < FINISHING {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let out_of_time = match wait_for_dir {
            None => true,
            Some(WaitFor::Forever) => false,
            Some(WaitFor::AtMost(limit)) => start.elapsed() >= limit,
        };
        if out_of_time {
            return Err(LaunchError::Busy {
                dir: project_dir.to_owned(),
                busy,
            });
        }
        if !said_waiting {
            events.waiting_for_dir(project_dir, &describe(&busy));
            said_waiting = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The holder of a busy claim when this run is nested under it (see [`crate::nesting`]).
fn nested_under(roots: &StateRoots, busy: &Busy, parent: Option<&Parent>) -> Option<String> {
    let holder = busy.session_id.as_deref()?;
    let parent = parent?;
    let chain = csa_session::inventory::lineage(roots, &[], &parent.session_id);
    if !chain.iter().any(|s| s == holder) {
        return None;
    }
    let parent_session = find_session(roots, &[], &parent.session_id)
        .ok()?
        .open()
        .ok()?;
    crate::nesting::descends_from(&parent_session.dir).then(|| holder.to_owned())
}

/// The parent session: `--parent`, else `$CSA_SESSION_ID` (ignored with a warning when it
/// names no session).
///
/// # Errors
/// The store's error for an explicit `--parent` that names no session.
pub fn parent_of(roots: &StateRoots, arg: Option<&str>) -> Result<Option<Parent>, LaunchError> {
    let (id, explicit) = match arg {
        Some(id) => (id.to_owned(), true),
        None => match std::env::var("CSA_SESSION_ID") {
            Ok(id) if !id.is_empty() => (id, false),
            _ => return Ok(None),
        },
    };
    let found = match find_session(roots, &[], &id) {
        Ok(found) => found,
        Err(err) if explicit => return Err(err.into()),
        Err(err) => {
            tracing::warn!("ignoring CSA_SESSION_ID: {err}");
            return Ok(None);
        }
    };
    let depth = found
        .open()
        .and_then(|s| SessionState::load(&s.dir))
        .ok()
        .and_then(|s| s.view.genealogy.and_then(|g| g.depth))
        .unwrap_or(0);
    Ok(Some(Parent {
        session_id: found.id,
        depth,
    }))
}
