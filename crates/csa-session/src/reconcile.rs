//! `csa session reconcile`: find Active sessions whose owner died without writing a result and
//! finalize them. docs/reconcile.md explains the algorithm and what survives a kill -9 at each
//! step; in short, per Active session:
//!
//! 1. lock-free pre-check: act only if the phase is `active` and liveness says dead; an
//!    unparsable result.toml is a late or foreign writer's and is skipped, never overwritten;
//! 2. take `<session>/.reconcile.lock` without waiting (busy: skip, never wait);
//! 3. re-check everything under the lock;
//! 4. publish the synthetic result with `link(2)`, so an existing (real) result always wins;
//!    when the agent left a completion record (upstream's `daemon-completion.toml`, or a legacy
//!    `.complete` marker: [`crate::completion`]), the result is built from it, as upstream does;
//! 5. set `phase = "retired"`, `termination_reason = "orphaned_process"` (or the record's
//!    reason), `last_accessed` = the result's `completed_at` (atomic rewrite that keeps every
//!    other key and the file mode);
//! 6. if 5 fails, take back the synthetic result only if it is still byte-for-byte ours;
//! 7. an Active session with a valid result and a dead owner is retired as `completed`;
//! 8. after any success, replace the project's cooldown marker.

use std::collections::BTreeSet;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::active::{ActiveRecord, Fingerprint};
use crate::atomic::{sync_dir, write_atomic, Publish};
use crate::completion::{self, Completion, Source};
use crate::cooldown::write_cooldown_marker;
use crate::dirfd::StoreDir;
use crate::error::StoreError;
use crate::liveness::{self, LivenessContext, Verdict};
use crate::lock::ReconcileLock;
use crate::paths::{open_session_in, session_ids_in, Project};
use crate::result::{ResultStatus, SessionResult, RESULT_FILE};
use crate::state::{Phase, SessionState};

/// Number of trailing output.log lines quoted in a synthetic result's summary.
pub const TAIL_LINES: usize = 5;
/// At most this many trailing bytes of output.log are read for the summary.
pub const TAIL_BYTES: u64 = 4096;

/// How to reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Decide and report, but write nothing (`--dry-run`, `--check`).
    pub dry_run: bool,
    /// Scan every session of each project, ignoring (and repairing) the active record.
    pub full: bool,
    /// Who finalizes, quoted in synthetic summaries: `session reconcile`, `session wait`.
    pub trigger: String,
}

/// What happened to one session. Serialized names are part of the JSON output contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A synthetic failure result was published and the session retired (`orphaned_process`).
    SynthesizedFailure,
    /// A result was built from a legacy `.complete` marker and the session retired
    /// (`legacy_complete_marker`).
    SynthesizedFromMarker,
    /// A result was built from upstream's `daemon-completion.toml` and the session retired
    /// with the record's reason.
    SynthesizedFromCompletion,
    /// The session had a valid result and a dead owner: retired as `completed`.
    RetiredWithResult,
    /// The turn had ended but its supervisor could not finalize it (a full disk); it was
    /// finalized from csa's turn-end record, with the agent's real result and phase.
    FinalizedFromTurnEnd,
    /// The owner is alive.
    SkippedAlive,
    /// The owner is on another machine or in another PID namespace.
    SkippedForeign,
    /// Another process holds the session's `.reconcile.lock`.
    SkippedBusy,
    /// result.toml exists but does not parse: a late or foreign writer's, left alone.
    SkippedUnreadableResult,
    /// The session could not be processed (see `error`).
    Error,
    /// Dry run: would synthesize a result and retire.
    WouldSynthesize,
    /// Dry run: would retire with the existing result.
    WouldRetire,
}

impl Action {
    /// Whether the session was finalized (a result published or kept, and the phase retired).
    pub fn is_finalized(self) -> bool {
        matches!(
            self,
            Action::SynthesizedFailure
                | Action::SynthesizedFromMarker
                | Action::SynthesizedFromCompletion
                | Action::RetiredWithResult
                | Action::FinalizedFromTurnEnd
        )
    }

    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SynthesizedFailure => "synthesized_failure",
            Action::SynthesizedFromMarker => "synthesized_from_marker",
            Action::SynthesizedFromCompletion => "synthesized_from_completion",
            Action::RetiredWithResult => "retired_with_result",
            Action::FinalizedFromTurnEnd => "finalized_from_turn_end",
            Action::SkippedAlive => "skipped_alive",
            Action::SkippedForeign => "skipped_foreign",
            Action::SkippedBusy => "skipped_busy",
            Action::SkippedUnreadableResult => "skipped_unreadable_result",
            Action::Error => "error",
            Action::WouldSynthesize => "would_synthesize",
            Action::WouldRetire => "would_retire",
        }
    }
}

