//! Stopping a session (`csa session kill`): every process of it, never a process that is not
//! verifiably its own, and with exactly one final result however the kill races the agent's own
//! exit.
//!
//! Protocol:
//! 1. Under the session's lock, re-read state.toml and decide ([`prepare`]): an ended session
//!    has nothing to kill; an Active one whose processes are all dead is reconciled instead.
//!    For a session csa runs (it has a `membership.toml` of this boot), the targets are the
//!    session's members ([`csa_process::Membership`]: its cgroup, or its process session and
//!    marker) other than its supervisor, which finalizes the turn; each is verified as a member
//!    again when signalled, through a pidfd ([`csa_process::signal::signal_member`]). For an
//!    upstream session, the targets are the processes its `locks/*.lock` bodies name that are
//!    *verified*: running, start time equal to the recorded one in a common unit, not of
//!    another boot, every recorded identity (boot id, boot time, PID namespace) checkable by
//!    the process backend in use, and owned by this user; one that leads its own process group
//!    is signalled as a group. If the agent's main process is still running, [`KILL_MARKER`] is
//!    written before the lock is released: from then on the turn ends as killed.
//! 2. Without the lock: SIGTERM, wait up to the grace period, record the escalation in the
//!    marker ([`escalate`]), SIGKILL, wait until every target is gone. (The lock is never held
//!    while waiting.)
//! 3. The turn is finalized once, under the lock, by whichever comes first: `csa run`'s
//!    supervisor or the kill command itself; both see the marker and end the turn the same
//!    way: phase `retired`, `termination_reason = "killed"`, status `signal`, exit code 128 + the
//!    last signal sent (or the signal that ended the agent), with the agent's own exit code, if
//!    it exited on its own after SIGTERM, kept as `raw_process_exit_code`. The later one finds
//!    the session ended and changes nothing. So the end state depends only on whether the
//!    agent's main process was running when kill took the session's lock.
//!
//! Signalling a process group by id after verifying its leader is safe from reuse: Linux never
//! hands out a pid that is still in use as a process group id, so while any member lives the id
//! names the same group; once none does, the group is gone and nothing more is sent.

use std::ffi::OsString;
use std::io;

use csa_process::signal::{signal_member, Sent};
use csa_process::{HostIdentity, Membership, Probe, Released, StartTime};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::atomic::{write_atomic, Publish};
use crate::dirfd::StoreDir;
use crate::error::Result;
use crate::liveness::{assess, LivenessContext, LockBody, Verdict};
use crate::lock::ReconcileLock;
use crate::membership::MembershipRecord;
use crate::state::{Phase, SessionState};

/// csa's kill-intent marker in the session directory (upstream never reads it). Its body is the
/// last signal sent: `TERM` or `KILL`.
pub const KILL_MARKER: &str = ".kill-requested";

/// A process verified to belong to an upstream session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Its pid.
    pub pid: u32,
    /// Whether it leads its own process group (then the whole group is signalled).
    pub group: bool,
}

/// What to signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every member of a session csa runs, except its supervisor.
    Members {
        /// The session's ULID.
        id: String,
        /// How its processes are identified.
        membership: Membership,
        /// Its supervisor (never signalled: it finalizes the turn).
        supervisor: u32,
        /// The supervisor's start time, when recorded.
        supervisor_start: Option<StartTime>,
        /// Processes it let go.
        released: Vec<Released>,
    },
    /// Verified owners of an upstream session.
    Owners(Vec<Target>),
}

/// What [`prepare`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillDecision {
    /// The session has ended: nothing to kill.
    Ended(Phase),
    /// Active, but every process of it is dead: reconcile it instead.
    Dead,
    /// The owner runs on another machine or in another PID namespace: refuse.
    Foreign(String),
    /// Alive, but no process could be verified as the session's: refuse.
    Unverifiable(String),
    /// Alive, but its agent has already exited and its supervisor is finishing the turn (or
    /// another kill is): nothing to signal.
    Finishing,
    /// Kill these; the marker is written.
    Kill(Targets),
}

/// Step 1 of the module docs, under `lock` (whose session is `id`).
///
/// # Errors
/// The errors of reading state.toml, and of writing the marker, naming the path.
pub fn prepare(lock: &ReconcileLock, id: &str) -> Result<KillDecision> {
    let dir = lock.dir();
    let state = SessionState::load(dir)?;
    if state.view.phase.is_ended() {
        return Ok(KillDecision::Ended(state.view.phase));
    }
    let ctx = LivenessContext::new();
    match assess(&ctx, dir, id, true).verdict {
        Verdict::Dead { .. } => return Ok(KillDecision::Dead),
        Verdict::Foreign(why) => return Ok(KillDecision::Foreign(why)),
        Verdict::Alive(_) => {}
    }
    let record = MembershipRecord::load(dir).ok().flatten().filter(|r| {
        ctx.host()
            .other_boot(r.boot_id.as_deref(), r.boot_time)
            .is_none()
    });
    let decision = match record {
        Some(record) => members_of(id, &record),
        None => owners_of(dir, id),
    };
    if let KillDecision::Kill(_) = &decision {
        crate::failpoint!("kill::write_marker", "write", &dir.join(KILL_MARKER))?;
        write_atomic(dir, KILL_MARKER, b"TERM\n", 0o600, Publish::Replace)?;
    }
    Ok(decision)
}

