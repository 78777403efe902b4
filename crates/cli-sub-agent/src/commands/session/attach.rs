//! `csa session attach`: connect this terminal to an interactive session's pseudo-terminal
//! (csa-terminal's client). One writer at a time; `--read-only` watchers; `--steal` takes over.
//! Detach with Ctrl-\ then d.

use csa_session::paths::StateRoots;
use csa_terminal::{AttachOptions, Mode as AttachMode};

use super::locate;
use crate::cli::AttachArgs;
use crate::launching::attach::{connect, outcome_exit, wait_turn_over};

/// How long an attach whose agent ended waits for the turn to be over: the supervisor's grace
/// for leftovers (default 5 s) and finalizing.
const TURN_OVER_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);
use crate::CommandResult;

/// Runs the command.
pub fn run(roots: &StateRoots, args: &AttachArgs, quiet: bool) -> CommandResult {
    let session = locate(roots, args.cd.as_deref(), &args.session)?;
    let mode = if args.read_only {
        AttachMode::ReadOnly
    } else if args.steal {
        AttachMode::Steal
    } else {
        AttachMode::Writer
    };
    let outcome = connect(
        &session,
        AttachOptions {
            mode,
            replay: false,
        },
    )?;
    if let csa_terminal::Outcome::Exited(_) = outcome {
        // The agent ended while attached: return once its turn is over, so that what follows
        // (`result`, `resume`) finds it finished. Bounded: a stuck supervisor is reconciled.
        wait_turn_over(&session, TURN_OVER_LIMIT)?;
    }
    outcome_exit(&session.id, outcome, quiet, args.format)
}