/// The outcome for one session.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The session's ULID.
    pub session_id: String,
    /// What was done.
    pub action: Action,
    /// Why (the liveness reason, or what was found).
    pub reason: Option<String>,
    /// The error, for [`Action::Error`].
    pub error: Option<String>,
    /// The session directory.
    #[serde(skip)]
    pub session_dir: PathBuf,
}

impl Outcome {
    fn new(
        id: &str,
        dir: &Path,
        action: Action,
        reason: Option<String>,
        error: Option<String>,
    ) -> Self {
        Outcome {
            session_id: id.to_owned(),
            action,
            reason,
            error,
            session_dir: dir.to_owned(),
        }
    }
}

/// Counts per action, as in the JSON output's `counts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Synthetic results published (from a liveness verdict or a completion record).
    pub synthesized: usize,
    /// Sessions retired with their existing result.
    pub retired_with_result: usize,
    /// Turns finalized from csa's turn-end record (their supervisor could not).
    pub finalized_from_turn_end: usize,
    /// Sessions whose owner is alive.
    pub skipped_alive: usize,
    /// Sessions whose lock was busy.
    pub skipped_busy: usize,
    /// Sessions with an unparsable result.toml.
    pub skipped_unreadable_result: usize,
    /// Sessions owned from another machine or PID namespace.
    pub skipped_foreign: usize,
    /// Dry run: sessions that would get a synthetic result.
    pub would_synthesize: usize,
    /// Dry run: sessions that would be retired with their result.
    pub would_retire: usize,
    /// Sessions (or projects) that could not be processed.
    pub errors: usize,
}

/// Everything one reconcile run did.
#[derive(Debug, Default)]
pub struct Report {
    /// One entry per session acted on, skipped or failed (ended sessions are not listed).
    pub sessions: Vec<Outcome>,
    /// Problems found on the way that are not errors of a session (unparsable daemon.pid or
    /// lock bodies), each naming its file.
    pub warnings: Vec<String>,
    /// Errors not tied to one session (an unreadable `sessions/` directory), naming the path.
    pub project_errors: Vec<String>,
}

impl Report {
    /// The counts per action.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            errors: self.project_errors.len(),
            ..Counts::default()
        };
        for o in &self.sessions {
            match o.action {
                Action::SynthesizedFailure
                | Action::SynthesizedFromMarker
                | Action::SynthesizedFromCompletion => c.synthesized += 1,
                Action::RetiredWithResult => c.retired_with_result += 1,
                Action::FinalizedFromTurnEnd => c.finalized_from_turn_end += 1,
                Action::SkippedAlive => c.skipped_alive += 1,
                Action::SkippedForeign => c.skipped_foreign += 1,
                Action::SkippedBusy => c.skipped_busy += 1,
                Action::SkippedUnreadableResult => c.skipped_unreadable_result += 1,
                Action::Error => c.errors += 1,
                Action::WouldSynthesize => c.would_synthesize += 1,
                Action::WouldRetire => c.would_retire += 1,
            }
        }
        c
    }
}

/// Reconciles sessions: every candidate of `projects`, plus the explicit `sessions`.
#[derive(Debug)]
pub struct Reconciler {
    ctx: LivenessContext,
    opts: ReconcileOptions,
    report: Report,
    progress: Progress,
}

/// An observer of how many sessions a [`Reconciler`] has examined (read during a rescan, or
/// checked as candidates), for a progress display.
#[derive(Default)]
struct Progress {
    examined: u64,
    observer: Option<Box<dyn FnMut(u64)>>,
}

impl Progress {
    fn tick(&mut self) {
        self.examined += 1;
        if let Some(f) = &mut self.observer {
            f(self.examined);
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("examined", &self.examined)
            .finish_non_exhaustive()
    }
}

enum Decision {
    Ended,
    Invalid(StoreError),
    UnreadableResult(StoreError),
    Alive(String),
    Foreign(String),
    Retire,
    /// The owner is dead and csa's turn-end record says how the turn ended.
    FromTurnEnd(Box<crate::turn_end::TurnEnd>),
    Synthesize {
        state: Box<SessionState>,
        reason: String,
        completion: Option<Completion>,
    },
}

impl Reconciler {
    /// A reconciler with a fresh liveness context.
    pub fn new(opts: ReconcileOptions) -> Self {
        Reconciler {
            ctx: LivenessContext::new(),
            opts,
            report: Report::default(),
            progress: Progress::default(),
        }
    }

    /// Reconciles every session of `project` that may be active: those in its active record,
    /// plus, when `sessions/` changed since the last full scan (or with `full`), every session
    /// found active or unreadable by a scan, which the record then gains.
    pub fn project(&mut self, project: &Project) {
        if let Err(err) = self.project_inner(project) {
            self.report.project_errors.push(err.to_string());
        }
    }

