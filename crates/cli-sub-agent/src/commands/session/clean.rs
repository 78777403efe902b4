//! `csa session clean` (being written; not part of any release yet).

use anyhow::anyhow;
use csa_session::paths::StateRoots;

use crate::cli::CleanArgs;
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command.
pub fn run(_roots: &StateRoots, _args: &CleanArgs) -> CommandResult {
    Err(CommandError::new(
        Exit::Usage,
        anyhow!("`csa session clean` is not implemented yet"),
    ))
}
