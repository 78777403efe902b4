//! `csa session list`: read-only (it writes no file, not even the active record), newest first.
//!
//! Which sessions are read: with a status filter that only Active sessions can have
//! (`--running`, `--status running|orphaned|foreign`), only the sessions the project's active
//! record (csa-session `active`) says may be Active: its entries when its fingerprint of
//! `sessions/` is current, else its entries plus every session not known to have ended (the
//! same trust `csa session reconcile` places in the record, so both miss the same thing: a
//! session another writer moved from an ended phase back to `active` in place, until a
//! `reconcile --full`). That keeps the `csa-idle` pre-commit hook (`list --running --check`) at a
//! few file reads however many sessions have ended. Every other listing reads every session.
//!
//! Output: `--format json` (documented in docs/json.md), or a table ([`table`]) in the layout
//! of [`crate::output::Layout`]: plain aligned text when stdout is not a terminal, else fitted
//! to the terminal with relative times, status colours and, when narrow, shortened ids.

mod table;

use std::collections::BTreeSet;
use std::io::Write;
use std::thread;

use chrono::Utc;
use csa_session::active::may_be_active;
use csa_session::dirfd::StoreDir;
use csa_session::inventory::{lineage, summarize, SessionSummary, Status};
use csa_session::liveness::LivenessContext;
use csa_session::paths::{self, Project, StateRoots};
use csa_session::secure;

use super::{scope_projects, with_nested};
use crate::cli::{Format, GlobalArgs, ListArgs, StatusFilter};
use crate::exit::Exit;
use crate::output::table as cells;
use crate::output::Layout;
use crate::CommandResult;

/// Runs the command.
pub fn run(global: &GlobalArgs, roots: &StateRoots, args: &ListArgs) -> CommandResult {
    let wanted = if args.running {
        Some(Status::Running)
    } else {
        args.status.map(status_of_filter)
    };
    let active_only =
        wanted.is_some_and(|s| matches!(s, Status::Running | Status::Orphaned | Status::Foreign));
    let mut projects = scope_projects(roots, &args.scope)?;
    if args.nested {
        projects = with_nested(projects)?;
    }
    let mut errors = Vec::new();
    let mut dirs = Vec::new();
    for project in &projects {
        let sessions = match project.open_sessions() {
            Ok(Some(sessions)) => sessions,
            Ok(None) => continue,
            Err(err) => {
                errors.push(err.to_string());
                continue;
            }
        };
        let ids = if active_only {
            may_be_active(&sessions)
        } else {
            paths::session_ids_in(&sessions)
        };
        match ids {
            Ok(ids) if ids.is_empty() => {}
            Ok(ids) => dirs.push((sessions, ids)),
            Err(err) => errors.push(err.to_string()),
        }
    }
    let mut targets: Vec<(&StoreDir, String)> = Vec::new();
    for (dir, ids) in &dirs {
        targets.extend(ids.iter().map(|id| (dir, id.clone())));
    }
    // Newest first: ULIDs sort by creation time.
    targets.sort_by(|a, b| b.1.cmp(&a.1));
    let (summaries, failures) = summarize_all(&targets);
    errors.extend(failures);
    // `--check` does not count the caller's own session and the sessions that started it.
    let excluded = if args.check {
        callers_lineage(roots, &projects)
    } else {
        Vec::new()
    };
    let cutoff = args.since.and_then(|since| {
        chrono::Duration::from_std(since)
            .ok()
            .and_then(|since| Utc::now().checked_sub_signed(since))
    });
    let summaries: Vec<_> = summaries
        .into_iter()
        .filter(|s| wanted.is_none_or(|w| s.status == w))
        .filter(|s| cutoff.is_none_or(|cutoff| used_since(s, cutoff)))
        .filter(|s| !args.resumable || s.resumable)
        .filter(|s| {
            let own = excluded.contains(&s.session_id);
            if own {
                tracing::info!(
                    "session {} ({}): not counted by --check: the caller's own session (CSA_SESSION_ID) or one of its ancestors",
                    s.session_id,
                    s.status.as_str()
                );
            }
            !own
        })
        .collect();
    for e in &errors {
        eprintln!("error: {e}");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &summaries).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        // With --check the stderr lines say it all; stdout stays empty.
        Format::Text if args.check => {}
        Format::Text => {
            let options = table::Options {
                project: args.scope.all_projects || args.scope.repo || args.nested,
                long_ids: args.long_ids,
                roots,
            };
            table::print(&mut out, &summaries, Layout::of_stdout(), options)?;
        }
    }
    out.flush()?;
    if summaries.is_empty()
        && args.format == Format::Text
        && !args.check
        && !args.scope.all_projects
        && !global.quiet
    {
        hint_other_projects(roots, &projects);
    }
    if args.check {
        report_check(global, &summaries);
    }
    Ok(if !errors.is_empty() {
        Exit::Partial
    } else if args.check && !summaries.is_empty() {
        Exit::Negative
    } else {
        Exit::Success
    })
}

/// Whether `s` was last used at or after `cutoff` (`--since`). A `last_accessed` that does not
/// parse (it did when the summary was made) keeps the session listed.
fn used_since(s: &SessionSummary, cutoff: chrono::DateTime<Utc>) -> bool {
    chrono::DateTime::parse_from_rfc3339(&s.last_accessed).map_or(true, |at| at >= cutoff)
}