    fn project_inner(&mut self, project: &Project) -> io::Result<()> {
        let Some(sessions) = project.open_sessions()? else {
            return Ok(());
        };
        let record = ActiveRecord::new(&sessions);
        let fingerprint = Fingerprint::of(&sessions)?;
        let mut candidates: BTreeSet<String> = record.ids()?.into_iter().collect();
        if self.opts.full || !record.is_current(&fingerprint) {
            if !self.opts.dry_run {
                // Anything a crashed csa left in `sessions/` changed it, so leftovers are
                // found exactly when a rescan is due.
                let swept = crate::leftovers::sweep_project(project);
                self.note_swept(swept);
            }
            let scan_start = std::time::SystemTime::now();
            let mut complete = true;
            // `--full` re-reads every session; otherwise sessions a past scan saw ended are
            // taken as still ended (csa records a session before re-activating it).
            let known_ended = if self.opts.full {
                Vec::new()
            } else {
                record.known_ended()
            };
            let mut ended_now = Vec::new();
            for id in session_ids_in(&sessions)? {
                self.progress.tick();
                if candidates.contains(&id) {
                    continue;
                }
                if known_ended.binary_search(&id).is_ok() {
                    ended_now.push(id);
                    continue;
                }
                let ended = matches!(
                    open_session_in(&sessions, &id).and_then(|dir| SessionState::load(&dir)),
                    Ok(s) if s.view.phase.is_ended()
                );
                if ended {
                    ended_now.push(id);
                    continue;
                }
                if !self.opts.dry_run {
                    if let Err(err) = record.add(&id) {
                        complete = false;
                        self.report.project_errors.push(err.to_string());
                    }
                }
                candidates.insert(id);
            }
            if !self.opts.dry_run {
                ended_now.sort_unstable();
                if ended_now != known_ended {
                    record.record_ended(&ended_now);
                }
                if complete {
                    record.record_scan(&fingerprint, scan_start);
                }
            }
        }
        let mut last_finalized = None;
        for id in candidates {
            self.progress.tick();
            if !sessions.exists(&id) {
                if !self.opts.dry_run {
                    record.remove_if_orphaned(&id, self.ctx.now());
                }
                continue;
            }
            if let Some(outcome) = self.session_in(&record, &sessions, &id) {
                if outcome.action.is_finalized() {
                    last_finalized = Some(id.clone());
                }
                self.report.sessions.push(outcome);
            }
        }
        if let Some(id) = last_finalized {
            self.mark_cooldown(&sessions, &id);
        }
        Ok(())
    }

    fn note_swept(&mut self, swept: crate::leftovers::Swept) {
        for path in swept.removed {
            tracing::info!(path = %path.display(), "removed a crashed process's leftover");
        }
        self.report.warnings.extend(swept.errors);
    }

    /// Step 8: replaces the project's cooldown marker after a finalized session.
    fn mark_cooldown(&mut self, sessions: &StoreDir, id: &str) {
        if let Err(err) = write_cooldown_marker(sessions, id, Utc::now()) {
            self.report
                .warnings
                .push(format!("could not update the cooldown marker: {err}"));
        }
    }

    /// Reconciles one session of `project`, named explicitly.
    pub fn session(&mut self, project: &Project, id: &str) {
        let sessions = match project.open_sessions() {
            Ok(Some(sessions)) => sessions,
            Ok(None) => {
                let error = format!("{}: no such directory", project.session_dir(id).display());
                let dir = project.session_dir(id);
                self.report
                    .sessions
                    .push(Outcome::new(id, &dir, Action::Error, None, Some(error)));
                return;
            }
            Err(err) => {
                let dir = project.session_dir(id);
                self.report.sessions.push(Outcome::new(
                    id,
                    &dir,
                    Action::Error,
                    None,
                    Some(err.to_string()),
                ));
                return;
            }
        };
        let record = ActiveRecord::new(&sessions);
        if let Some(outcome) = self.session_in(&record, &sessions, id) {
            let finalized = outcome.action.is_finalized();
            self.report.sessions.push(outcome);
            if finalized {
                self.mark_cooldown(&sessions, id);
            }
        }
    }

    /// Calls `observer` with the number of sessions examined so far, each time one more is
    /// (read during a rescan, or checked as a candidate): for a progress display.
    pub fn on_progress(&mut self, observer: impl FnMut(u64) + 'static) {
        self.progress.observer = Some(Box::new(observer));
    }

    /// The report so far.
    pub fn finish(self) -> Report {
        self.report
    }

