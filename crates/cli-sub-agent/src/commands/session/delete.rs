//! `csa session delete`: delete one session's directory, if the deletion predicate allows it
//! (csa_session::delete: never an Active session whose owner is alive, never an ended one with a
//! live process, an Active one whose owner is dead only with `--force`). With `--force`, a
//! session whose state.toml does not parse, and of which no process lives, is moved whole to
//! the project's quarantine instead (csa_session::quarantine): nothing is rewritten.

use std::io::Write;

use anyhow::anyhow;
use csa_session::delete::{delete_session, DeleteError, Keep, Outcome, Policy};
use csa_session::liveness::LivenessContext;
use csa_session::paths::StateRoots;
use csa_session::quarantine::{self, quarantine_session};
use serde_json::json;

use super::locate;
use crate::cli::{DeleteArgs, Format};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command.
///
/// # Errors
/// Exit 75 when the session is refused (owner alive, Active without `--force`) or another
/// process holds its `.reconcile.lock`; 3 when its state.toml cannot be read (without
/// `--force`, or when it is missing), its directory is a symbolic link, or the removal fails; 4
/// when another process deleted it meanwhile; 2/4 for a bad SESSION argument.
pub fn run(roots: &StateRoots, args: &DeleteArgs) -> CommandResult {
    let session = locate(roots, args.cd.as_deref(), &args.session)?;
    let id = &session.id;
    let policy = Policy {
        force: args.force,
        last_accessed_before: None,
    };
    let ctx = LivenessContext::new();
    let deletion = match delete_session(&ctx, &session.project, id, &policy, false) {
        Err(DeleteError::Store(err)) if quarantine::is_corrupt(&err) && args.force => {
            return quarantine(&ctx, &session, args.format);
        }
        Err(DeleteError::Store(err)) if quarantine::is_corrupt(&err) => {
            return Err(CommandError::from(err).with_hint(format!(
                "csa never rewrites a file it cannot parse: repair it by hand, or move the whole session to the quarantine with `csa session delete --force {id}`"
            )));
        }
        other => other.map_err(|err| delete_error(id, err))?,
    };
    for w in &deletion.warnings {
        crate::diagnostics::warning(w);
    }
    let reason = match deletion.outcome {
        Outcome::Deleted(reason) | Outcome::WouldDelete(reason) => reason,
        Outcome::Kept(keep) => return Err(refusal(id, keep)),
        Outcome::Gone => {
            return Err(CommandError::new(
                Exit::NotFound,
                anyhow!("session {id} was deleted by another process meanwhile"),
            ))
        }
        Outcome::Busy => return Err(busy(id)),
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{:#}", json!({"session_id": id, "deleted": true}))?,
        Format::Text => writeln!(out, "{id}  deleted  {reason}")?,
    }
    Ok(Exit::Success)
}

/// `delete --force` of a session whose state.toml does not parse: moved whole to the
/// quarantine, if no process of it lives. Regression: such a session had no way out but
/// `rm -rf` by hand.
fn quarantine(
    ctx: &LivenessContext,
    session: &csa_session::inventory::SessionRef,
    format: Format,
) -> CommandResult {
    let id = &session.id;
    let q = quarantine_session(ctx, &session.project, id)?;
    for w in &q.warnings {
        eprintln!("warning: {w}");
    }
    let to = match q.outcome {
        quarantine::Outcome::Quarantined(to) => to,
        quarantine::Outcome::Alive(signal) => {
            return Err(CommandError::new(
                Exit::Busy,
                anyhow!("session {id}'s state.toml does not parse, and a process of it may still be alive ({signal})"),
            )
            .with_hint(format!("stop it first with `csa session kill {id}`, or wait until it has exited")))
        }
        quarantine::Outcome::Parses => {
            return Err(CommandError::new(
                Exit::Busy,
                anyhow!("session {id}'s state.toml parses now: another process repaired it meanwhile"),
            )
            .with_hint(format!("run `csa session delete {id}` again")))
        }
        quarantine::Outcome::Busy => return Err(busy(id)),
        quarantine::Outcome::Gone => {
            return Err(CommandError::new(
                Exit::NotFound,
                anyhow!("session {id} was deleted by another process meanwhile"),
            ))
        }
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(
            out,
            "{:#}",
            json!({"session_id": id, "deleted": false, "quarantined": to})
        )?,
        Format::Text => writeln!(
            out,
            "{id}  quarantined  state.toml does not parse: moved whole to {}",
            to.display()
        )?,
    }
    eprintln!(
        "hint: nothing was rewritten; inspect it, then remove it by hand: rm -rf {}",
        csa_session::secure::shell_quote(&to.to_string_lossy())
    );
    Ok(Exit::Success)
}

/// The exit-75 error for a session another process is working on.
fn busy(id: &str) -> CommandError {
    CommandError::new(
        Exit::Busy,
        anyhow!("session {id} is busy: another process holds its .reconcile.lock"),
    )
    .with_hint(format!(
        "it is being finalized or deleted; run `csa session delete {id}` again once it is done"
    ))
}

/// The exit-75 error for a session the predicate keeps: what was found and what to do.
fn refusal(id: &str, keep: Keep) -> CommandError {
    let (what, hint) = match keep {
        Keep::Running(signal) => (
            format!("session {id} is active and its agent is alive ({signal})"),
            format!("stop it first with `csa session kill {id}`, or wait for it with `csa session wait {id}`"),
        ),
        Keep::Foreign { signal, .. } => (
            format!("session {id} is foreign: it is owned from another machine or PID namespace ({signal}), so whether it still runs cannot be told from here"),
            "delete it from the machine (or PID namespace) that runs it".to_owned(),
        ),
        Keep::Orphaned(reason) => (
            format!("session {id} is still active, though its agent is dead ({reason})"),
            format!("finalize it with `csa session reconcile {id}` first, or delete it as it is with `csa session delete --force {id}`"),
        ),
        Keep::EndedAlive { phase, signal } => (
            format!(
                "session {id} is {}, but a process of it is still alive ({signal})",
                phase.as_str()
            ),
            format!("stop it first with `csa session kill {id}`"),
        ),
        // `delete` sets no cutoff; kept for completeness.
        Keep::Recent(last) => (
            format!("session {id} was used at {last}"),
            format!("delete it with `csa session delete {id}`"),
        ),
    };
    CommandError::new(Exit::Busy, anyhow!(what)).with_hint(hint)
}

fn delete_error(id: &str, err: DeleteError) -> CommandError {
    match err {
        DeleteError::Store(err) => err.into(),
        err @ DeleteError::NotADirectory { .. } => CommandError::new(Exit::Partial, err)
            .with_hint("csa never deletes through a symbolic link: remove the link by hand"),
        err @ DeleteError::Incomplete { .. } => CommandError::new(Exit::Partial, err).with_hint(
            format!("session {id} is no longer listed; `csa session clean` removes what is left"),
        ),
    }
}
