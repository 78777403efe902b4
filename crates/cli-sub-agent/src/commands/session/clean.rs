//! `csa session clean`: delete the ended sessions (`available`, `retired`, `tool_exhausted`)
//! last used before a cutoff, and nothing else. Each session goes through the same predicate
//! and protocol as `csa session delete` (csa_session::delete), so Active sessions and sessions
//! with a live process are never touched. Leftovers of interrupted deletions are swept first.

use std::io::Write;

use chrono::{TimeDelta, Utc};
use csa_session::delete::{
    delete_session, remove_leftovers, Keep, Leftover, LeftoverAction, Outcome, Policy,
};
use csa_session::liveness::LivenessContext;
use csa_session::paths::{Project, StateRoots};
use serde::Serialize;

use super::scope_projects;
use crate::cli::{CleanArgs, Format};
use crate::exit::Exit;
use crate::progress::{self, Counter};
use crate::CommandResult;

/// What happened to one session. Serialized names are part of the JSON output contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    /// Deleted.
    Deleted,
    /// `--dry-run`: would be deleted.
    WouldDelete,
    /// Ended and old enough, but a process of it is alive.
    SkippedAlive,
    /// Another process holds its `.reconcile.lock`.
    SkippedBusy,
    /// Could not be processed (unreadable state.toml, I/O error); `reason` names the file.
    Error,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Deleted => "deleted",
            Action::WouldDelete => "would_delete",
            Action::SkippedAlive => "skipped_alive",
            Action::SkippedBusy => "skipped_busy",
            Action::Error => "error",
        }
    }
}

#[derive(Debug, Serialize)]
struct Row {
    session_id: String,
    action: Action,
    reason: String,
}

/// A leftover of an interrupted deletion, as reported.
#[derive(Debug, Serialize)]
struct LeftoverRow {
    path: String,
    action: LeftoverAction,
    error: Option<String>,
}

