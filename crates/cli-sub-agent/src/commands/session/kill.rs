//! `csa session kill`: SIGTERM to every process of the session (its whole tree, not only the
//! agent's process group), SIGKILL after the grace period, return once all are gone; the
//! session ends `retired` / `killed` with a `signal` result. The protocol, why no wrong process
//! is ever signalled and why the end state is always the same, is in csa-session's `kill`
//! module.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use csa_session::finalize::{finalize_turn_with, Finalized, TurnEnd};
use csa_session::inventory::{active_children, SessionRef, Status};
use csa_session::kill::Targets;
use csa_session::kill::{escalate, prepare, KillDecision};
use csa_session::lock::{ReconcileLock, Wait};
use csa_session::paths::StateRoots;
use csa_session::reconcile::{output_tail, ReconcileOptions, Reconciler};
use csa_session::result::{ResultStatus, SessionResult};
use csa_session::state::{Phase, SessionState};
use nix::sys::signal::Signal;
use serde_json::json;

use super::locate;
use crate::cli::{Format, KillArgs};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// How often the targets are checked while waiting for them to exit.
const POLL: Duration = Duration::from_millis(20);

/// Without `--lock-timeout`, kill waits for a busy session lock this much longer than its grace
/// period, then gives up (exit 75).
const LOCK_SLACK: Duration = Duration::from_secs(5);

/// Most rounds of `--children`: each kills the child sessions found since the last one (a
/// child's agent may start another before it stops). Deeper nesting is a loop or a runaway.
const MAX_ROUNDS: usize = csa_session::inventory::MAX_LINEAGE;

/// Runs the command: the session, then (`--children`) its running child sessions, round by
/// round; without `--children`, says which child sessions run on.
pub fn run(roots: &StateRoots, args: &KillArgs, quiet: bool) -> CommandResult {
    let session = locate(roots, args.cd.as_deref(), &args.session)?;
    let exit = kill_one(&session, args)?;
    let mut done = vec![session.id.clone()];
    if !args.children {
        let running = active_children(roots, &done);
        if !running.is_empty() && !quiet {
            let ids: Vec<&str> = running.iter().map(|c| c.id.as_str()).collect();
            eprintln!(
                "csa: session {} started {} child session(s) that still run: {}",
                session.id,
                ids.len(),
                ids.join(", ")
            );
            eprintln!(
                "hint: csa session kill {} --children stops them too",
                session.id
            );
        }
        return Ok(exit);
    }
    let mut failed = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let children: Vec<SessionRef> = active_children(roots, &done)
            .into_iter()
            .filter(|c| !done.contains(&c.id))
            .collect();
        if children.is_empty() {
            break;
        }
        for child in children {
            done.push(child.id.clone());
            if !quiet {
                eprintln!(
                    "csa: killing child session {} (of {})",
                    child.id, session.id
                );
            }
            if let Err(err) = kill_one(&child, args) {
                eprint!("{}", err.render());
                failed.push(child.id);
            }
        }
    }
    if failed.is_empty() {
        Ok(exit)
    } else {
        Err(CommandError::new(
            Exit::Partial,
            anyhow!(
                "session {} was killed, but {} of its child sessions could not be: {}",
                session.id,
                failed.len(),
                failed.join(", ")
            ),
        ))
    }
}

