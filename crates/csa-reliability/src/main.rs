//! `csa-reliability-table DIR`: prints the rows that reliability tests recorded in DIR (see the
//! library docs) as one markdown table, sorted by row key.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: csa-reliability-table DIR");
        return ExitCode::from(2);
    };
    match csa_reliability::read_rows(std::path::Path::new(&dir)) {
        Ok(rows) if rows.is_empty() => {
            eprintln!(
                "error: no rows in {}\nhint: run the tests with {}={} set",
                std::path::Path::new(&dir).display(),
                csa_reliability::REPORT_ENV,
                std::path::Path::new(&dir).display()
            );
            ExitCode::FAILURE
        }
        Ok(rows) => {
            print!("{}", csa_reliability::render(&rows));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
