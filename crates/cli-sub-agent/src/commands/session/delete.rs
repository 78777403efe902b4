//! `csa session delete` (being written; not part of any release yet).

use anyhow::anyhow;
use csa_session::paths::StateRoots;

use crate::cli::DeleteArgs;
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command.
pub fn run(_roots: &StateRoots, _args: &DeleteArgs) -> CommandResult {
    Err(CommandError::new(
        Exit::Usage,
        anyhow!("`csa session delete` is not implemented yet"),
    ))
}