    /// [`Reconciler::decide_now`], said at `info` level (`csa -v`): which session, whether
    /// under its lock, and what was found.
    fn decide(&mut self, fresh: bool, dir: &StoreDir, id: &str) -> Decision {
        let decision = self.decide_now(fresh, dir, id);
        let when = if fresh {
            "re-checked under .reconcile.lock"
        } else {
            "checked without the lock"
        };
        match &decision {
            Decision::Ended => tracing::info!("session {id}: {when}: ended (phase not active)"),
            Decision::Invalid(err) => tracing::info!("session {id}: {when}: unreadable: {err}"),
            Decision::UnreadableResult(err) => {
                tracing::info!("session {id}: {when}: result.toml does not parse: {err}")
            }
            Decision::Alive(why) => tracing::info!("session {id}: {when}: alive: {why}"),
            Decision::Foreign(why) => tracing::info!("session {id}: {when}: foreign: {why}"),
            Decision::Retire => {
                tracing::info!("session {id}: {when}: owner dead, result present: retire")
            }
            Decision::FromTurnEnd(_) => tracing::info!(
                "session {id}: {when}: owner dead, its turn ended: finalize from {}",
                crate::turn_end::TURN_END_FILE
            ),
            Decision::Synthesize {
                reason, completion, ..
            } => match completion {
                Some(c) => tracing::info!(
                    "session {id}: {when}: dead ({reason}), no result: finalize from {}",
                    c.path.display()
                ),
                None => tracing::info!(
                    "session {id}: {when}: dead ({reason}), no result: synthesize a failure"
                ),
            },
        }
        decision
    }

    /// What to do with the session in `dir`: its phase, its result and its liveness, read
    /// afresh (`fresh`: with a refreshed liveness context, for the re-check under the lock).
    fn decide_now(&mut self, fresh: bool, dir: &StoreDir, id: &str) -> Decision {
        let refreshed;
        let ctx = if fresh {
            refreshed = self.ctx.refreshed();
            &refreshed
        } else {
            &self.ctx
        };
        let state = match SessionState::load(dir) {
            Ok(state) => state,
            Err(err) => return Decision::Invalid(err),
        };
        if state.view.phase.is_ended() {
            return Decision::Ended;
        }
        let result = match SessionResult::load(dir) {
            Ok(result) => result,
            Err(err @ StoreError::InvalidResult { .. }) => return Decision::UnreadableResult(err),
            Err(err) => return Decision::Invalid(err),
        };
        let assessment = liveness::assess(ctx, dir, id, true);
        for w in assessment.warnings {
            if !self.report.warnings.contains(&w) {
                self.report.warnings.push(w);
            }
        }
        if !assessment.verdict.is_alive() && (fresh || self.opts.dry_run) {
            if let Some(end) = self.turn_end_record(dir, &state) {
                return Decision::FromTurnEnd(Box::new(end));
            }
        }
        match assessment.verdict {
            Verdict::Alive(why) => Decision::Alive(why),
            Verdict::Foreign(why) => Decision::Foreign(why),
            Verdict::Dead { .. } if result.is_some() => Decision::Retire,
            Verdict::Dead {
                reason,
                complete_marker,
            } => Decision::Synthesize {
                state: Box::new(state),
                reason,
                // Only the decision under the lock acts on the record: the lock-free pre-check
                // does not read it (one open less per session on the hot path), unless it is
                // the whole decision (a dry run, which still names a broken record).
                completion: if fresh || self.opts.dry_run {
                    self.completion_record(dir, complete_marker)
                } else {
                    None
                },
            },
        }
    }

    /// csa's turn-end record of a dead session's current turn, when its supervisor filled it
    /// (crate::turn_end). A record of another turn, or one that cannot be used, says nothing
    /// (the latter is a warning naming its file).
    fn turn_end_record(
        &mut self,
        dir: &StoreDir,
        state: &SessionState,
    ) -> Option<crate::turn_end::TurnEnd> {
        let turn = u32::try_from(state.view.turn_count.unwrap_or(1).max(1)).unwrap_or(u32::MAX);
        match crate::turn_end::TurnEnd::load(dir) {
            Ok(Some(end)) if end.turn == turn && end.session_result().is_ok() => Some(end),
            Ok(_) => None,
            Err(err) => {
                let warning = err.to_string();
                if !self.report.warnings.contains(&warning) {
                    self.report.warnings.push(warning);
                }
                None
            }
        }
    }

    /// The completion record of a dead session: its `daemon-completion.toml`
    /// ([`completion::load_daemon`]), else the legacy `.complete` marker liveness already read
    /// (`marker`). A record that cannot be used becomes a warning naming its file, and the
    /// session is finalized as without one (as upstream does). The file is never changed.
    fn completion_record(&mut self, dir: &StoreDir, marker: Option<i64>) -> Option<Completion> {
        let loaded = completion::load_daemon(dir).and_then(|record| match record {
            Some(record) => Ok(Some(record)),
            None => marker
                .map(|code| completion::legacy_marker(dir, code))
                .transpose(),
        });
        match loaded {
            Ok(record) => record,
            Err(err) => {
                let warning = err.to_string();
                if !self.report.warnings.contains(&warning) {
                    self.report.warnings.push(warning);
                }
                None
            }
        }
    }

