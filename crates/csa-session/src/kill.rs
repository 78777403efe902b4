//! Stopping a session's agent (`csa session kill`) without ever signalling the wrong process,
//! and with exactly one final result however the kill races the agent's own exit.
//!
//! Protocol:
//! 1. Under the session's lock, re-read state.toml and decide ([`prepare`]): an ended session has
//!    nothing to kill; an Active one whose owner is dead is reconciled instead; otherwise the
//!    targets are the processes named in `locks/*.lock` that are *verified*: pid above 1,
//!    running, start ticks equal to the recorded ones (a lock without recorded ticks cannot be
//!    verified), the recorded boot id (when there is one) equal to this boot's, and owned by
//!    this user. A target that leads its own process group (as `csa run`'s agents do) is
//!    signalled as a group. Before releasing the lock, [`KILL_MARKER`] is written.
//! 2. Without the lock: SIGTERM, wait up to the grace period, SIGKILL, wait until every target
//!    is gone. (The lock is never held while waiting.)
//! 3. The turn is finalized once, under the lock, by whichever comes first: `csa run`'s
//!    supervisor (its finalize sees the marker and, if the agent died by a signal, retires the
//!    session as `killed`) or the kill command itself (status `signal`, `termination_reason =
//!    "killed"`, phase `retired`). The later one finds the session ended and changes nothing.
//!
//! Signalling a process group by id after verifying its leader is safe from reuse: Linux never
//! hands out a pid that is still in use as a process group id, so while any member lives the id
//! names the same group; once none does, the group is gone and nothing more is sent.

use std::io;
use std::path::Path;

use csa_process::{HostIdentity, Probe};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::atomic::{write_atomic, Publish};
use crate::error::Result;
use crate::liveness::{assess, LivenessContext, LockBody, Verdict};
use crate::lock::ReconcileLock;
use crate::state::{Phase, SessionState};

/// csa's kill-intent marker in the session directory (upstream never reads it).
pub const KILL_MARKER: &str = ".kill-requested";

/// A process verified to belong to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Its pid.
    pub pid: u32,
    /// Whether it leads its own process group (then the whole group is signalled).
    pub group: bool,
}

/// What [`prepare`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillDecision {
    /// The session has ended: nothing to kill.
    Ended(Phase),
    /// Active, but its owner is dead: reconcile it instead.
    Dead,
    /// The owner runs on another machine or in another PID namespace: refuse.
    Foreign(String),
    /// Alive, but no process could be verified as the session's: refuse.
    Unverifiable(String),
    /// Alive, but every process its locks name has already exited: its owner is finishing the
    /// turn (or another kill is). Nothing to signal.
    Finishing,
    /// Kill these; the marker is written.
    Kill(Vec<Target>),
}

/// Step 1 of the module docs, under `lock` (whose session is `id`).
///
/// # Errors
/// The errors of reading state.toml, and of writing the marker, naming the path.
pub fn prepare(lock: &ReconcileLock, id: &str) -> Result<KillDecision> {
    let dir = lock.session_dir();
    let state = SessionState::load(dir)?;
    if state.view.phase.is_ended() {
        return Ok(KillDecision::Ended(state.view.phase));
    }
    match assess(&LivenessContext::new(), dir, id, true).verdict {
        Verdict::Dead { .. } => return Ok(KillDecision::Dead),
        Verdict::Foreign(why) => return Ok(KillDecision::Foreign(why)),
        Verdict::Alive(_) => {}
    }
    let host = HostIdentity::current();
    let mut targets = Vec::new();
    let mut refused = Vec::new();
    let mut exited = Vec::new();
    if let Ok(entries) = fs_err::read_dir(dir.join("locks")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "lock") {
                continue;
            }
            let Some(body) = crate::read_capped(&path, 64 << 10)
                .ok()
                .and_then(|(bytes, _)| serde_json::from_slice::<LockBody>(&bytes).ok())
            else {
                continue;
            };
            match verify(&host, &body) {
                Ok(Some(target)) => targets.push(target),
                Ok(None) => exited.push(path),
                Err(why) => refused.push(format!("{}: {why}", path.display())),
            }
        }
    }
    if targets.is_empty() && refused.is_empty() && !exited.is_empty() {
        // Its owner is finishing the turn only while it still holds a lock file (csa run's
        // supervisor holds its tool lock until the turn is finalized). Otherwise it died
        // without finalizing (a killed supervisor), and no turn end will come: refuse now.
        // Regression: found by the stress test, where kill waited 10 s for such a session and
        // then failed with an undocumented error.
        if any_held(&exited) {
            return Ok(KillDecision::Finishing);
        }
        return Ok(KillDecision::Unverifiable(
            "every process its locks name has exited, and no process holds its locks \
             (its owner died without finalizing the turn)"
                .to_owned(),
        ));
    }
    if targets.is_empty() {
        let why = if refused.is_empty() {
            "no lock file names its process".to_owned()
        } else {
            refused.join("; ")
        };
        return Ok(KillDecision::Unverifiable(why));
    }
    crate::failpoint!("kill::write_marker", "write", &dir.join(KILL_MARKER))?;
    write_atomic(dir, KILL_MARKER, b"", 0o600, Publish::Replace)?;
    Ok(KillDecision::Kill(targets))
}

