//! `csa session reconcile`.

use std::io::Write;

use csa_session::dirfd::StoreDir;
use csa_session::inventory::find_session;
use csa_session::paths::StateRoots;
use csa_session::reconcile::{Action, Counts, ReconcileOptions, Reconciler, Report};
use csa_session::secure;
use csa_session::StoreError;
use serde::Serialize;

use super::scope_projects;
use crate::cli::{Format, ReconcileArgs};
use crate::exit::Exit;
use crate::progress::{self, Counter};
use crate::CommandResult;

/// Runs the command. `verbose` also lists sessions skipped because they are alive; `quiet`
/// hides the progress line (crate::progress).
pub fn run(roots: &StateRoots, args: &ReconcileArgs, verbose: bool, quiet: bool) -> CommandResult {
    let dry_run = args.dry_run || args.check;
    let mut reconciler = Reconciler::new(ReconcileOptions {
        dry_run,
        full: args.full,
        trigger: "session reconcile".to_owned(),
    });
    for arg in &args.sessions {
        super::valid_session_arg(arg)?;
    }
    let scope = scope_projects(roots, &args.scope)?;
    let progress = Counter::new("reconciling", progress::enabled(args.format, quiet));
    let observer = progress.clone();
    reconciler.on_progress(move |n| observer.set(n));
    if args.sessions.is_empty() {
        for project in &scope {
            reconciler.project(project);
        }
    } else {
        // Resolve every argument first: a typo must not leave half the list done.
        let mut targets = Vec::new();
        for arg in &args.sessions {
            targets.push(find_session(roots, &scope, arg)?);
        }
        for target in &targets {
            reconciler.session(&target.project, &target.id);
        }
    }
    let report = reconciler.finish();
    progress.finish();
    let counts = report.counts();
    for warning in &report.warnings {
        crate::diagnostics::warning(warning);
    }
    match args.format {
        Format::Json => print_json(&report, &counts)?,
        Format::Text => print_text(&report, &counts, dry_run, verbose)?,
    }
    Ok(if counts.errors > 0 {
        Exit::Partial
    } else if args.check && counts.would_synthesize + counts.would_retire > 0 {
        Exit::Negative
    } else {
        Exit::Success
    })
}

#[derive(Serialize)]
struct JsonReport<'a> {
    sessions: &'a [csa_session::reconcile::Outcome],
    counts: &'a Counts,
    warnings: &'a [String],
    errors: &'a [String],
}

fn print_json(report: &Report, counts: &Counts) -> std::io::Result<()> {
    let json = JsonReport {
        sessions: &report.sessions,
        counts,
        warnings: &report.warnings,
        errors: &report.project_errors,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, &json)?;
    writeln!(out)?;
    out.flush()
}

fn print_text(report: &Report, c: &Counts, dry_run: bool, verbose: bool) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for o in &report.sessions {
        if o.action == Action::SkippedAlive && !verbose {
            continue;
        }
        let detail = o.error.as_deref().or(o.reason.as_deref()).unwrap_or("");
        let detail = detail.lines().next().unwrap_or("");
        writeln!(out, "{}  {}  {}", o.session_id, o.action.as_str(), detail)?;
        if o.action == Action::Error {
            // A session directory csa refuses: say how to fix it (one more stat, errors only).
            // Only an `lstat` of the entry, for the hint (nothing is written).
            let refused = o.session_dir.parent().and_then(|sessions| {
                let sessions = StoreDir::open_root(sessions).ok()??;
                match secure::check_session_dir(&sessions, &o.session_id) {
                    Err(StoreError::Insecure(insecure)) => Some(insecure),
                    _ => None,
                }
            });
            if let Some(insecure) = refused {
                eprintln!("hint: {}", insecure.hint());
            }
        }
    }
    for e in &report.project_errors {
        eprintln!("error: {e}");
    }
    let mut parts = Vec::new();
    if dry_run {
        parts.push(format!("{} would be synthesized", c.would_synthesize));
        parts.push(format!(
            "{} would be retired with their result",
            c.would_retire
        ));
    } else {
        parts.push(format!("{} synthesized", c.synthesized));
        parts.push(format!(
            "{} retired with their result",
            c.retired_with_result
        ));
        if c.finalized_from_turn_end > 0 {
            parts.push(format!(
                "{} finalized from their turn-end record",
                c.finalized_from_turn_end
            ));
        }
    }
    parts.push(format!("{} alive", c.skipped_alive));
    parts.push(format!("{} busy", c.skipped_busy));
    parts.push(format!(
        "{} with unreadable result",
        c.skipped_unreadable_result
    ));
    if c.skipped_foreign > 0 {
        parts.push(format!("{} foreign", c.skipped_foreign));
    }
    parts.push(format!("{} errors", c.errors));
    writeln!(out, "reconcile: {}", parts.join(", "))?;
    out.flush()
}