/// When the scope's projects have no session at all but other projects do, says so on stderr
/// with the command that lists them (a user in the wrong directory otherwise sees a bare
/// header). Only called for an empty text listing; costs a walk of the state roots then.
fn hint_other_projects(roots: &StateRoots, scope: &[Project]) {
    let has_sessions = |p: &Project| p.session_ids().is_ok_and(|ids| !ids.is_empty());
    if scope.iter().any(has_sessions) {
        return;
    }
    let mut others = BTreeSet::new();
    for root in roots.iter() {
        let Ok(projects) = paths::all_projects(root) else {
            return;
        };
        others.extend(
            projects
                .iter()
                .filter(|p| !scope.iter().any(|s| s.key == p.key) && has_sessions(p))
                .map(|p| p.key.clone()),
        );
    }
    if others.is_empty() {
        return;
    }
    let here = scope
        .last()
        .map_or_else(String::new, |p| format!(" in /{}", p.key));
    let n = others.len();
    let projects = if n == 1 {
        "project has"
    } else {
        "projects have"
    };
    eprintln!(
        "hint: no sessions{here}; {n} other {projects} sessions: csa session list --all-projects"
    );
}

/// The session csa runs in (`CSA_SESSION_ID`, set by `csa run` for its agent and everything
/// the agent starts) and its ancestors ([`lineage`]); empty outside a session.
fn callers_lineage(roots: &StateRoots, scope: &[Project]) -> Vec<String> {
    let Some(id) = std::env::var("CSA_SESSION_ID")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return Vec::new();
    };
    let chain = lineage(roots, scope, &id);
    tracing::info!(
        "CSA_SESSION_ID={id}: --check does not count {} (the caller's session and its ancestors)",
        chain.join(", ")
    );
    chain
}

/// Threads per core for reading sessions: part of each read blocks in the kernel, so a few more
/// threads than cores keep the cores busy (measured in docs/performance.md).
const THREADS_PER_CORE: usize = 4;

/// Reads every session on [`THREADS_PER_CORE`] threads per core, keeping the input order.
fn summarize_all(targets: &[(&StoreDir, String)]) -> (Vec<SessionSummary>, Vec<String>) {
    let threads = thread::available_parallelism().map_or(1, |n| n.get()) * THREADS_PER_CORE;
    let chunk = targets.len().div_ceil(threads).max(256);
    let results: Vec<Vec<Result<SessionSummary, String>>> = thread::scope(|s| {
        let handles: Vec<_> = targets
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let ctx = LivenessContext::new();
                    part.iter()
                        .filter_map(|(dir, id)| match summarize(&ctx, dir, id) {
                            Ok(summary) => Some(Ok(summary)),
                            // Deleted since `sessions/` was listed (`delete` renames the
                            // directory away first): no longer a session, not an error.
                            // Regression: found by the stress test (list racing delete, exit 3).
                            Err(_) if dir.symlink_metadata(id).is_err() => None,
                            Err(e) => Some(Err(e.to_string())),
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut ok = Vec::with_capacity(targets.len());
    let mut failed = Vec::new();
    for r in results.into_iter().flatten() {
        match r {
            Ok(s) => ok.push(s),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

fn status_of_filter(f: StatusFilter) -> Status {
    match f {
        StatusFilter::Running => Status::Running,
        StatusFilter::Orphaned => Status::Orphaned,
        StatusFilter::Foreign => Status::Foreign,
        StatusFilter::Available => Status::Available,
        StatusFilter::Retired => Status::Retired,
        StatusFilter::ToolExhausted => Status::ToolExhausted,
    }
}

/// `--check`: one `error:` line per listed session, naming it and its directory, then `hint:`
/// lines with the commands that end it (each line on its own, for hooks that show stderr).
fn report_check(global: &GlobalArgs, rows: &[SessionSummary]) {
    let state_dir = global
        .state_dir
        .as_ref()
        .map(|d| format!(" --state-dir {}", secure::shell_quote(&d.to_string_lossy())))
        .unwrap_or_default();
    let mut err = std::io::stderr().lock();
    for s in rows {
        let id = &s.session_id;
        let dir = cells::one_line(&s.project_path);
        let (what, hints): (&str, &[(&str, &str)]) = match s.status {
            Status::Running => (
                "is running",
                &[("wait for it", "wait"), ("or stop it", "kill")],
            ),
            Status::Foreign => (
                "is running on another machine or in another PID namespace",
                &[("wait for it", "wait")],
            ),
            Status::Orphaned => (
                "is orphaned (its agent died)",
                &[("finalize it", "reconcile")],
            ),
            Status::Available => ("is available", &[("resume it", "resume")]),
            Status::Retired => ("is retired", &[("delete it", "delete")]),
            Status::ToolExhausted => ("is tool-exhausted", &[("delete it", "delete")]),
        };
        let _ = writeln!(err, "error: session {id} {what} in {dir}");
        for (label, verb) in hints {
            let _ = writeln!(err, "hint: {label}: csa{state_dir} session {verb} {id}");
        }
    }
}
