//! Command-line arguments of `csa-bench` and its exit codes.
//!
//! Exit codes: 0 every case ran (requirements are reported in the table); 1 a case could not be
//! measured (csa missing or failing) or the harness failed; 2 with `--check`, every case ran but
//! a requirement was not met.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Every case ran.
pub const EXIT_OK: u8 = 0;
/// A case could not be measured, or the harness itself failed.
pub const EXIT_FAILED: u8 = 1;
/// `--check` was given and a requirement was not met.
pub const EXIT_REQUIREMENT: u8 = 2;

/// Benchmarks a built `csa` binary; prints a markdown table on stdout.
#[derive(Debug, Parser)]
#[command(name = "csa-bench", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Internal helpers.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// What to benchmark and how.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Internal subcommands (hidden from `--help`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs PROGRAM ARGS… once and prints its peak RSS in KiB (one child per helper process).
    #[command(name = "peak-rss", hide = true)]
    PeakRss {
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        argv: Vec<OsString>,
    },
}

/// Options of a benchmark run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The csa binary to benchmark.
    #[arg(long, value_name = "PATH", default_value = "target/release/csa")]
    pub csa: PathBuf,
    /// Where generated state roots are cached, one folder per session count.
    #[arg(long, value_name = "DIR", default_value = "target/bench-state")]
    pub cache_dir: PathBuf,
    /// Measured runs per case (the requirements ask for at least 20).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    pub runs: u16,
    /// Unmeasured warm-up runs per case, at least 2 (the first also reports csa's errors and may
    /// build csa's cache).
    #[arg(long, default_value_t = 2)]
    pub warmup: u16,
    /// Helper runs per case for peak RSS (the maximum is reported).
    #[arg(long, default_value_t = 3)]
    pub rss_runs: u16,
    /// Ended-session counts for the reconcile cases.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [1_000, 10_000, 100_000]
    )]
    pub sizes: Vec<usize>,
    /// Ended-session count for the list case and its baselines.
    #[arg(long, default_value_t = 10_000)]
    pub list_size: usize,
    /// Live (active, alive) sessions added to every fixture.
    #[arg(long, default_value_t = 10)]
    pub live: usize,
    /// Exit with 2 when a requirement is not met.
    #[arg(long)]
    pub check: bool,
}
