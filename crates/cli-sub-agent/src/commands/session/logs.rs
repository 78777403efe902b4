//! `csa session logs` (not yet implemented).

use anyhow::anyhow;
use csa_session::paths::StateRoots;

use crate::cli::LogsArgs;
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command.
pub fn run(_roots: &StateRoots, _args: &LogsArgs) -> CommandResult {
    Err(CommandError::new(
        Exit::Usage,
        anyhow!("`csa session logs` is not implemented yet"),
    ))
}