/// Kills one session, as the module documentation says.
fn kill_one(session: &SessionRef, args: &KillArgs) -> CommandResult {
    let open = session.open()?;
    let dir = &open.dir;
    // Lock-free first: killing an ended session changes nothing, not even the lock file.
    let state = SessionState::load(dir)?;
    if state.view.phase.is_ended() {
        return nothing_to_kill(&session.id, state.view.phase, args.format);
    }
    // Regression: with another process holding `.reconcile.lock`, kill blocked silently and
    // forever. It now says once whom it waits for, and gives up after a bound.
    let lock_bound = args.lock_timeout.unwrap_or(args.grace + LOCK_SLACK);
    let decision = {
        let lock = ReconcileLock::acquire_with(
            dir,
            Wait::AtMost(lock_bound),
            super::say_waiting(lock_bound),
        )?;
        prepare(&lock, &session.id)?
    };
    let targets = match decision {
        KillDecision::Ended(phase) => return nothing_to_kill(&session.id, phase, args.format),
        KillDecision::Dead => {
            let report = reconcile(session);
            // An unparsable daemon.pid, lock body or completion record, each naming its file.
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            if report.counts().errors > 0 {
                let why = report
                    .sessions
                    .first()
                    .and_then(|o| o.error.clone())
                    .unwrap_or_default();
                return Err(CommandError::new(
                    Exit::Partial,
                    anyhow!(
                        "session {}'s owner is dead, and reconciling it failed: {why}",
                        session.id
                    ),
                ));
            }
            return report_outcome(
                &session.id,
                "dead",
                "its owner was already dead: reconciled, no signal sent",
                args.format,
            );
        }
        KillDecision::Foreign(why) => {
            return Err(CommandError::new(
                Exit::Busy,
                anyhow!(
                    "session {} is foreign (owned from another machine or PID namespace): {why}",
                    session.id
                ),
            )
            .with_hint("kill it from the machine (or PID namespace) that runs it"));
        }
        KillDecision::Unverifiable(why) => {
            return Err(CommandError::new(
                Exit::Busy,
                anyhow!("session {} is alive, but no process can be verified as its own, so none is signalled: {why}", session.id),
            ));
        }
        KillDecision::Finishing => return finishing(session, args.format),
        KillDecision::Kill(targets) => targets,
    };

    // Signal without holding the lock.
    targets.signal(Signal::SIGTERM);
    let mut last = Signal::SIGTERM;
    if !wait_gone(&targets, Some(args.grace)) {
        let active = {
            let lock = ReconcileLock::acquire_with(
                dir,
                Wait::AtMost(lock_bound),
                super::say_waiting(lock_bound),
            )?;
            escalate(&lock)?
        };
        if active {
            eprintln!(
                "csa: session {} did not stop within {}; sending SIGKILL",
                session.id,
                humantime::format_duration(args.grace)
            );
        }
        targets.signal(Signal::SIGKILL);
        last = Signal::SIGKILL;
        wait_gone(&targets, None);
    }

    // Finalize once. A live supervisor knows how the agent ended: leave it the finalizing
    // (it sees the kill marker), so the result keeps the agent's own exit code; but not for
    // longer than the grace period plus FINISHING_WAIT.
    let deadline = Instant::now() + args.grace + FINISHING_WAIT;
    while targets.supervisor_alive() && Instant::now() < deadline {
        if SessionState::load(dir)?.view.phase.is_ended() {
            break;
        }
        std::thread::sleep(POLL);
    }
    let state = SessionState::load(dir)?;
    let tool = state
        .view
        .latest_tool()
        .map(str::to_owned)
        .unwrap_or_else(|| "unknown".to_owned());
    let how = match last {
        Signal::SIGKILL => format!(
            "SIGTERM, then SIGKILL after {}",
            humantime::format_duration(args.grace)
        ),
        _ => "SIGTERM".to_owned(),
    };
    let mut summary = format!("killed by csa session kill ({how})");
    let tail = output_tail(dir, "output.log");
    if !tail.is_empty() {
        summary.push_str("\nlast output:\n");
        summary.push_str(&tail);
    }
    let result = SessionResult {
        status: ResultStatus::Signal,
        exit_code: 128 + last as i64,
        summary,
        tool: tool.clone(),
        started_at: state.view.last_accessed.min(Utc::now()),
        completed_at: Utc::now(),
        artifacts: Vec::new(),
        other: Default::default(),
    };
    let finalized = finalize_turn_with(
        &open,
        &TurnEnd {
            result: &result,
            phase: Phase::Retired,
            termination_reason: Some("killed"),
            tool: &tool,
        },
        Wait::AtMost(lock_bound),
        super::say_waiting(lock_bound),
    )?;
    let detail = match finalized {
        Finalized::AlreadyEnded(_) => {
            let phase = SessionState::load(dir)
                .map(|s| s.view.phase)
                .unwrap_or(Phase::Retired);
            format!(
                "killed ({how}); its supervisor finalized it ({})",
                phase.as_str()
            )
        }
        _ => format!("killed ({how})"),
    };
    report_outcome(&session.id, "killed", &detail, args.format)
}

/// Reconciles the session (its owner is dead), with the trigger `session kill`.
fn reconcile(session: &csa_session::inventory::SessionRef) -> csa_session::reconcile::Report {
    let mut reconciler = Reconciler::new(ReconcileOptions {
        dry_run: false,
        full: false,
        trigger: "session kill".to_owned(),
    });
    reconciler.session(&session.project, &session.id);
    reconciler.finish()
}

/// How long to wait for an owner that is finishing its turn on its own.
const FINISHING_WAIT: Duration = Duration::from_secs(10);

/// Nothing left to signal: the agent exited and its owner (or another kill) is finalizing the
/// turn. Wait for that (at most [`FINISHING_WAIT`]; an owner that dies meanwhile is
/// reconciled), then report how the session ended.
fn finishing(session: &csa_session::inventory::SessionRef, format: Format) -> CommandResult {
    let dir = &session.project.open_session(&session.id)?;
    let start = Instant::now();
    loop {
        let phase = SessionState::load(dir)?.view.phase;
        if phase.is_ended() {
            return nothing_to_kill(&session.id, phase, format);
        }
        let verdict = csa_session::liveness::assess(
            &csa_session::liveness::LivenessContext::new(),
            dir,
            &session.id,
            true,
        )
        .verdict;
        if !verdict.is_alive() || start.elapsed() >= FINISHING_WAIT {
            let report = reconcile(session);
            if report.counts().errors == 0 && !verdict.is_alive() {
                continue;
            }
            // The documented refusal (nothing verifiable to signal), saying why.
            return Err(CommandError::new(
                Exit::Busy,
                anyhow!(
                    "session {} is alive, but no process can be verified as its own, so none is signalled: its agent has exited but the session is still active after {}",
                    session.id,
                    humantime::format_duration(FINISHING_WAIT)
                ),
            )
            .with_hint(format!("see `csa session is-alive {}`", session.id)));
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until every target is gone, at most `limit` (forever without one). Says once on
/// stderr when the wait is long.
fn wait_gone(targets: &Targets, limit: Option<Duration>) -> bool {
    let start = Instant::now();
    let mut said = false;
    loop {
        if targets.all_gone() {
            return true;
        }
        if limit.is_some_and(|l| start.elapsed() >= l) {
            return false;
        }
        if limit.is_none() && !said && start.elapsed() >= Duration::from_secs(2) {
            eprintln!("csa: waiting for the killed processes to exit…");
            said = true;
        }
        std::thread::sleep(POLL);
    }
}

fn nothing_to_kill(id: &str, phase: Phase, format: Format) -> CommandResult {
    let status = Status::derive(phase, None);
    let detail = format!(
        "nothing to kill: session {id} is already {}",
        status.as_str()
    );
    report_outcome(id, "nothing_to_kill", &detail, format)
}

fn report_outcome(id: &str, action: &str, detail: &str, format: Format) -> CommandResult {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            json!({ "session_id": id, "action": action, "detail": detail })
        )?,
        Format::Text => writeln!(out, "{detail}")?,
    }
    Ok(Exit::Success)
}
