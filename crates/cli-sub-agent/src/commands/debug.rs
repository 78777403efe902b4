//! `csa debug …`: hidden tools for testing csa itself.

use std::io::Write;

use csa_session::check::check_roots;
use csa_session::paths::StateRoots;

use crate::cli::{DebugCommand, Format, GlobalArgs};
use crate::exit::Exit;
use crate::CommandResult;

/// Runs a `csa debug` subcommand.
pub fn run(global: &GlobalArgs, cmd: &DebugCommand) -> CommandResult {
    let DebugCommand::Check { format } = cmd;
    super::require_explicit_state_dir(global)?;
    let roots = StateRoots::resolve(global.state_dir.as_deref())?;
    let violations = check_roots(&roots);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &violations).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Text => {
            for v in &violations {
                writeln!(out, "{}: {}", v.path.display(), v.problem)?;
            }
            writeln!(out, "check: {} violations", violations.len())?;
        }
    }
    Ok(if violations.is_empty() {
        Exit::Success
    } else {
        Exit::Negative
    })
}
