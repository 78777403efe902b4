//! `csa session kill` (being written; not part of any release yet).

use anyhow::anyhow;
use csa_session::paths::StateRoots;

use crate::cli::KillArgs;
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command.
pub fn run(_roots: &StateRoots, _args: &KillArgs) -> CommandResult {
    Err(CommandError::new(
        Exit::Usage,
        anyhow!("`csa session kill` is not implemented yet"),
    ))
}
