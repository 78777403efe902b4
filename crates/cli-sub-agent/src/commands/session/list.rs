//! `csa session list`: read-only, newest first.

use std::io::Write;
use std::thread;

use csa_session::dirfd::DirFd;
use csa_session::inventory::{summarize, SessionSummary, Status};
use csa_session::liveness::LivenessContext;
use csa_session::paths::StateRoots;

use super::scope_projects;
use crate::cli::{Format, ListArgs, StatusFilter};
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command.
pub fn run(roots: &StateRoots, args: &ListArgs) -> CommandResult {
    let projects = scope_projects(roots, &args.scope)?;
    let mut errors = Vec::new();
    let mut dirs = Vec::new();
    for project in &projects {
        let ids = match project.session_ids() {
            Ok(ids) if ids.is_empty() => continue,
            Ok(ids) => ids,
            Err(err) => {
                errors.push(err.to_string());
                continue;
            }
        };
        match DirFd::open(&project.sessions_dir) {
            Ok(dir) => dirs.push((dir, ids)),
            Err(err) => errors.push(err.to_string()),
        }
    }
    let mut targets: Vec<(&DirFd, String)> = Vec::new();
    for (dir, ids) in &dirs {
        targets.extend(ids.iter().map(|id| (dir, id.clone())));
    }
    // Newest first: ULIDs sort by creation time.
    targets.sort_by(|a, b| b.1.cmp(&a.1));
    let (summaries, failures) = summarize_all(&targets);
    errors.extend(failures);
    let wanted = args.status.map(status_of_filter);
    let summaries: Vec<_> = summaries
        .into_iter()
        .filter(|s| wanted.is_none_or(|w| s.status == w))
        .filter(|s| !args.resumable || s.resumable)
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
        Format::Text => print_table(&mut out, &summaries)?,
    }
    out.flush()?;
    Ok(if errors.is_empty() {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// Threads per core for reading sessions: part of each read blocks in the kernel, so a few more
/// threads than cores keep the cores busy (measured in docs/performance.md).
const THREADS_PER_CORE: usize = 4;

/// Reads every session on [`THREADS_PER_CORE`] threads per core, keeping the input order.
fn summarize_all(targets: &[(&DirFd, String)]) -> (Vec<SessionSummary>, Vec<String>) {
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
                            Err(_) if fs_err::symlink_metadata(dir.path().join(id)).is_err() => {
                                None
                            }
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

fn print_table(out: &mut impl Write, rows: &[SessionSummary]) -> std::io::Result<()> {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|s| {
            [
                s.session_id.clone(),
                s.status.as_str().to_owned(),
                s.result_status.clone().unwrap_or_else(|| "-".into()),
                s.tool.clone().unwrap_or_else(|| "-".into()),
                s.last_accessed.clone(),
                s.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "SESSION",
        "STATUS",
        "RESULT",
        "TOOL",
        "LAST ACCESSED",
        "DESCRIPTION",
    ];
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: [&str; 6]| {
        let mut s = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header))?;
    for row in &cells {
        writeln!(out, "{}", line(row.each_ref().map(String::as_str)))?;
    }
    Ok(())
}
