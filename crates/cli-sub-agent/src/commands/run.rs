//! `csa run`: launch any command as a tracked session, one at a time per working directory
//! (the turn itself: crate::launching and csa-supervisor).

use crate::cli::{GlobalArgs, RunArgs};
use crate::CommandResult;

/// Runs the command.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> CommandResult {
    crate::launching::run_turn(global, args)
}
