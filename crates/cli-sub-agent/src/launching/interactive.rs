//! `csa run --tty`: the agent runs on a pseudo-terminal that a supervisor of its own serves
//! (csa-terminal), so that the user can detach (Ctrl-\ then d) and attach again; in the
//! foreground, this process is the first client, and exits with the agent's exit status when it
//! ends while attached.

use anyhow::anyhow;
use csa_session::inventory::find_session;
use csa_session::paths::StateRoots;
use csa_supervisor::detach::{spawn_supervisor, Report, SupervisorMode};
use csa_terminal::{AttachOptions, Mode as AttachMode, WindowSize};

use super::attach::{connect, outcome_exit};
use super::{print_started, supervisor_args};
use crate::cli::{GlobalArgs, RunArgs};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Starts the supervisor with a pseudo-terminal of this terminal's size, then (unless
/// `--detach`) attaches to it.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> CommandResult {
    let size = WindowSize::of_terminal(std::io::stdout())
        .or_else(|| WindowSize::of_terminal(std::io::stdin()))
        .unwrap_or(WindowSize::DEFAULT);
    let mut with_size = RunArgs {
        tty: true,
        tty_size: Some(size),
        ..clone_args(args)
    };
    with_size.detach = true;
    let sub = supervisor_args(global, &with_size)?;
    let exe = std::env::current_exe()?;
    let report = spawn_supervisor(&exe, &sub, SupervisorMode::Detached).map_err(|e| {
        CommandError::new(Exit::Negative, anyhow!("cannot start the supervisor: {e}"))
    })?;
    let id = match report {
        Report::Started(id) | Report::Exited { session_id: id, .. } => id,
        Report::Failed { code, message } => {
            eprintln!("error: {message}");
            return Ok(Exit::from_code(code));
        }
        Report::Died(why) => return Err(CommandError::new(Exit::Negative, anyhow!(why))),
    };
    if args.detach {
        print_started(&id, args.format);
        return Ok(Exit::Success);
    }
    if !global.quiet {
        eprintln!("csa: session {id} (detach: Ctrl-\\ then d)");
    }
    let roots = StateRoots::resolve(global.state_dir.as_deref())?;
    let session = find_session(&roots, &[], &id)?;
    let outcome = connect(
        &session,
        AttachOptions {
            mode: AttachMode::Writer,
            replay: true,
        },
    )?;
    if let csa_terminal::Outcome::Exited(_) = outcome {
        // As a foreground run, return once the turn is finalized (its result published), not
        // merely when the agent's last byte has been shown.
        wait_finalized(
            &session.project.open_session(&session.id)?,
            args.grace + std::time::Duration::from_secs(30),
        );
    }
    outcome_exit(&session.id, outcome, global.quiet, args.format)
}

/// Polls the session's phase until it has ended, at most `limit` (the supervisor stops the
/// agent's leftovers first: up to its grace period).
fn wait_finalized(dir: &csa_session::dirfd::StoreDir, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        match csa_session::state::SessionState::load(dir) {
            Ok(state) if state.view.phase.is_ended() => return,
            Err(_) => return,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

/// A copy of the run's arguments (clap's `Args` are not `Clone`).
fn clone_args(args: &RunArgs) -> RunArgs {
    RunArgs {
        tool: args.tool.clone(),
        description: args.description.clone(),
        cd: args.cd.clone(),
        detach: args.detach,
        allow_concurrent: args.allow_concurrent,
        wait_for_dir: args.wait_for_dir,
        parent: args.parent.clone(),
        leave_running: args.leave_running,
        grace: args.grace,
        tty: args.tty,
        no_tty: args.no_tty,
        tty_size: args.tty_size,
        format: args.format,
        command: args.command.clone(),
    }
}
