//! `csa session wait`: block until a session's current turn has a result, then print it and
//! exit 0 for `success`, 1 for any other status (124 when `--timeout` runs out first).
//!
//! Polls every [`POLL_INTERVAL`]; each poll reads `result.toml`, then `state.toml`, then
//! liveness. It returns once the turn has a result *and* has ended (owners publish the result,
//! then move the phase), so whatever the caller does next finds the session ended; a result
//! beside a still-`active` phase and a live owner is returned after [`FINALIZE_GRACE`]. Writes nothing, except that an Active session whose owner is dead without a
//! result is finalized through the ordinary reconcile (trigger `session wait`), so a wait on a
//! dead agent ends with its synthetic result instead of hanging.

use std::collections::BTreeSet;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use csa_session::inventory::{SessionRef, Status};
use csa_session::liveness::{assess, LivenessContext, Verdict};
use csa_session::paths::StateRoots;
use csa_session::reconcile::{Action, ReconcileOptions, Reconciler};
use csa_session::result::{ResultStatus, SessionResult};
use csa_session::state::{Phase, SessionState};
use serde_json::json;

use super::{locate, observed, result_json, NOT_OBSERVED};
use crate::cli::{Format, WaitArgs};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::progress;
use crate::CommandResult;

/// Time between two polls of the session's files.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long a result may stand beside an `active` phase with a live owner before wait returns
/// it anyway: csa's own supervisor moves the phase milliseconds after publishing the result;
/// another writer might never do so.
pub const FINALIZE_GRACE: Duration = Duration::from_secs(2);

/// Who finalizes a dead session, as quoted in its synthetic summary.
const TRIGGER: &str = "session wait";

/// Runs the command.
///
/// # Errors
/// Exit 124 when `--timeout` runs out; 75 when the session has ended without a result; 3 when
/// `state.toml` or `result.toml` cannot be read or parsed, or finalizing a dead session fails;
/// 2/4 for a bad SESSION argument.
pub fn run(roots: &StateRoots, args: &WaitArgs, quiet: bool) -> CommandResult {
    let session = locate(roots, args.cd.as_deref(), &args.session)?;
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let mut waiter = Waiter {
        session: &session,
        ctx: LivenessContext::new(),
        warned: BTreeSet::new(),
        result_seen: None,
    };
    let mut announced = false;
    // Cleared (dropped) whichever way the wait ends.
    let mut _spinner: Option<progress::Waiting> = None;
    let mut looked_again = false;
    // `--progress --format json`: JSON Lines, a progress object per status seen.
    let stream = args.progress && args.format == Format::Json;
    let started = Instant::now();
    let mut last_status: Option<Status> = None;
    loop {
        let status = match waiter.poll()? {
            Poll::Done(result) => {
                let dir = session.project.open_session(&session.id)?;
                return finish(&session.id, &dir, &result, args);
            }
            // Look again at once: the reconcile just published a result or saw one appear.
            // (Only once in a row, so that nothing can make this loop spin.)
            Poll::LookAgain if !looked_again => {
                looked_again = true;
                continue;
            }
            Poll::LookAgain => Status::Orphaned,
            Poll::Pending(status) => status,
        };
        looked_again = false;
        if stream && last_status != Some(status) {
            let waited = started.elapsed().as_secs_f64();
            print_line(&json!({
                "session_id": session.id,
                "event": "waiting",
                "status": status.as_str(),
                "waited_seconds": (waited * 1000.0).round() / 1000.0,
            }))?;
            last_status = Some(status);
        }
        let remaining = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return timed_out(&session.id, status, args),
            },
            None => None,
        };
        if !announced && args.format == Format::Text && tracing::enabled!(tracing::Level::WARN) {
            let message = format!("waiting for session {} ({})", session.id, status.as_str());
            // On a terminal, one line redrawn with the time waited; elsewhere (CI logs,
            // scripts) one plain line, once.
            if progress::enabled(args.format, quiet) {
                _spinner = Some(progress::Waiting::start(message));
            } else {
                eprintln!("csa: {message}…");
            }
            announced = true;
        }
        thread::sleep(remaining.map_or(POLL_INTERVAL, |left| left.min(POLL_INTERVAL)));
    }
}

