//! `csa session wait` (not yet implemented).

use anyhow::anyhow;
use csa_session::paths::StateRoots;

use crate::cli::WaitArgs;
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command.
pub fn run(_roots: &StateRoots, _args: &WaitArgs) -> CommandResult {
    Err(CommandError::new(
        Exit::Usage,
        anyhow!("`csa session wait` is not implemented yet"),
    ))
}