    fn session_in(
        &mut self,
        record: &ActiveRecord,
        sessions: &StoreDir,
        id: &str,
    ) -> Option<Outcome> {
        let path = sessions.join(id);
        let outcome = |action, reason, error| Some(Outcome::new(id, &path, action, reason, error));
        // The session directory, opened without following a link: every read and (under its
        // lock) write below goes through it.
        let dir = match open_session_in(sessions, id) {
            Ok(dir) => dir,
            // Deleted meanwhile: nothing to reconcile.
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => return outcome(Action::Error, None, Some(err.to_string())),
        };
        let dir = &dir;
        // 1. Lock-free pre-check.
        let pre = self.decide(false, dir, id);
        match pre {
            Decision::Ended if self.opts.dry_run => return None,
            Decision::Ended => {}
            Decision::Invalid(err) => return outcome(Action::Error, None, Some(err.to_string())),
            Decision::UnreadableResult(err) => {
                return outcome(Action::SkippedUnreadableResult, Some(err.to_string()), None)
            }
            Decision::Alive(why) => return outcome(Action::SkippedAlive, Some(why), None),
            Decision::Foreign(why) => return outcome(Action::SkippedForeign, Some(why), None),
            Decision::Retire if self.opts.dry_run => {
                return outcome(
                    Action::WouldRetire,
                    Some("owner dead, result present".into()),
                    None,
                )
            }
            Decision::Synthesize { reason, .. } if self.opts.dry_run => {
                return outcome(Action::WouldSynthesize, Some(reason), None)
            }
            Decision::FromTurnEnd(_) if self.opts.dry_run => {
                return outcome(
                    Action::WouldRetire,
                    Some(format!(
                        "owner dead, its turn ended: would finalize from {}",
                        crate::turn_end::TURN_END_FILE
                    )),
                    None,
                )
            }
            Decision::Retire | Decision::FromTurnEnd(_) | Decision::Synthesize { .. } => {}
        }
        // 2. Lock, never waiting.
        let lock = match ReconcileLock::try_acquire(dir) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                return outcome(
                    Action::SkippedBusy,
                    Some("another process holds .reconcile.lock".into()),
                    None,
                )
            }
            // Deleted meanwhile (`csa session delete` renames it away): nothing to reconcile.
            // Regression: found by the stress test, where reconcile exited 3 naming the vanished
            // directory.
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => return outcome(Action::Error, None, Some(err.to_string())),
        };
        // 3. Re-check under the lock, with fresh liveness data, after putting back a result
        //    that an interrupted rollback left aside. The locked directory must still be the
        //    session at `sessions/<ULID>` (not deleted or swapped meanwhile).
        match sessions.same_dir(id, lock.dir()) {
            Ok(true) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Ok(false) => {
                return outcome(
                    Action::Error,
                    None,
                    Some(format!(
                        "{}: replaced while it was being reconciled (a symbolic link or another directory is there now)",
                        path.display()
                    )),
                )
            }
            Err(e) => return outcome(Action::Error, None, Some(e.to_string())),
        }
        recover_rollback_leftovers(&lock, &mut self.report.warnings);
        match crate::resume::undo_interrupted_archive(&lock) {
            Ok(true) => tracing::info!(id, "put back the result an interrupted resume archived"),
            Ok(false) => {}
            Err(err) => self.report.warnings.push(err.to_string()),
        }
        let swept = crate::leftovers::sweep_session(&lock);
        self.note_swept(swept);
        match self.decide(true, dir, id) {
            Decision::Ended => {
                if let Err(err) = record.remove(id, &lock) {
                    tracing::warn!(%err, "could not prune an ended session's record entry");
                }
                None
            }
            Decision::Invalid(err) => outcome(Action::Error, None, Some(err.to_string())),
            Decision::UnreadableResult(err) => {
                outcome(Action::SkippedUnreadableResult, Some(err.to_string()), None)
            }
            Decision::Alive(why) => outcome(Action::SkippedAlive, Some(why), None),
            Decision::Foreign(why) => outcome(Action::SkippedForeign, Some(why), None),
            Decision::Retire => match self.retire_with_result(record, &lock, id) {
                Ok(()) => outcome(
                    Action::RetiredWithResult,
                    Some("owner dead, result present".into()),
                    None,
                ),
                Err(err) => outcome(Action::Error, None, Some(err.to_string())),
            },
            Decision::FromTurnEnd(end) => self.finalize_from_turn_end(record, &lock, id, &end),
            Decision::Synthesize {
                state,
                reason,
                completion,
            } => self.synthesize(record, &lock, id, &state, reason, completion.as_ref()),
        }
    }

    /// Finalizes a turn from csa's turn-end record (its supervisor could not), exactly as the
    /// supervisor would have: its result (an existing result.toml wins), its phase; then the
    /// record is removed.
    fn finalize_from_turn_end(
        &mut self,
        record: &ActiveRecord<'_>,
        lock: &ReconcileLock,
        id: &str,
        end: &crate::turn_end::TurnEnd,
    ) -> Option<Outcome> {
        let dir = lock.session_dir();
        let outcome = |action, reason, error| Some(Outcome::new(id, dir, action, reason, error));
        let result = match end.session_result() {
            Ok(result) => result,
            Err(err) => return outcome(Action::Error, None, Some(err.to_string())),
        };
        let finalized = crate::finalize::finalize_locked(
            lock,
            record.sessions(),
            id,
            &crate::finalize::TurnEnd {
                result: &result,
                phase: end.phase,
                termination_reason: end.termination_reason.as_deref(),
                tool: &result.tool,
            },
        );
        match finalized {
            Ok(_) => {
                let path = dir.join(crate::turn_end::TURN_END_FILE);
                if let Err(err) = lock.dir().remove_file(crate::turn_end::TURN_END_FILE) {
                    tracing::warn!(%err, "could not remove the turn-end record");
                }
                outcome(
                    Action::FinalizedFromTurnEnd,
                    Some(format!(
                        "its turn ended ({} {}) but was not finalized; finalized from {}",
                        result.status,
                        result.exit_code,
                        path.display()
                    )),
                    None,
                )
            }
            Err(err) => outcome(Action::Error, None, Some(err.to_string())),
        }
    }

    fn retire_with_result(
        &self,
        record: &ActiveRecord,
        lock: &ReconcileLock,
        id: &str,
    ) -> Result<(), StoreError> {
        let dir = lock.dir();
        let state = SessionState::load(dir)?;
        // A synthetic result whose state write never happened (kill -9 between steps 4 and 5)
        // finishes as the reconcile that published it would have: with the reason of the
        // completion record it was built from, else `orphaned_process`.
        let result = SessionResult::load(dir).ok().flatten();
        let reason = match &result {
            Some(r) if is_synthetic(r) => match completion::load(dir) {
                Ok(Some(c)) => c.record.termination_reason(),
                _ => "orphaned_process".to_owned(),
            },
            _ => "completed".to_owned(),
        };
        // The turn ended when its result says it did.
        let ended = result.map_or_else(Utc::now, |r| r.completed_at);
        state.end_turn(lock, Phase::Retired, &reason, ended)?;
        if let Err(err) = record.remove(id, lock) {
            tracing::warn!(%err, "could not prune a retired session's record entry");
        }
        Ok(())
    }

    fn synthesize(
        &mut self,
        record: &ActiveRecord,
        lock: &ReconcileLock,
        id: &str,
        state: &SessionState,
        reason: String,
        completion: Option<&Completion>,
    ) -> Option<Outcome> {
        let dir = lock.dir();
        let outcome =
            |action, reason, error| Some(Outcome::new(id, dir.path(), action, reason, error));
        let now = Utc::now();
        let result = synthetic_result(state, dir, &self.opts.trigger, &reason, completion, now);
        let ours = result.to_toml();
        // 4. Publish only if absent.
        match publish_result(dir, ours.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A real result won the race: retire with it.
                return match SessionResult::load(dir) {
                    Ok(Some(_)) => match self.retire_with_result(record, lock, id) {
                        Ok(()) => outcome(
                            Action::RetiredWithResult,
                            Some("a result appeared while reconciling".into()),
                            None,
                        ),
                        Err(err) => outcome(Action::Error, None, Some(err.to_string())),
                    },
                    Ok(None) => outcome(
                        Action::Error,
                        None,
                        Some(format!(
                            "{}: appeared and vanished",
                            dir.join(RESULT_FILE).display()
                        )),
                    ),
                    Err(err) => {
                        outcome(Action::SkippedUnreadableResult, Some(err.to_string()), None)
                    }
                };
            }
            Err(err) => return outcome(Action::Error, None, Some(err.to_string())),
        }
        // 5. Retire.
        let (termination_reason, action) = match completion {
            Some(c) => (
                c.record.termination_reason(),
                match c.source {
                    Source::LegacyMarker => Action::SynthesizedFromMarker,
                    Source::DaemonCompletion => Action::SynthesizedFromCompletion,
                },
            ),
            None => ("orphaned_process".to_owned(), Action::SynthesizedFailure),
        };
        let reason = match completion {
            Some(c) => format!("{reason}; finalized from {}", c.path.display()),
            None => reason,
        };
        match retire_after_publish(state, lock, &termination_reason, result.completed_at) {
            Ok(()) => {
                if let Err(err) = record.remove(id, lock) {
                    tracing::warn!(%err, "could not prune a retired session's record entry");
                }
                outcome(action, Some(reason), None)
            }
            // 6. Roll back.
            Err(err) => {
                let rollback = roll_back(dir, ours.as_bytes());
                outcome(Action::Error, None, Some(format!("{err}; {rollback}")))
            }
        }
    }
}

