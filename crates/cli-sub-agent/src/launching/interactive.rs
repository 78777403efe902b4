//! `csa run --tty` and `csa session resume --tty`: the agent runs on a pseudo-terminal that a
//! supervisor of its own serves (csa-terminal), so that the user can detach (Ctrl-\ then d) and
//! attach again; in the foreground, this process is the first client, and exits with the
//! agent's exit status when it ends while attached.

use anyhow::anyhow;
use csa_session::inventory::find_session;
use csa_session::paths::StateRoots;
use csa_supervisor::detach::{spawn_supervisor, Report, SupervisorMode};
use csa_terminal::{AttachOptions, Mode as AttachMode, WindowSize};

use super::attach::{connect, outcome_exit, wait_turn_over};
use super::{print_started, resume_supervisor_args, supervisor_args};
use crate::cli::{GlobalArgs, ResumeArgs, RunArgs, TerminalArgs};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Starts the supervisor with a pseudo-terminal of this terminal's size, then (unless
/// `--detach`) attaches to it.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> CommandResult {
    let mut with_size = RunArgs {
        terminal: TerminalArgs {
            tty: true,
            no_tty: false,
            tty_size: Some(terminal_size()),
        },
        ..args.clone()
    };
    with_size.detach = true;
    let sub = supervisor_args(global, &with_size)?;
    start_and_attach(global, &sub, args.detach, args.format, args.grace)
}

/// `csa session resume` on a terminal: as [`run`], for a new turn of the session `id`.
pub fn resume(global: &GlobalArgs, args: &ResumeArgs, id: &str) -> CommandResult {
    let sub = resume_supervisor_args(global, args, id, Some(terminal_size()));
    start_and_attach(global, &sub, args.detach, args.format, args.grace)
}

/// This terminal's size (stdout's, else stdin's), or the default one.
fn terminal_size() -> WindowSize {
    WindowSize::of_terminal(std::io::stdout())
        .or_else(|| WindowSize::of_terminal(std::io::stdin()))
        .unwrap_or(WindowSize::DEFAULT)
}

/// Starts a detached supervisor with the command line `sub` (a turn on a pseudo-terminal), then
/// (unless `detach`) attaches to it as its writer and exits as the agent did.
fn start_and_attach(
    global: &GlobalArgs,
    sub: &[std::ffi::OsString],
    detach: bool,
    format: crate::cli::Format,
    grace: std::time::Duration,
) -> CommandResult {
    let exe = std::env::current_exe()?;
    let report = spawn_supervisor(&exe, sub, SupervisorMode::Detached).map_err(|e| {
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
    if detach {
        print_started(&id, format);
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
        // As a foreground run, return once the turn is over (its result published, its
        // supervisor gone), not merely when the agent's last byte has been shown.
        wait_turn_over(&session, grace + std::time::Duration::from_secs(30))?;
    }
    outcome_exit(&session.id, outcome, global.quiet, format)
}
