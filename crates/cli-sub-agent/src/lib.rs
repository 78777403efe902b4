//! The `csa` command line, thin over csa-session and csa-process: parse arguments, run the
//! command, print, and map the outcome to the exit-code table ([`exit::Exit`]).

#![warn(missing_docs)]

pub mod cli;
pub mod commands;
pub mod complete;
pub mod diagnostics;
pub mod exit;
pub mod launching;
pub mod output;
pub mod progress;
pub mod repository;
pub mod version;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

use crate::cli::{Cli, Command};
use crate::diagnostics::CommandError;
use crate::exit::Exit;

/// Runs csa with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    // `COMPLETE=bash csa …`: a completion request, answered before anything else.
    complete::handle_request();
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    // clap exits 2 on usage errors, 0 for --help and --version.
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    cli.global.state_dir_from_env =
        matches.value_source("state_dir") == Some(clap::parser::ValueSource::EnvVariable);
    init_tracing(cli.global.verbose, cli.global.quiet);
    output::init_color(cli.global.color);
    let outcome = match &cli.command {
        Command::Session(cmd) => commands::session::run(&cli.global, cmd),
        Command::Run(args) => commands::run::run(&cli.global, args),
        Command::Debug(cmd) => commands::debug::run(&cli.global, cmd),
        Command::Doctor(args) => commands::doctor::run(&cli.global, args),
        Command::Completions(args) => commands::completions::run(args),
        Command::Man(args) => commands::man::run(args),
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprint!("{}", err.render());
            err.exit.into()
        }
    }
}

/// The result of a command: how to exit, or the error to report.
pub type CommandResult = Result<Exit, CommandError>;

fn init_tracing(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
}