/// Step 4: publishes `bytes` as result.toml only if there is none (`link(2)`).
fn publish_result(dir: &StoreDir, bytes: &[u8]) -> io::Result<()> {
    crate::failpoint!("reconcile::before_publish", "write", &dir.join(RESULT_FILE))?;
    write_atomic(dir, RESULT_FILE, bytes, 0o600, Publish::CreateNew)
}

/// Step 5: retires the session whose synthetic result was just published.
fn retire_after_publish(
    state: &SessionState,
    lock: &ReconcileLock,
    termination_reason: &str,
    ended: DateTime<Utc>,
) -> Result<(), StoreError> {
    let path = lock.dir().join(crate::state::STATE_FILE);
    crate::failpoint!("reconcile::after_publish", "write", &path)?;
    crate::failpoint!("reconcile::before_state_write", "write", &path)?;
    state.end_turn(lock, Phase::Retired, termination_reason, ended)
}

/// Prefix of every synthetic summary csa writes (`synthetic failure by <trigger>: …`,
/// `synthetic result by <trigger>: …`).
const SYNTHETIC_PREFIXES: [&str; 2] = ["synthetic failure by ", "synthetic result by "];

/// Whether `result` is a synthetic one (csa's or upstream's, which use the same summary).
pub fn is_synthetic(result: &SessionResult) -> bool {
    SYNTHETIC_PREFIXES
        .iter()
        .any(|p| result.summary.starts_with(p))
}

