//! The invariant checker: lists every way a state root's files break what csa promises, so that
//! crash, race and fault tests can assert "0 violations" after anything happened (issue 5).
//!
//! Checked per session directory (`sessions/<ULID>/`), and per project:
//! - state.toml exists and parses ([`SessionState::load`]);
//! - an Active session has no result, except in the window a reconcile resolves (its owner is
//!   dead: a kill -9 between publishing a result and moving the phase); an Active session with a
//!   result and a live owner is a violation;
//! - a session that csa runs (it has run.toml) and has ended has a result, and its turn history
//!   is complete: `output/turns/turn-NNNNNN/result.toml` for every turn before the current one;
//! - no competing results: no result set aside by an interrupted rollback (`.tmp-rollback-*`)
//!   next to a result.toml;
//! - no temporary files (`.tmp-*`) in a session, in `sessions/` or in `.csa-active/`, and no
//!   half-built (`.build-*`) or half-deleted (`.deleting-*`) directories: the checker is meant to
//!   run after a later command has had the chance to sweep them ([`crate::leftovers`]). A temp
//!   file or build whose name names a live writer (`<pid>.<ticks>`) is work in progress, not a
//!   violation;
//! - the directory claim (`sessions/.csa-claim.lock`) is held only while the session its holder
//!   record names is Active and alive (its supervisor, or its agent, which inherits the claim);
//! - the state root, project directories, `sessions/`, `.csa-active/` and session directories
//!   are real directories of this user, not writable by group or others ([`crate::secure`]);
//!   no session directory is a symbolic link.
//!
//! Upstream-written sessions without run.toml may be ended without a result (upstream's
//! `available` and `tool_exhausted` sessions are), so that rule applies to csa's sessions only.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::claim::{ClaimHolder, CLAIM_FILE};
use crate::dirfd::{Kind, StoreDir};
use crate::liveness::{assess, LivenessContext};
use crate::paths::{all_projects, is_ulid, open_session_in, Project, StateRoots, SESSIONS_DIR};
use crate::result::{SessionResult, RESULT_FILE};
use crate::state::{Phase, SessionState};

/// One broken promise, naming the path it was found at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The file or directory.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
}

/// Checks every project of every root; returns the violations found (empty: all is well).
pub fn check_roots(roots: &StateRoots) -> Vec<Violation> {
    let ctx = LivenessContext::new();
    let mut out = Vec::new();
    for root in roots.iter() {
        if let Err(err) = crate::secure::check_root(root) {
            push_refused(&mut out, root, &err);
        }
        match all_projects(root) {
            Ok(projects) => {
                for project in projects {
                    if let Err(err) = crate::secure::check_project(&project) {
                        push_refused(&mut out, &project.sessions_dir, &err);
                    }
                    match open_for_reading(&project) {
                        Ok(Some(sessions)) => check_sessions_dir(&ctx, &sessions, &mut out),
                        Ok(None) => {}
                        Err(err) => push(&mut out, &project.sessions_dir, err.to_string()),
                    }
                }
            }
            Err(err) => out.push(Violation {
                path: root.to_owned(),
                problem: format!("cannot walk the state root: {err}"),
            }),
        }
    }
    out
}

/// A directory csa refuses ([`crate::secure`]): its path and problem, once however many
/// projects share it.
fn push_refused(out: &mut Vec<Violation>, fallback: &Path, err: &crate::StoreError) {
    let v = match err {
        crate::StoreError::Insecure(i) => Violation {
            path: i.path.clone(),
            problem: format!("{}: csa refuses to use it", i.problem),
        },
        other => Violation {
            path: fallback.to_owned(),
            problem: other.to_string(),
        },
    };
    if !out.contains(&v) {
        out.push(v);
    }
}

fn push(out: &mut Vec<Violation>, path: &Path, problem: impl Into<String>) {
    out.push(Violation {
        path: path.to_owned(),
        problem: problem.into(),
    });
}

/// The project's `sessions/`, opened from the state root without following a link but not
/// verified (the checker reports a refused directory, then still looks inside it).
fn open_for_reading(project: &Project) -> std::io::Result<Option<StoreDir>> {
    let Ok(Some(mut dir)) = StoreDir::open_root(&project.root) else {
        return Ok(None);
    };
    for name in project.key.split('/').filter(|c| !c.is_empty()) {
        match dir.open_dir_if_exists(name)? {
            Some(next) => dir = next,
            None => return Ok(None),
        }
    }
    dir.open_dir_if_exists(SESSIONS_DIR)
}

/// Checks one project's open `sessions/` directory.
pub fn check_sessions_dir(ctx: &LivenessContext, sessions: &StoreDir, out: &mut Vec<Violation>) {
    let Ok(entries) = sessions.entries() else {
        return;
    };
    for entry in entries {
        let name = entry.name.to_string_lossy().into_owned();
        let path = sessions.join(&entry.name);
        if name.starts_with(".tmp") {
            if !temp_in_progress(&name) {
                push(out, &path, "temporary file left behind");
            }
        } else if name.starts_with(".build-") {
            let building = crate::leftovers::build_owner(&name)
                .is_some_and(|tag| !crate::atomic::owner_gone(tag));
            if !building {
                push(out, &path, "half-built session left behind");
            }
        } else if name.starts_with(".deleting-") {
            push(out, &path, "half-deleted session left behind");
        } else if name == crate::active::ACTIVE_DIR {
            if let Ok(active) = sessions.open_dir(&entry.name) {
                stray_temps(&active, out);
            }
        } else if is_ulid(&name) && entry.kind == Kind::Dir {
            check_session(ctx, sessions, &name, out);
        } else if is_ulid(&name) && entry.kind == Kind::Symlink {
            push(out, &path, "a session directory that is a symbolic link");
        }
    }
    check_claim(ctx, sessions, out);
}