/// The targets of a session csa runs: its members but the supervisor, when its agent still runs
/// (otherwise its supervisor is finishing the turn, or, dead, left only leftovers to stop).
fn members_of(id: &str, record: &MembershipRecord) -> KillDecision {
    let Some(membership) = record.membership() else {
        return KillDecision::Unverifiable("its membership record names no cgroup".to_owned());
    };
    let supervisor = record.supervisor.pid;
    let running = |p: Option<crate::membership::ProcessId>| {
        p.is_some_and(|p| csa_process::running_as(p.pid, p.start()))
    };
    let agent_running = running(record.agent);
    let supervisor_running = running(Some(record.supervisor));
    if !agent_running && supervisor_running {
        return KillDecision::Finishing;
    }
    let released = record.released();
    match membership.members(id, &[supervisor], &released) {
        Ok(live) if live.is_empty() && supervisor_running => KillDecision::Finishing,
        Ok(live) if live.is_empty() => KillDecision::Unverifiable(
            "no process of it runs any more; it is finalized once its output is 30 s old"
                .to_owned(),
        ),
        Ok(_) => KillDecision::Kill(Targets::Members {
            id: id.to_owned(),
            membership,
            supervisor,
            supervisor_start: record.supervisor.start(),
            released,
        }),
        Err(err) => {
            KillDecision::Unverifiable(format!("its processes cannot be enumerated ({err})"))
        }
    }
}

