//! `csa-bench`: parses arguments, runs the suite or the peak-RSS helper, maps the result to an
//! exit code (table in [`csa_bench::cli`]).

use std::process::ExitCode;

use clap::Parser;
use csa_bench::cli::{Cli, Command, EXIT_FAILED, EXIT_OK, EXIT_REQUIREMENT};
use csa_bench::measure::{self, Invocation};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::PeakRss { argv }) => {
            let (program, args) = argv.split_first().expect("clap requires a program");
            measure::peak_rss_child(&Invocation::new(program, args.iter().cloned())).map(|kib| {
                println!("{kib}");
                EXIT_OK
            })
        }
        None => csa_bench::suite::run(&cli.run).map(|outcome| {
            print!("{}", outcome.report);
            if outcome.failed_cases > 0 {
                EXIT_FAILED
            } else if cli.run.check && outcome.failed_requirements > 0 {
                EXIT_REQUIREMENT
            } else {
                EXIT_OK
            }
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            for cause in anyhow::Error::from(err).chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            ExitCode::from(EXIT_FAILED)
        }
    }
}