/// Whether a result's outcome was observed: written by the process that saw the agent exit
/// (csa's supervisor, upstream's daemon, a kill that signalled it), rather than synthesized by
/// csa or upstream for an agent whose owner died without writing one. Not observed: a
/// synthetic summary ([`is_synthetic`], which covers results built from a legacy `.complete`
/// marker too), or a session retired with `termination_reason = "orphaned_process"` (its
/// result was synthesized, whatever its summary says). `termination_reason` is state.toml's,
/// `None` when absent or unreadable.
///
/// Upstream's format fixes `exit_code = 1` for a synthetic failure, so this, not the exit
/// code, is what tells it from an agent that really exited 1 (`"observed"` in `csa session
/// result --format json`).
pub fn is_observed(result: &SessionResult, termination_reason: Option<&str>) -> bool {
    !is_synthetic(result) && termination_reason != Some("orphaned_process")
}

/// Name prefix of a result set aside by [`roll_back`].
const ROLLBACK_PREFIX: &str = ".tmp-rollback-";

/// Puts back a result that [`roll_back`] renamed aside and could not restore because the
/// process died in between: linked back to result.toml when that is absent (`link(2)`, so a
/// newer result wins), then the aside name is removed. Best effort; failures become warnings.
fn recover_rollback_leftovers(lock: &ReconcileLock, warnings: &mut Vec<String>) {
    let dir = lock.dir();
    let Ok(entries) = dir.entries() else {
        return;
    };
    for entry in entries {
        if !entry.name.to_string_lossy().starts_with(ROLLBACK_PREFIX) {
            continue;
        }
        let aside = dir.join(&entry.name);
        let restored = match dir.hard_link(&entry.name, dir, RESULT_FILE) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Keep the aside copy unless result.toml holds the same bytes.
                let bytes = |name: &std::ffi::OsStr| {
                    dir.read_capped(name, crate::result::MAX_RESULT_BYTES)
                        .ok()
                        .map(|(b, _)| b)
                };
                bytes(&entry.name) == bytes(std::ffi::OsStr::new(RESULT_FILE))
            }
            Err(e) => {
                warnings.push(format!("could not restore {}: {e}", aside.display()));
                false
            }
        };
        if restored {
            if let Err(e) = dir.remove_file(&entry.name).and_then(|()| sync_dir(dir)) {
                warnings.push(e.to_string());
            }
        } else {
            warnings.push(format!(
                "{} holds a result set aside by an interrupted rollback; result.toml differs, so both are kept",
                aside.display()
            ));
        }
    }
}

/// Takes back a synthetic result.toml whose state write failed, but only if it is still
/// byte-for-byte the one published: it is first renamed aside (atomically taking whatever file
/// is there now), compared, then deleted if ours or linked back if another writer's.
/// Returns a sentence for the error report.
pub(crate) fn roll_back(dir: &StoreDir, ours: &[u8]) -> String {
    let aside = format!("{ROLLBACK_PREFIX}{}", ulid::Ulid::new());
    match crate::failpoint!("reconcile::roll_back_aside")
        .and_then(|()| dir.rename(RESULT_FILE, dir, &aside))
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return "the synthetic result was already gone".into()
        }
        Err(e) => return format!("could not roll back the synthetic result: {e}"),
    }
    let is_ours = dir
        .read_capped(&aside, crate::result::MAX_RESULT_BYTES)
        .is_ok_and(|(bytes, _)| bytes == ours);
    let message = if is_ours {
        "the synthetic result was rolled back".to_owned()
    } else {
        match dir.hard_link(&aside, dir, RESULT_FILE) {
            Ok(()) => "result.toml had been replaced by another writer and was kept".to_owned(),
            Err(e) => format!(
                "result.toml had been replaced by another writer; it is kept at {} ({e})",
                dir.join(&aside).display()
            ),
        }
    };
    if is_ours || dir.exists(RESULT_FILE) {
        if let Err(e) =
            crate::failpoint!("reconcile::roll_back_remove").and_then(|()| dir.remove_file(&aside))
        {
            tracing::warn!(%e, "could not remove a rolled-back result");
        }
    }
    if let Err(e) = sync_dir(dir) {
        tracing::warn!(%e, "could not fsync the session directory after rollback");
    }
    message
}