impl From<Leftover> for LeftoverRow {
    fn from(l: Leftover) -> Self {
        LeftoverRow {
            path: l.path.display().to_string(),
            action: l.action,
            error: l.error,
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    deleted: usize,
    would_delete: usize,
    skipped_alive: usize,
    skipped_busy: usize,
    errors: usize,
    /// Sessions left alone without a report line: Active ones and those used since the cutoff.
    kept: usize,
    /// Leftovers of interrupted deletions removed (or, with `--dry-run`, that would be).
    leftovers_removed: usize,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    sessions: Vec<Row>,
    counts: Counts,
    leftovers: Vec<LeftoverRow>,
    /// Errors not tied to one session (an unreadable `sessions/`), naming the path.
    errors: Vec<String>,
}

/// Runs the command. Exit 0, or 3 when any session or project could not be processed (the
/// others are); busy and live sessions are not errors.
/// Runs the command; `quiet` hides the progress line (crate::progress).
pub fn run(roots: &StateRoots, args: &CleanArgs, quiet: bool) -> CommandResult {
    let projects = scope_projects(roots, &args.scope)?;
    // A cutoff before the start of time (an absurd --older-than) keeps everything.
    let cutoff = TimeDelta::from_std(args.older_than)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let policy = Policy {
        force: false,
        last_accessed_before: Some(cutoff),
    };
    let ctx = LivenessContext::new();
    let mut report = Report::default();
    let mut warnings = Vec::new();
    let progress = Counter::new("cleaning", progress::enabled(args.format, quiet));
    for project in &projects {
        clean_project(
            &ctx,
            project,
            &policy,
            args.dry_run,
            &mut report,
            &mut warnings,
            &progress,
        );
    }
    progress.finish();
    report.counts.errors += report.errors.len();
    for w in &warnings {
        crate::diagnostics::warning(w);
    }
    match args.format {
        Format::Json => print_json(&report)?,
        Format::Text => print_text(&report, args.dry_run)?,
    }
    Ok(if report.counts.errors > 0 {
        Exit::Partial
    } else {
        Exit::Success
    })
}

fn clean_project(
    ctx: &LivenessContext,
    project: &Project,
    policy: &Policy,
    dry_run: bool,
    report: &mut Report,
    warnings: &mut Vec<String>,
    progress: &Counter,
) {
    if !dry_run {
        let swept = csa_session::leftovers::sweep_writers(project);
        for path in swept.removed {
            tracing::info!(path = %path.display(), "removed a crashed process's leftover");
        }
        warnings.extend(swept.errors);
    }
    match remove_leftovers(project, dry_run) {
        Ok(leftovers) => {
            for l in leftovers {
                match l.action {
                    LeftoverAction::Removed | LeftoverAction::WouldRemove => {
                        report.counts.leftovers_removed += 1;
                    }
                    LeftoverAction::Error => report.counts.errors += 1,
                    LeftoverAction::SkippedBusy => {}
                }
                report.leftovers.push(l.into());
            }
        }
        Err(err) => report.errors.push(err.to_string()),
    }
    let mut ids = match project.session_ids() {
        Ok(ids) => ids,
        Err(err) => {
            report.errors.push(err.to_string());
            return;
        }
    };
    ids.sort_unstable();
    for id in ids {
        progress.inc();
        let row = |action, reason: String| {
            Some(Row {
                session_id: id.clone(),
                action,
                reason,
            })
        };
        let row = match delete_session(ctx, project, &id, policy, dry_run) {
            Err(err) => row(Action::Error, error_chain(&err)),
            Ok(deletion) => {
                for w in deletion.warnings {
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
                match deletion.outcome {
                    Outcome::Deleted(reason) => row(Action::Deleted, reason),
                    Outcome::WouldDelete(reason) => row(Action::WouldDelete, reason),
                    // Another clean or delete removed it meanwhile: not this run's to report.
                    Outcome::Gone => None,
                    Outcome::Busy => row(
                        Action::SkippedBusy,
                        "another process holds .reconcile.lock".to_owned(),
                    ),
                    Outcome::Kept(Keep::EndedAlive { phase, signal }) => row(
                        Action::SkippedAlive,
                        format!("{}, but alive: {signal}", phase.as_str()),
                    ),
                    Outcome::Kept(Keep::Foreign { phase, signal }) if phase.is_ended() => row(
                        Action::SkippedAlive,
                        format!("{}, but foreign: {signal}", phase.as_str()),
                    ),
                    Outcome::Kept(
                        Keep::Running(_)
                        | Keep::Foreign { .. }
                        | Keep::Orphaned(_)
                        | Keep::Recent(_),
                    ) => {
                        report.counts.kept += 1;
                        None
                    }
                }
            }
        };
        if let Some(row) = row {
            let c = &mut report.counts;
            match row.action {
                Action::Deleted => c.deleted += 1,
                Action::WouldDelete => c.would_delete += 1,
                Action::SkippedAlive => c.skipped_alive += 1,
                Action::SkippedBusy => c.skipped_busy += 1,
                Action::Error => c.errors += 1,
            }
            report.sessions.push(row);
        }
    }
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn print_json(report: &Report) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, report)?;
    writeln!(out)?;
    out.flush()
}

fn print_text(report: &Report, dry_run: bool) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for l in &report.leftovers {
        let what = match l.action {
            LeftoverAction::Removed => "removed",
            LeftoverAction::WouldRemove => "would_remove",
            LeftoverAction::SkippedBusy => "skipped_busy",
            LeftoverAction::Error => "error",
        };
        let detail = l
            .error
            .as_deref()
            .unwrap_or("left by an interrupted delete");
        writeln!(out, "{}  {what}  {detail}", l.path)?;
    }
    for row in &report.sessions {
        let reason = row.reason.lines().next().unwrap_or("");
        writeln!(out, "{}  {}  {reason}", row.session_id, row.action.as_str())?;
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    let c = &report.counts;
    let mut parts = Vec::new();
    if dry_run {
        parts.push(format!("{} would be deleted", c.would_delete));
    } else {
        parts.push(format!("{} deleted", c.deleted));
    }
    parts.push(format!("{} alive", c.skipped_alive));
    parts.push(format!("{} busy", c.skipped_busy));
    parts.push(format!("{} errors", c.errors));
    parts.push(format!("{} kept", c.kept));
    if c.leftovers_removed > 0 {
        let verb = if dry_run {
            "would be removed"
        } else {
            "removed"
        };
        parts.push(format!("{} leftovers {verb}", c.leftovers_removed));
    }
    writeln!(out, "clean: {}", parts.join(", "))?;
    out.flush()
}
