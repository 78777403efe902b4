//! `csa man [--dir DIR]`: man pages generated from the command definitions (clap_mangen), so
//! they list exactly the commands and flags `--help` does. Without `--dir`, csa(1) on stdout;
//! with it, one page per command and subcommand (`csa.1`, `csa-run.1`, `csa-session.1`,
//! `csa-session-reconcile.1`, …; hidden commands and clap's `help` subcommands have none),
//! written to DIR.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::{Cli, Format, ManArgs};
use crate::exit::Exit;
use crate::version;
use crate::CommandResult;

/// Prints csa(1), or writes every page to `--dir` and prints their paths (one per line, or
/// `{"pages": […]}` with `--format json`).
///
/// # Errors
/// Exit 3 when DIR cannot be created or a page cannot be written (the error names the path).
pub fn run(args: &ManArgs) -> CommandResult {
    // clap's generated `help` subcommands are `--help` by another name: no page of their own,
    // and no mention in SUBCOMMANDS.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Builds every subcommand, giving each its full name (`csa-session-reconcile`).
    cmd.build();
    let Some(dir) = &args.dir else {
        let mut out = std::io::stdout().lock();
        return match out.write_all(&render(&cmd)?) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(Exit::Success),
        };
    };
    fs_err::create_dir_all(dir)?;
    let mut pages = Vec::new();
    write_pages(&cmd, dir, &mut pages)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::json!({ "pages": pages }))?,
        Format::Text => {
            for page in &pages {
                writeln!(out, "{}", page.display())?;
            }
        }
    }
    Ok(Exit::Success)
}

/// The page of `cmd` (built), as roff.
fn render(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    Man::new(cmd.clone())
        .date(version::COMMIT_DATE)
        .source(format!("csa {}", version::VERSION))
        .manual("csa manual")
        .render(&mut page)?;
    Ok(page)
}

/// Writes the page of `cmd` and of each of its visible subcommands, depth first, into `dir`,
/// appending each path written to `pages`.
fn write_pages(cmd: &clap::Command, dir: &Path, pages: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    fs_err::write(&path, render(cmd)?)?;
    pages.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, pages)?;
    }
    Ok(())
}