/// Whether `name` is the temp file of a write in progress: `.tmp-<pid>.<ticks>-…` whose writer
/// is alive (`crate::atomic`).
fn temp_in_progress(name: &str) -> bool {
    crate::atomic::temp_owner(name).is_some_and(|tag| !crate::atomic::owner_gone(tag))
}

fn stray_temps(dir: &StoreDir, out: &mut Vec<Violation>) {
    if let Ok(entries) = dir.entries() {
        for entry in entries {
            let name = entry.name.to_string_lossy().into_owned();
            if name.starts_with(".tmp") && !temp_in_progress(&name) {
                push(out, &dir.join(&entry.name), "temporary file left behind");
            }
        }
    }
}

fn check_session(ctx: &LivenessContext, sessions: &StoreDir, id: &str, out: &mut Vec<Violation>) {
    if let Err(err) = crate::secure::check_session_dir(sessions, id) {
        push_refused(out, &sessions.join(id), &err);
    }
    let dir = match open_session_in(sessions, id) {
        Ok(dir) => dir,
        Err(err) => return push(out, &sessions.join(id), err.to_string()),
    };
    let dir = &dir;
    stray_temps(dir, out);
    let state = match SessionState::load(dir) {
        Ok(state) => state,
        Err(err) => return push(out, dir.path(), format!("state.toml: {err}")),
    };
    let result = match SessionResult::load(dir) {
        Ok(result) => result,
        Err(err) => return push(out, &dir.join(RESULT_FILE), err.to_string()),
    };
    if let Ok(entries) = dir.entries() {
        for entry in entries {
            if entry.name.to_string_lossy().starts_with(".tmp-rollback-") && result.is_some() {
                push(
                    out,
                    &dir.join(&entry.name),
                    "a second result competes with result.toml",
                );
            }
        }
    }
    let csa_run = dir.exists(crate::create::RUN_FILE);
    match (state.view.phase, &result) {
        (Phase::Active, Some(_)) if assess(ctx, dir, id, true).verdict.is_alive() => {
            push(
                out,
                dir.path(),
                "active with a result while its owner lives",
            );
        }
        // The window of a resume killed between archiving the result and activating the
        // turn: the next reconcile undoes it (the resume added the session to the record).
        (_, None)
            if crate::resume::archive_interrupted(dir, &state.view)
                && crate::active::ActiveRecord::new(sessions).contains(id) => {}
        (phase, None) if phase.is_ended() && csa_run => {
            push(
                out,
                dir.path(),
                format!("{} without a result", phase.as_str()),
            );
        }
        _ => {}
    }
    if csa_run {
        let turns = state.view.turn_count.unwrap_or(1);
        // Only turns csa ran (run.toml lists them) must have kept a result: a session that
        // upstream ended without one (its `available` sessions may have none) and csa then
        // resumed has none for the turns before. Regression: found with the stress test's
        // upstream sessions. An unreadable run.toml checks every turn.
        let ran = dir
            .read_capped(crate::create::RUN_FILE, 16 << 20)
            .ok()
            .and_then(|(bytes, _)| {
                toml::from_str::<crate::create::RunRecord>(&String::from_utf8_lossy(&bytes)).ok()
            })
            .map(|run| {
                run.turns
                    .iter()
                    .map(|t| u64::from(t.turn))
                    .collect::<Vec<_>>()
            });
        for turn in 1..turns {
            if ran.as_ref().is_some_and(|ran| !ran.contains(&turn)) {
                continue;
            }
            let past = crate::resume::archived_result(turn);
            if dir.metadata(&past).is_err() {
                push(
                    out,
                    &dir.join(&past),
                    "turn history is missing this turn's result",
                );
            }
        }
    }
}

fn check_claim(ctx: &LivenessContext, sessions: &StoreDir, out: &mut Vec<Violation>) {
    let path = sessions.join(CLAIM_FILE);
    let Ok(file) = sessions.open_read(CLAIM_FILE) else {
        return;
    };
    let held = csa_process::LockTable::read().state(&file);
    if !held.is_ok_and(csa_process::LockState::is_held) {
        return;
    }
    // Bounded, and never blocked by a FIFO: a held claim linked to /dev/zero was read without
    // end (tests/cli/corpus.rs).
    let holder: Option<ClaimHolder> =
        crate::dirfd::read_open_file(file, &path, crate::claim::MAX_HOLDER_BYTES)
            .ok()
            .and_then(|(body, _)| serde_json::from_slice(&body).ok());
    let Some(holder) = holder else {
        // Held with an empty record: the holder is between its flock and its write.
        return;
    };
    let live_active = open_session_in(sessions, &holder.session_id).is_ok_and(|dir| {
        SessionState::load(&dir).is_ok_and(|s| s.view.phase == Phase::Active)
            && assess(ctx, &dir, &holder.session_id, true)
                .verdict
                .is_alive()
    });
    if !live_active && !csa_process::probe(holder.pid).is_running() {
        push(
            out,
            &path,
            format!(
                "claimed for session {}, which is not running",
                holder.session_id
            ),
        );
    }
}