/// The targets of an upstream session: verified owners named by its lock bodies.
fn owners_of(dir: &StoreDir, id: &str) -> KillDecision {
    let host = HostIdentity::current();
    let mut targets = Vec::new();
    let mut refused = Vec::new();
    let mut exited = Vec::new();
    let locks = dir.open_dir_if_exists("locks").ok().flatten();
    if let Some(locks) = &locks {
        for entry in locks.entries().unwrap_or_default() {
            if !entry.name_str().is_some_and(|n| n.ends_with(".lock")) {
                continue;
            }
            let path = locks.join(&entry.name);
            let Some(body) = locks
                .read_capped(&entry.name, 64 << 10)
                .ok()
                .and_then(|(bytes, _)| serde_json::from_slice::<LockBody>(&bytes).ok())
            else {
                continue;
            };
            match verify(&host, id, &body) {
                Ok(Some(target)) => targets.push(target),
                Ok(None) => exited.push(entry.name),
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
        if locks.as_ref().is_some_and(|locks| any_held(locks, &exited)) {
            return KillDecision::Finishing;
        }
        return KillDecision::Unverifiable(
            "every process its locks name has exited, and no process holds its locks \
             (its owner died without finalizing the turn)"
                .to_owned(),
        );
    }
    if targets.is_empty() {
        let why = if refused.is_empty() {
            "no lock file names its process".to_owned()
        } else {
            refused.join("; ")
        };
        return KillDecision::Unverifiable(why);
    }
    KillDecision::Kill(Targets::Owners(targets))
}

/// Step 2's escalation: records, under the session's lock, that SIGKILL follows, unless the
/// turn has already been finalized (then the marker is gone and stays gone). Returns whether
/// the session is still Active.
///
/// # Errors
/// Reading state.toml or writing the marker, naming the path.
pub fn escalate(lock: &ReconcileLock) -> Result<bool> {
    let dir = lock.dir();
    if SessionState::load(dir)?.view.phase.is_ended() {
        return Ok(false);
    }
    write_atomic(dir, KILL_MARKER, b"KILL\n", 0o600, Publish::Replace)?;
    Ok(true)
}

impl Targets {
    /// Sends `signal` to every target (verified again; a group when it leads one). A target
    /// already gone is not an error.
    pub fn signal(&self, signal: Signal) {
        match self {
            Targets::Members {
                id,
                membership,
                supervisor,
                released,
                ..
            } => {
                let Ok(live) = membership.members(id, &[*supervisor], released) else {
                    return;
                };
                for pid in live {
                    // A crash point only: a failed signal is reported by `all_gone` checks.
                    let _ = crate::failpoint!("kill::signal");
                    match signal_member(pid, signal, |p| membership.contains(id, p)) {
                        Ok(Sent::Delivered | Sent::Gone) => {}
                        Ok(Sent::Refused) => {
                            tracing::debug!(pid, "not verified as the session's: not signalled")
                        }
                        Err(err) => tracing::debug!(pid, %err, "signal not delivered"),
                    }
                }
            }
            Targets::Owners(owners) => signal_owners(owners, signal),
        }
    }

    /// Whether the supervisor of a session csa runs still lives (then it finalizes the turn).
    pub fn supervisor_alive(&self) -> bool {
        match self {
            Targets::Members {
                supervisor,
                supervisor_start,
                ..
            } => csa_process::running_as(*supervisor, *supervisor_start),
            Targets::Owners(_) => false,
        }
    }

    /// Whether every target has exited. Zombies count as exited. Fails closed (not gone) when
    /// members cannot be enumerated.
    pub fn all_gone(&self) -> bool {
        match self {
            Targets::Members {
                id,
                membership,
                supervisor,
                released,
                ..
            } => membership
                .members(id, &[*supervisor], released)
                .is_ok_and(|live| live.is_empty()),
            Targets::Owners(owners) => owners_gone(owners),
        }
    }
}

/// Whether any of the files `names` of `locks` is a lock file some process holds
/// ([`csa_process::LockTable`]); fails closed (held) when that cannot be found out.
fn any_held(locks: &StoreDir, names: &[OsString]) -> bool {
    let table = csa_process::LockTable::read();
    names
        .iter()
        .any(|name| match locks.open_existing_nofollow(name) {
            Ok(file) => table.state(&file).map_or(true, |s| s.is_held()),
            Err((rustix::io::Errno::NOENT, _)) => false,
            Err(_) => true,
        })
}

/// Whether `body` names a process csa may signal (see the module docs), and how. `Ok(None)`:
/// it has exited (also when it exits while being checked), so there is nothing to signal.
fn verify(
    host: &HostIdentity,
    id: &str,
    body: &LockBody,
) -> std::result::Result<Option<Target>, String> {
    let pid = body.pid;
    if pid <= 1 {
        return Err(format!("pid {pid} is never signalled"));
    }
    let Some(recorded) = body.start() else {
        return Err(format!(
            "pid {pid} has no recorded start time to verify it by"
        ));
    };
    if host
        .other_boot(body.boot_id.as_deref(), body.boot_time)
        .is_some()
    {
        return Err(format!("pid {pid} was recorded in another boot"));
    }
    // Recorded identity this process cannot check (the portable backend reads no boot id and
    // no PID namespace): never signalled on doubt.
    let unverifiable = [
        (body.boot_id.is_some() && host.boot_id.is_none(), "boot id"),
        (
            body.boot_time.is_some() && host.boot_time.is_none(),
            "boot time",
        ),
        (
            body.pid_ns.is_some() && host.pid_ns.is_none(),
            "PID namespace",
        ),
    ];
    if let Some((_, what)) = unverifiable.iter().find(|(doubt, _)| *doubt) {
        return Err(format!(
            "pid {pid} was recorded with a {what}, which this process backend cannot check"
        ));
    }
    if !matches!(csa_process::probe(pid), Probe::Running { .. }) {
        return Ok(None);
    }
    let stat = match csa_process::backend::stat(pid) {
        Ok(_) if !csa_process::probe(pid).is_running() => return Ok(None),
        Ok(stat) => stat,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("pid {pid}: cannot read its stat ({e})")),
    };
    match stat
        .start
        .and_then(|now| StartTime::same_process(recorded, now))
    {
        Some(true) => {}
        Some(false) => {
            return Err(format!(
                "pid {pid} now belongs to another process (start time differs)"
            ))
        }
        None => {
            return Err(format!(
                "pid {pid}: its start time cannot be compared with the recorded {recorded}"
            ))
        }
    }
    let uid = match stat
        .uid
        .map_or_else(|| csa_process::backend::owner_uid(pid), Ok)
    {
        Ok(uid) => uid,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("pid {pid}: {e}")),
    };
    if uid != nix::unistd::geteuid().as_raw() {
        return Err(format!("pid {pid} belongs to another user"));
    }
    // Pid and start ticks alone prove nothing: a pid reused within one clock tick has the same
    // ticks. Upstream gives its tools the marker too.
    let marker = csa_process::observe::marker_entry(id);
    match csa_process::environ_contains(pid, marker.as_bytes()) {
        Some(true) => {}
        Some(false) => {
            return Err(format!(
                "pid {pid} does not carry the session's CSA_SESSION_ID (its pid and start time may have been reused)"
            ))
        }
        None if !csa_process::probe(pid).is_running() => return Ok(None),
        None => return Err(format!("pid {pid}: its environment cannot be read")),
    }
    Ok(Some(Target {
        pid,
        group: stat.pgid == pid,
    }))
}

/// Sends `signal` to every verified owner (its group when it leads one).
fn signal_owners(targets: &[Target], signal: Signal) {
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

/// Whether every owner (and every member of its group) has exited. Zombies count as exited: a
/// group whose only members are unreaped zombies is gone.
fn owners_gone(targets: &[Target]) -> bool {
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

/// The last signal a kill of the session in `dir` sent, when a kill was requested: SIGTERM, or
/// SIGKILL once escalated (a marker that cannot be read says SIGTERM).
pub fn requested(dir: &StoreDir) -> Option<Signal> {
    match dir.read_capped(KILL_MARKER, 64) {
        Ok((bytes, _)) if bytes.starts_with(b"KILL") => Some(Signal::SIGKILL),
        Ok(_) => Some(Signal::SIGTERM),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(_) => Some(Signal::SIGTERM),
    }
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
    match lock.dir().remove_file(KILL_MARKER) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
