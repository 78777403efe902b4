//! `csa man [--dir DIR]`: man pages generated from the command definitions (clap_mangen), so
//! they list exactly the commands and flags `--help` does. Without `--dir`, csa(1) on stdout;
//! with it, one page per command and subcommand (`csa.1`, `csa-run.1`, `csa-session.1`,
//! `csa-session-reconcile.1`, …; hidden commands and clap's `help` subcommands have none),
//! written to DIR.
//!
//! Every page has, after clap_mangen's sections (NAME, SYNOPSIS, DESCRIPTION, OPTIONS,
//! SUBCOMMANDS) and before VERSION, the sections csa adds: EXIT STATUS (the exit-code table,
//! [`crate::exit::TABLE`]), ENVIRONMENT (what csa reads, and what an agent receives) and FILES
//! (the state layout, docs/format.md), in the order man-pages(7) gives.

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

/// The page of `cmd` (built), as roff: clap_mangen's page, with csa's sections
/// ([`reference_sections`]) inserted before VERSION (at the end when there is none).
fn render(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    Man::new(cmd.clone())
        .date(version::COMMIT_DATE)
        .source(format!("csa {}", version::VERSION))
        .manual("csa manual")
        .render(&mut page)?;
    let page = String::from_utf8_lossy(&page).into_owned();
    // The roff crate starts every rendering with a preamble (how to typeset apostrophes) that
    // the page already has: rendered once, it is taken off the inserted sections.
    let preamble = roff::Roff::new().render();
    let extra = reference_sections().render();
    let extra = extra.strip_prefix(&preamble).unwrap_or(&extra);
    let at = page.find("\n.SH VERSION\n").map_or(page.len(), |i| i + 1);
    let mut out = String::with_capacity(page.len() + extra.len());
    out.push_str(&page[..at]);
    out.push_str(extra);
    out.push_str(&page[at..]);
    Ok(out.into_bytes())
}

/// The variables csa reads, and those `csa run` and `csa session resume` give an agent.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "CSA_STATE_DIR",
        "The state root to use, as --state-dir (which takes precedence). A directory given this \
         way that does not exist is an error (exit 3) for every command but run, which creates it.",
    ),
    (
        "XDG_STATE_HOME",
        "Where the default state roots live: $XDG_STATE_HOME/cli-sub-agent, and the legacy \
         $XDG_STATE_HOME/csa, read as well. Default (unset, or not an absolute path): \
         $HOME/.local/state.",
    ),
    (
        "HOME",
        "The default XDG_STATE_HOME's base; written ~ in list's PROJECT column.",
    ),
    (
        "NO_COLOR",
        "Set to a non-empty value: no colour under --color auto.",
    ),
    (
        "CLICOLOR_FORCE",
        "Set to a non-empty value: colour (and the table fitted to the terminal) under \
         --color auto, even into a pipe.",
    ),
    ("CLICOLOR", "0: no colour under --color auto."),
    (
        "COLUMNS",
        "The width list fits its table to, instead of the terminal's.",
    ),
    (
        "RUST_LOG",
        "Diagnostics on stderr, in tracing's env-filter syntax (info, debug, trace, \
         csa_session=debug): replaces the level -v, -vv and -q set.",
    ),
    (
        "COMPLETE",
        "Set to a shell's name (bash, zsh, fish, elvish, powershell): csa prints that shell's \
         dynamic completion script, or answers its completion request, and exits.",
    ),
    (
        "CSA_MEMBERSHIP",
        "How run identifies a session's processes: auto (default: a cgroup v2 per session where \
         csa can create one, else the agent's process session and the CSA_SESSION_ID marker), \
         cgroup (a launch failure when none can be created) or process-session.",
    ),
    (
        "CSA_SESSION_ID",
        "Given to the agent (and inherited by everything it starts: it marks the session's \
         processes): its session's ULID. Read by csa: run makes the session it starts a child \
         of that session (the default --parent) and runs it nested under its claim when it \
         descends from it, and list --check leaves that session and its ancestors out.",
    ),
    (
        "CSA_SESSION_DIR",
        "Given to the agent: its session's directory.",
    ),
    (
        "CSA_DEPTH",
        "Given to the agent: its nesting depth, 0 for a session without a parent.",
    ),
    (
        "CSA_PROJECT_ROOT",
        "Given to the agent: the project directory it runs in.",
    ),
    (
        "CSA_PARENT_SESSION",
        "Given to the agent: the parent session's ULID (unset without a parent).",
    ),
];

/// The state layout (docs/format.md has every file, field by field).
const FILES: &[(&str, &str)] = &[
    (
        "$XDG_STATE_HOME/cli-sub-agent/",
        "The state root (default ~/.local/state/cli-sub-agent), shared with upstream \
         cli-sub-agent; $XDG_STATE_HOME/csa/ is the legacy root, read as well. Directories are \
         0700, files 0600.",
    ),
    (
        "ROOT/KEY/sessions/",
        "The sessions of one project: KEY is the project directory's canonical path without \
         its leading /.",
    ),
    (
        "ROOT/KEY/sessions/ULID/",
        "One session: state.toml (phase, genealogy, tools), result.toml (the current turn's \
         result), run.toml (csa's turn history: commands and log offsets), metadata.toml, \
         output.log and stderr.log (the agent's stdout and stderr, every turn appended), \
         daemon.pid (its supervisor), locks/TOOL.lock (held by the agent), .reconcile.lock \
         (taken to change the session), output/ (artifacts; output/turns/ keeps earlier \
         turns' results).",
    ),
    (
        "ROOT/KEY/sessions/.csa-active/",
        "csa's record of the sessions that may be active (reconcile reads it instead of every \
         session).",
    ),
    (
        "ROOT/KEY/sessions/.csa-claim.lock",
        "The directory claim: held by the csa run of the project's running session.",
    ),
    (
        "ROOT/KEY/sessions/cooldown-marker.toml",
        "The last session reconcile finalized in the project (upstream's format).",
    ),
];

/// EXIT STATUS, ENVIRONMENT and FILES, for every page.
fn reference_sections() -> roff::Roff {
    use roff::{bold, roman, Roff};
    let mut roff = Roff::new();
    let tagged = |roff: &mut Roff, tag: &str, body: &str| {
        roff.control("TP", []);
        roff.text([bold(tag)]);
        roff.text([roman(body)]);
    };
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in crate::exit::TABLE {
        tagged(&mut roff, code, meaning);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in ENVIRONMENT {
        tagged(&mut roff, name, meaning);
    }
    roff.control("SH", ["FILES"]);
    for (path, meaning) in FILES {
        tagged(&mut roff, path, meaning);
    }
    roff
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
