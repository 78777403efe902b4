//! `csa session resume`: parse, call csa-supervisor's `resume`, print. With `--detach`, on a
//! terminal (a pseudo-terminal for the agent, as `csa run --tty`) or from inside another session,
//! a supervisor of its own runs the turn, as for `csa run`.

use csa_session::paths::StateRoots;
use csa_supervisor::detach::{Ready, SupervisorMode};
use csa_supervisor::resume::ResumeRequest;
use csa_supervisor::{EndOfTurn, Mode};

use super::locate;
use crate::cli::{GlobalArgs, ResumeArgs};
use crate::exit::Exit;
use crate::launching::{
    detached, events::Printer, inside_a_session, interactive, launch_error, relay_report,
    resume_supervisor_args, terminal_of, wants_terminal,
};
use crate::CommandResult;

/// Runs the command.
pub fn run(global: &GlobalArgs, args: &ResumeArgs) -> CommandResult {
    let ready = Ready::from_env();
    let outcome = start(global, args, ready.as_ref());
    let outcome = super::deleted_meanwhile(global, args.cd.as_deref(), &args.session, outcome);
    // A detached supervisor reports every failure, finding no session included (deleted since
    // `resume --detach` found it). Regression: found by the stress test, where the client then
    // said "the supervisor exited (exit status: 4) before reporting" and exited 1.
    if let (Some(ready), Err(err)) = (&ready, &outcome) {
        ready.fail(err.exit.code(), &err.render());
    }
    outcome
}

fn start(global: &GlobalArgs, args: &ResumeArgs, ready: Option<&Ready>) -> CommandResult {
    let roots = StateRoots::resolve(global.state_dir.as_deref())?;
    super::check_roots(&roots)?;
    let session = locate(&roots, args.cd.as_deref(), &args.session)?;
    if ready.is_none() && wants_terminal(&args.terminal, args.detach) {
        return interactive::resume(global, args, &session.id);
    }
    let relay_mode = match (ready, args.detach, inside_a_session()) {
        (None, true, _) => Some(SupervisorMode::Detached),
        (None, false, true) => Some(SupervisorMode::Nested),
        _ => None,
    };
    if let Some(mode) = relay_mode {
        let sub = resume_supervisor_args(global, args, &session.id, None);
        return relay_report(&sub, mode, args.format);
    }
    let request = ResumeRequest {
        state_dir: global.state_dir.clone(),
        command: args.command.clone(),
        end: EndOfTurn {
            leave_running: args.leave_running,
            grace: args.grace,
        },
        // A supervisor started for a turn on a terminal gets --tty and the terminal's size.
        interactive: terminal_of(&args.terminal),
        lock_timeout: args.lock_timeout,
    };
    let mode = match ready {
        Some(ready) => Mode::Supervisor(ready),
        None => Mode::Foreground,
    };
    let mut events = Printer::new(global.quiet || detached(ready));
    let shown: Vec<String> = if args.command.is_empty() {
        vec!["<previous command>".to_owned()]
    } else {
        args.command.clone()
    };
    csa_supervisor::resume::resume(&request, &session, mode, &mut events)
        .map(|finished| Exit::Agent(finished.exit_code))
        .map_err(|err| launch_error(global, &shown, err))
}
