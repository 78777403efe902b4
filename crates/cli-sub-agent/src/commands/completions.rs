//! `csa completions SHELL`: the shell completion script for csa, generated from the command
//! definitions (clap_complete), on stdout. docs/cli.md says where each shell looks for it.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::Exit;
use crate::CommandResult;

/// Prints the script for `args.shell`. A closed stdout (`csa completions bash | head`) is not
/// an error.
///
/// # Errors
/// Exit 3 when stdout cannot be written for another reason.
pub fn run(args: &CompletionsArgs) -> CommandResult {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "csa", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(Exit::Success),
    }
}
