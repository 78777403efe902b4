//! `csa session resume`: a new turn in an existing session, started exactly like `csa run`
//! (directory claim, own session and process group, supervision, finalize) once csa-session's
//! `resume::begin_turn` has made the compare-and-swap under the session's lock.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::anyhow;
use chrono::Utc;
use csa_process::HostIdentity;
use csa_session::create::{timestamp, TurnRecord};
use csa_session::paths::StateRoots;
use csa_session::resume::{begin_turn, Refusal};
use csa_session::state::SessionState;

use super::locate;
use crate::cli::{GlobalArgs, ResumeArgs};
use crate::commands::run::{claim_dir, detach, launch, session_env, Turn};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command.
pub fn run(global: &GlobalArgs, args: &ResumeArgs) -> CommandResult {
    let ready = detach::Ready::from_env();
    let outcome = start(global, args, ready.as_ref());
    let outcome = super::deleted_meanwhile(global, args.cd.as_deref(), &args.session, outcome);
    // A detached supervisor reports every failure, finding no session included (deleted since
    // `resume --detach` found it). Regression: found by the stress test, where the client then
    // said "the supervisor exited (exit status: 4) before reporting" and exited 1.
    if let (Some(ready), Err(err)) = (&ready, &outcome) {
        ready.fail(err);
    }
    outcome
}

fn start(global: &GlobalArgs, args: &ResumeArgs, ready: Option<&detach::Ready>) -> CommandResult {
    let roots = StateRoots::resolve(global.state_dir.as_deref())?;
    super::check_roots(&roots)?;
    let session = locate(&roots, args.cd.as_deref(), &args.session)?;
    if args.detach && ready.is_none() {
        let mut sub: Vec<OsString> =
            vec!["session".into(), "resume".into(), session.id.clone().into()];
        if let Some(cd) = &args.cd {
            sub.extend(["--cd".into(), cd.clone().into_os_string()]);
        }
        if !args.command.is_empty() {
            sub.push("--".into());
            sub.extend(args.command.iter().map(OsString::from));
        }
        return detach::spawn_supervisor(global, &sub, args.format);
    }
    resume(global, args, &session, ready)
}

fn resume(
    global: &GlobalArgs,
    args: &ResumeArgs,
    session: &csa_session::inventory::SessionRef,
    ready: Option<&detach::Ready>,
) -> CommandResult {
    let dir = session.dir();
    let state = SessionState::load(&dir)?;
    // Say why early, before claiming anything, when the session cannot be resumed at all.
    if !state.view.is_resumable() {
        return Err(refused(Refusal::NotResumable {
            id: session.id.clone(),
            phase: state.view.phase.as_str(),
            reason: state.view.termination_reason.clone(),
        }));
    }
    let project_dir = PathBuf::from(&state.view.project_path);
    let shown: Vec<String> = if args.command.is_empty() {
        vec!["<previous command>".to_owned()]
    } else {
        args.command.clone()
    };
    let claim = match claim_dir(global, &session.project, &project_dir, None, &shown) {
        Ok(claim) => claim,
        Err(err)
            if err
                .error
                .to_string()
                .contains(&format!("session {}", session.id)) =>
        {
            return Err(CommandError::new(
                Exit::Busy,
                anyhow!(
                    "not resumable: session {} is already being resumed",
                    session.id
                ),
            ));
        }
        Err(err) => return Err(err),
    };
    let me = std::process::id();
    let host = HostIdentity::current();
    let started = Utc::now();
    let parent = state
        .view
        .genealogy
        .as_ref()
        .and_then(|g| g.parent_session_id.clone());
    let depth = state
        .view
        .genealogy
        .as_ref()
        .and_then(|g| g.depth)
        .unwrap_or(0);
    let env = session_env(&session.id, &dir, depth, &project_dir, parent.as_deref());
    let command = (!args.command.is_empty()).then(|| args.command.clone());
    let record_env = env.clone();
    let cwd = project_dir.to_string_lossy().into_owned();
    let begun = begin_turn(
        &session.project,
        &session.id,
        command,
        |turn, command| TurnRecord {
            turn,
            command: command.to_vec(),
            cwd,
            env: record_env.into_iter().collect(),
            started_at: timestamp(started),
        },
        (me, csa_process::start_ticks(me)),
        &host,
    )
    .map_err(refused)?;
    if ready.is_none() {
        eprintln!("csa: session {} (turn {})", session.id, begun.turn);
    }
    launch(Turn {
        created: begun.created,
        tool: begun.tool,
        command: begun.command,
        project_dir,
        env,
        has_parent: parent.is_some(),
        started,
        claim: Some(claim),
        ready,
        host,
    })
}

fn refused(refusal: Refusal) -> CommandError {
    let exit = match refusal {
        Refusal::NoCommand(_) => Exit::Usage,
        // The store's error, with its exit code and hint (a refused session directory's fix).
        Refusal::Store(err) => return err.into(),
        _ => Exit::Busy,
    };
    CommandError::new(exit, refusal)
}
