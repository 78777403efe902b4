//! The attach client of an interactive turn, shared by `csa session attach` and an interactive
//! `csa run`: connecting to the session's pseudo-terminal (csa-terminal) and what its outcome
//! means for csa's exit.

use anyhow::anyhow;
use csa_session::inventory::SessionRef;
use csa_terminal::{AttachOptions, DetachReason, Outcome, TerminalError};

use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Attaches to `session` (its directory opened without following a link and verified).
///
/// # Errors
/// A refused session directory; the client's errors, with their exit codes: 75 when the
/// session has a writer (or another refusal), 1 when it is not attachable, 3 otherwise.
pub(crate) fn connect(
    session: &SessionRef,
    options: AttachOptions,
) -> Result<Outcome, CommandError> {
    let dir = session.project.open_session(&session.id)?;
    csa_terminal::attach(std::os::fd::AsFd::as_fd(&dir), dir.path(), options).map_err(|err| {
        let exit = match &err {
            TerminalError::Refused(_) => Exit::Busy,
            TerminalError::NotAttachable { .. } => Exit::Negative,
            _ => Exit::Partial,
        };
        let hint = err.hint();
        let error = CommandError::new(exit, anyhow!("session {}: {err}", session.id));
        match hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    })
}

/// How an attach ended, as csa's exit: the agent's exit status when it ended while attached;
/// 0 when detached; 128 + N for a signal to this process. With `--format json`, one object on
/// stdout: `{"session_id", "ended": "agent_exited"|"detached"|"signalled", "exit_code"}`.
pub(crate) fn outcome_exit(
    id: &str,
    outcome: Outcome,
    quiet: bool,
    format: crate::cli::Format,
) -> CommandResult {
    if format == crate::cli::Format::Json {
        let (ended, code) = match outcome {
            Outcome::Exited(exit) => ("agent_exited", Some(exit.shell_code())),
            Outcome::Detached(_) => ("detached", Some(0)),
            Outcome::Signalled(sig) => ("signalled", u8::try_from(128 + sig).ok()),
            Outcome::ConnectionLost => ("supervisor_died", None),
        };
        println!(
            "{}",
            serde_json::json!({ "session_id": id, "ended": ended, "exit_code": code })
        );
    }
    match outcome {
        Outcome::Exited(exit) => Ok(Exit::Agent(exit.shell_code())),
        Outcome::Detached(reason) => {
            if !quiet {
                let why = match reason {
                    DetachReason::Stolen => "another client took over",
                    DetachReason::Shutdown => "the supervisor is shutting down",
                    _ => "detached",
                };
                eprintln!(
                    "csa: {why}; session {id} runs on (attach again: csa session attach {id})"
                );
            }
            Ok(Exit::Success)
        }
        Outcome::Signalled(sig) => Ok(Exit::Signal(u8::try_from(sig).unwrap_or(0))),
        Outcome::ConnectionLost => Err(CommandError::new(
            Exit::Negative,
            anyhow!("the supervisor of session {id} died; its agent lost its terminal (SIGHUP)"),
        )
        .with_hint(format!("csa session reconcile; csa session result {id}"))),
    }
}

/// Polls `session`'s phase until it has ended, then its supervisor until it has exited, at
/// most `limit` in all (the supervisor stops the agent's leftovers first: up to its grace
/// period). A foreground `csa run` returns when its turn is over, supervisor included: the
/// next command (a `resume`, say) must not find the session's supervisor still running; so
/// does `csa session attach` when the agent ends while attached.
///
/// # Errors
/// A refused session directory.
pub(crate) fn wait_turn_over(
    session: &SessionRef,
    limit: std::time::Duration,
) -> Result<(), CommandError> {
    let dir = &session.project.open_session(&session.id)?;
    let deadline = std::time::Instant::now() + limit;
    let poll = std::time::Duration::from_millis(10);
    while std::time::Instant::now() < deadline {
        match csa_session::state::SessionState::load(dir) {
            Ok(state) if state.view.phase.is_ended() => break,
            Err(_) => return Ok(()),
            Ok(_) => std::thread::sleep(poll),
        }
    }
    let Ok(Some(record)) = csa_session::membership::MembershipRecord::load(dir) else {
        return Ok(());
    };
    let supervisor = record.supervisor;
    while std::time::Instant::now() < deadline
        && csa_process::running_as(supervisor.pid, supervisor.start())
    {
        std::thread::sleep(poll);
    }
    Ok(())
}