/// Whether any of `paths` is a lock file some process holds (`/proc/locks`); fails closed
/// (held) when the lock table cannot be read.
fn any_held(paths: &[std::path::PathBuf]) -> bool {
    let Ok(held) = csa_process::HeldLocks::read() else {
        return true;
    };
    paths
        .iter()
        .any(|p| fs_err::metadata(p).is_ok_and(|m| held.is_held(csa_process::FileId::of(&m))))
}

/// Whether `body` names a process csa may signal (see the module docs), and how. `Ok(None)`:
/// it has exited (also when it exits while being checked), so there is nothing to signal.
fn verify(host: &HostIdentity, body: &LockBody) -> std::result::Result<Option<Target>, String> {
    let pid = body.pid;
    if pid <= 1 {
        return Err(format!("pid {pid} is never signalled"));
    }
    let Some(recorded) = body.pid_start_time_ticks else {
        return Err(format!(
            "pid {pid} has no recorded start ticks to verify it by"
        ));
    };
    if let (Some(ours), Some(theirs)) = (&host.boot_id, &body.boot_id) {
        if ours != theirs {
            return Err(format!("pid {pid} was recorded in another boot"));
        }
    }
    if !matches!(csa_process::probe(pid), Probe::Running { .. }) {
        return Ok(None);
    }
    let stat = match csa_process::platform::stat(pid) {
        Ok(stat) if stat.has_exited() => return Ok(None),
        Ok(stat) => stat,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("pid {pid}: cannot read its stat ({e})")),
    };
    if stat.start_ticks != recorded {
        return Err(format!(
            "pid {pid} now belongs to another process (start ticks differ)"
        ));
    }
    let uid = match csa_process::platform::owner_uid(pid) {
        Ok(uid) => uid,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("pid {pid}: {e}")),
    };
    if uid != nix::unistd::geteuid().as_raw() {
        return Err(format!("pid {pid} belongs to another user"));
    }
    Ok(Some(Target {
        pid,
        group: stat.pgrp == pid,
    }))
}

/// Sends `signal` to every target (its group when it leads one). A target already gone is not
/// an error.
pub fn signal(targets: &[Target], signal: Signal) {
    for t in targets {
        // A crash point only: a failed signal is reported by the caller's `all_gone` checks.
        let _ = crate::failpoint!("kill::signal");
        let Ok(raw) = i32::try_from(t.pid) else {
            continue;
        };
        let pid = Pid::from_raw(raw);
        let sent = if t.group {
            killpg(pid, signal)
        } else {
            kill(pid, signal)
        };
        if let Err(err) = sent {
            tracing::debug!(%err, pid = t.pid, "signal not delivered (already gone?)");
        }
    }
}

/// Whether every target (and every member of its group) has exited. Zombies count as exited:
/// a group whose only members are unreaped zombies is gone.
pub fn all_gone(targets: &[Target]) -> bool {
    targets.iter().all(|t| {
        if t.group {
            // Not `killpg(pid, 0)`: it succeeds while an unreaped zombie is left in the group,
            // forever if its parent never reaps it. Regression: found by the stress test, where
            // `csa session kill` of an upstream session hung on its owner's zombie.
            !csa_process::group_is_running(t.pid)
        } else {
            !csa_process::probe(t.pid).is_running()
        }
    })
}

/// Whether the kill marker is present in `dir`.
pub fn requested(dir: &Path) -> bool {
    dir.join(KILL_MARKER).exists()
}

/// Removes the kill marker (under the session's lock, after the turn was finalized).
///
/// # Errors
/// The unlink's error other than absence, naming the path.
pub fn clear(lock: &ReconcileLock) -> io::Result<()> {
    crate::failpoint!(
        "kill::clear_marker",
        "remove",
        &lock.session_dir().join(KILL_MARKER)
    )?;
    match fs_err::remove_file(lock.session_dir().join(KILL_MARKER)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