/// What one poll found.
enum Poll {
    /// The turn has a (parsable) result.
    Done(SessionResult),
    /// The reconcile of a dead owner finalized the session, or found a result or an ended
    /// phase under the lock: read the files again at once.
    LookAgain,
    /// No result yet; the session's status.
    Pending(Status),
}

/// The state kept across polls.
struct Waiter<'a> {
    session: &'a SessionRef,
    /// Host identity, read once; each poll takes a refreshed copy (fresh time and lock table).
    ctx: LivenessContext,
    /// Warnings already printed (each is printed once, not once per poll).
    warned: BTreeSet<String>,
    /// When a result was first seen beside an `active` phase.
    result_seen: Option<Instant>,
}

impl Waiter<'_> {
    fn poll(&mut self) -> Result<Poll, CommandError> {
        let dir = self.session.project.open_session(&self.session.id)?;
        if let Some(result) = load_result(&dir)? {
            // Done once the turn has ended too: owners publish the result, then the phase, so a
            // caller that goes on to act on the session never finds it still active.
            if SessionState::load(&dir)?.view.phase.is_ended() {
                return Ok(Poll::Done(result));
            }
            let assessment = assess(&self.ctx.refreshed(), &dir, &self.session.id, true);
            self.warn(assessment.warnings);
            let seen = *self.result_seen.get_or_insert_with(Instant::now);
            return match assessment.verdict {
                // The owner died between its two writes: retire it with its result.
                Verdict::Dead { .. } => self.finalize(),
                // A writer that never moves the phase must not make wait hang.
                _ if seen.elapsed() >= FINALIZE_GRACE => Ok(Poll::Done(result)),
                verdict => Ok(Poll::Pending(Status::derive(Phase::Active, Some(&verdict)))),
            };
        }
        let phase = SessionState::load(&dir)?.view.phase;
        if phase.is_ended() {
            // The writer publishes the result before ending the turn: look again, since it may
            // have done both between the two reads above.
            if let Some(result) = load_result(&dir)? {
                return Ok(Poll::Done(result));
            }
            // A resume moves the result into the turn history, then makes the session active,
            // both under the session's lock: decide under it. Regression: found by the stress
            // test, where wait caught a resume between its two steps and reported a session
            // run by csa as ended without a result.
            // (No lock file: no resume ever moved anything, and none is changed by looking.)
            let lock = if dir.exists(csa_session::lock::RECONCILE_LOCK) {
                csa_session::lock::ReconcileLock::try_acquire(&dir)?.map(Some)
            } else {
                Some(None)
            };
            match lock {
                None => return Ok(Poll::Pending(Status::derive(phase, None))),
                Some(_lock) => {
                    let phase = SessionState::load(&dir)?.view.phase;
                    if !phase.is_ended() {
                        return Ok(Poll::Pending(Status::derive(phase, None)));
                    }
                    if let Some(result) = load_result(&dir)? {
                        return Ok(Poll::Done(result));
                    }
                }
            }
            return Err(CommandError::new(
                Exit::Busy,
                anyhow!(
                    "session {} is {} and has no result",
                    self.session.id,
                    phase.as_str()
                ),
            )
            .with_hint(format!(
                "see what it printed with `csa session logs {}`",
                self.session.id
            )));
        }
        let assessment = assess(&self.ctx.refreshed(), &dir, &self.session.id, true);
        self.warn(assessment.warnings);
        if let Verdict::Dead { .. } = assessment.verdict {
            return self.finalize();
        }
        Ok(Poll::Pending(Status::derive(
            Phase::Active,
            Some(&assessment.verdict),
        )))
    }

    /// Finalizes the dead session as `csa session reconcile SESSION` would, under its lock and
    /// after re-checking everything there.
    fn finalize(&mut self) -> Result<Poll, CommandError> {
        let mut reconciler = Reconciler::new(ReconcileOptions {
            dry_run: false,
            full: false,
            trigger: TRIGGER.to_owned(),
        });
        reconciler.session(&self.session.project, &self.session.id);
        let report = reconciler.finish();
        self.warn(report.warnings);
        let Some(outcome) = report.sessions.into_iter().next() else {
            // Ended under the lock by someone else: the next poll reads what they left.
            return Ok(Poll::LookAgain);
        };
        match outcome.action {
            action if action.is_finalized() => Ok(Poll::LookAgain),
            Action::Error => Err(CommandError::new(
                Exit::Partial,
                anyhow!(
                    "could not finalize session {} whose owner is dead: {}",
                    self.session.id,
                    outcome.error.unwrap_or_default()
                ),
            )),
            // The next poll reports an unreadable result as an error.
            Action::SkippedUnreadableResult => Ok(Poll::LookAgain),
            // Busy: another process is finalizing it. Alive or foreign: the re-check under the
            // lock saw a sign of life after all. Either way, keep waiting.
            Action::SkippedBusy => Ok(Poll::Pending(Status::Orphaned)),
            Action::SkippedForeign => Ok(Poll::Pending(Status::Foreign)),
            _ => Ok(Poll::Pending(Status::Running)),
        }
    }

    fn warn(&mut self, warnings: Vec<String>) {
        for w in warnings {
            if !self.warned.contains(&w) {
                crate::diagnostics::warning(&w);
                self.warned.insert(w);
            }
        }
    }
}