/// The synthetic result for a dead session, or for one finalized from a completion record
/// (`completion`: upstream's `daemon-completion.toml` or a legacy `.complete` marker, with
/// upstream's rules: [`completion::Record::outcome`]). Its summary starts `synthetic failure by
/// <trigger>: ` (or `synthetic result by <trigger>: ` when the record gives another status than
/// a failure), which [`is_synthetic`] recognizes; a record's `raw_process_exit_code`, when there
/// is one, is kept as that extra key of result.toml (upstream's).
pub fn synthetic_result(
    state: &SessionState,
    dir: &StoreDir,
    trigger: &str,
    reason: &str,
    completion: Option<&Completion>,
    now: DateTime<Utc>,
) -> SessionResult {
    let tool = state
        .view
        .latest_tool()
        .map(str::to_owned)
        .or_else(|| metadata_tool(dir))
        .unwrap_or_else(|| "unknown".to_owned());
    let mut other = toml::Table::new();
    let (status, exit_code, mut summary) = match completion {
        Some(c) => {
            let outcome = c.record.outcome(completion::stdout_has_output(dir));
            let kind = if outcome.status == ResultStatus::Failure {
                "failure"
            } else {
                "result"
            };
            let what = match c.source {
                Source::LegacyMarker => {
                    format!(
                        "legacy .complete marker records exit code {}",
                        c.record.exit_code
                    )
                }
                Source::DaemonCompletion => format!(
                    "daemon-completion.toml records status={} exit_code={}{}",
                    c.record.status,
                    c.record.exit_code,
                    c.record
                        .reason
                        .as_deref()
                        .map(|r| format!(" reason={r}"))
                        .unwrap_or_default()
                ),
            };
            let note = if outcome.missing_result_failure {
                "; result.toml missing, so the recorded success counts as a failure"
            } else {
                ""
            };
            if let Some(raw) = outcome.raw_process_exit_code {
                other.insert("raw_process_exit_code".into(), toml::Value::Integer(raw));
            }
            (
                outcome.status,
                outcome.exit_code,
                format!("synthetic {kind} by {trigger}: {what}{note}"),
            )
        }
        None => (
            ResultStatus::Failure,
            1,
            format!("synthetic failure by {trigger}: process dead, result.toml missing ({reason})"),
        ),
    };
    let tail = output_tail(dir, "output.log");
    if !tail.is_empty() {
        summary.push_str("\nlast output:\n");
        summary.push_str(&tail);
    }
    SessionResult {
        status,
        exit_code,
        summary,
        tool,
        started_at: state.view.last_accessed.min(now),
        completed_at: now,
        artifacts: Vec::new(),
        other,
    }
}

/// `tool` from metadata.toml, if readable.
fn metadata_tool(dir: &StoreDir) -> Option<String> {
    let (bytes, _) = dir.read_capped("metadata.toml", 1 << 20).ok()?;
    let table: toml::Table = std::str::from_utf8(&bytes).ok()?.parse().ok()?;
    table.get("tool")?.as_str().map(str::to_owned)
}

/// The last [`TAIL_LINES`] non-empty lines of the log `name` of `dir`, reading at most
/// [`TAIL_BYTES`] from its end.
pub fn output_tail(dir: &StoreDir, name: &str) -> String {
    output_tail_since(dir, name, 0)
}

/// The last [`TAIL_LINES`] non-empty lines written to the log `name` of `dir` since byte
/// `offset` (the log's size when the turn started), reading at most [`TAIL_BYTES`] from its
/// end: a turn's own output, never an earlier turn's.
pub fn output_tail_since(dir: &StoreDir, name: &str, offset: u64) -> String {
    output_tail_through(dir, name, offset, |bytes| bytes)
}

/// [`output_tail_since`] with the bytes read turned into text by `to_text` before the lines are
/// picked (an interactive turn's log is terminal escape sequences: its caller strips them).
pub fn output_tail_through(
    dir: &StoreDir,
    name: &str,
    offset: u64,
    to_text: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> String {
    let Ok(mut file) = dir.open_read(name) else {
        return String::new();
    };
    let len = match file.metadata() {
        Ok(meta) if meta.is_file() => meta.len(),
        _ => return String::new(),
    };
    let start = len.saturating_sub(TAIL_BYTES).max(offset.min(len));
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err()
        || file.take(TAIL_BYTES).read_to_end(&mut buf).is_err()
    {
        return String::new();
    }
    let buf = to_text(buf);
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if start > offset && !lines.is_empty() {
        lines.remove(0); // probably cut in the middle
    }
    let from = lines.len().saturating_sub(TAIL_LINES);
    lines[from..].join("\n")
}