/// The result of the session in `dir`, if it has one. Writers publish result.toml atomically, so
/// one that does not parse will not parse later either: it is an error (exit 3), not a reason to
/// keep waiting.
fn load_result(dir: &csa_session::dirfd::StoreDir) -> Result<Option<SessionResult>, CommandError> {
    SessionResult::load(dir).map_err(|err| {
        CommandError::from(err).with_hint(
            "csa never rewrites a file it cannot parse: inspect it, then repair or remove it",
        )
    })
}

/// Prints `value` as one line of JSON on stdout, flushed (a line of the `--progress` stream).
fn print_line(value: &serde_json::Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// Prints the result and maps it to the exit code: 0 for `success`, 5 for any other result
/// that was not observed (the owner died without writing one: csa or upstream synthesized
/// it), 1 otherwise.
fn finish(
    id: &str,
    dir: &csa_session::dirfd::StoreDir,
    result: &SessionResult,
    args: &WaitArgs,
) -> CommandResult {
    let observed = observed(dir, result);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json if args.progress => {
            let mut value = result_json(id, result, observed)?;
            value["event"] = json!("result");
            drop(out);
            print_line(&value)?;
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &result_json(id, result, observed)?)
                .map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Text => {
            let how = if observed {
                String::new()
            } else {
                format!(", {NOT_OBSERVED}")
            };
            writeln!(
                out,
                "session {id}: {} (exit {}){how}",
                result.status, result.exit_code
            )?;
            if let Some(first) = crate::output::text::plain(&result.summary).lines().next() {
                writeln!(out, "{first}")?;
            }
        }
    }
    Ok(if result.status == ResultStatus::Success {
        Exit::Success
    } else if !observed {
        Exit::Unobserved
    } else {
        Exit::Negative
    })
}

/// Reports a timeout: with `--format json`, `{"session_id", "timeout": true}` on stdout; always
/// an error on stderr with a hint; exit 124.
fn timed_out(id: &str, status: Status, args: &WaitArgs) -> CommandResult {
    if args.format == Format::Json && args.progress {
        print_line(&json!({ "session_id": id, "event": "timeout", "timeout": true }))?;
    } else if args.format == Format::Json {
        let mut out = std::io::stdout().lock();
        let value = json!({ "session_id": id, "timeout": true });
        serde_json::to_writer_pretty(&mut out, &value).map_err(std::io::Error::from)?;
        writeln!(out)?;
    }
    let waited = args
        .timeout
        .map(|t| humantime::format_duration(t).to_string())
        .unwrap_or_default();
    Err(CommandError::new(
        Exit::Timeout,
        anyhow!(
            "session {id} has no result after {waited} (it is {})",
            status.as_str()
        ),
    )
    .with_hint(format!(
        "wait longer with `csa session wait {id} --timeout <DURATION>`, or watch it with `csa session logs {id} --follow`"
    )))
}
