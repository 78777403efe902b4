//! Containing a turn's processes: choosing how the session's processes are identified, recording
//! it before the agent exists, and, when the agent's main process exits, dealing with what it
//! left running.
//!
//! **Mechanism**, strongest available first (csa-process `membership`): a cgroup v2 per session
//! (created under the supervisor's own cgroup, which the supervisor then joins, so the agent is
//! born inside it), else the agent's process session plus the `CSA_SESSION_ID` marker, with the
//! supervisor as child subreaper. `CSA_MEMBERSHIP=cgroup|process-session` forces one (a forced
//! cgroup that cannot be created is an error); the default, `auto`, tries the cgroup first.
//!
//! **End of the turn** (docs/lifecycle.md): the turn's result is the main process's exit
//! status. Processes of the session still running after it exits (a background child, a
//! daemon it forked) get SIGTERM, then SIGKILL after the grace period, before the result is
//! published and the directory claim released; the result says how many were stopped. With
//! `--leave-running` they are let go instead: moved out of the session's cgroup, or recorded as
//! released (they and their descendants stop being members), and the result says how many.

use std::time::{Duration, Instant};

use csa_process::cgroup::SessionCgroup;
use csa_process::signal::{signal_member, Sent};
use csa_process::{HostIdentity, Membership};
use csa_session::membership::{ClaimRole, Mechanism, MembershipRecord, ProcessId, ReleasedProcess};
use csa_session::StoreDir;
use nix::sys::signal::Signal;

use crate::supervise::reap_orphans;

/// How the membership mechanism is chosen (`CSA_MEMBERSHIP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// A cgroup when one can be created, else a process session.
    Auto,
    /// A cgroup, or an error.
    Cgroup,
    /// A process session.
    ProcessSession,
}

impl Choice {
    /// From `CSA_MEMBERSHIP` (`auto`, `cgroup`, `process-session`; unset or other: auto).
    pub fn from_env() -> Self {
        match std::env::var("CSA_MEMBERSHIP").as_deref() {
            Ok("cgroup") => Choice::Cgroup,
            Ok("process-session") => Choice::ProcessSession,
            _ => Choice::Auto,
        }
    }
}

/// A session cgroup created and joined in the background while the session is built: moving a
/// process into a cgroup waits for an RCU grace period (about 10 ms on this kind of machine,
/// measured: the first migration of a process), which would otherwise add to every launch.
#[derive(Debug)]
pub struct EarlyCgroup {
    choice: Choice,
    joining:
        Option<std::thread::JoinHandle<Result<SessionCgroup, csa_process::cgroup::CgroupError>>>,
}

impl EarlyCgroup {
    /// Starts creating and joining session `id`'s cgroup (unless `choice` is a process
    /// session). Call it once the directory is claimed; [`Containment::begin`] waits for it.
    pub fn start(id: &str, choice: Choice) -> Self {
        let joining = (choice != Choice::ProcessSession).then(|| {
            let id = id.to_owned();
            std::thread::spawn(move || SessionCgroup::create_and_join(&id))
        });
        EarlyCgroup { choice, joining }
    }

    /// Waits for the cgroup, if one was asked for.
    fn finish(self) -> Result<Option<SessionCgroup>, ContainError> {
        let Some(joining) = self.joining else {
            return Ok(None);
        };
        let joined = joining.join().unwrap_or_else(|_| {
            Err(csa_process::cgroup::CgroupError::Refused {
                path: std::path::PathBuf::from("(session cgroup)"),
                source: std::io::Error::other("the thread creating it panicked"),
            })
        });
        match joined {
            Ok(cgroup) => Ok(Some(cgroup)),
            Err(err) if self.choice == Choice::Auto => {
                tracing::info!("no session cgroup ({err}): using a process session");
                Ok(None)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Undoes it (the turn is not started after all): leaves and removes the cgroup.
    pub fn abandon(self) {
        if let Ok(Some(cgroup)) = self.finish() {
            let _ = cgroup.move_out(0);
            let _ = cgroup.remove();
        }
    }
}

/// Why a turn could not be contained.
#[derive(Debug, thiserror::Error)]
pub enum ContainError {
    /// `CSA_MEMBERSHIP=cgroup`, and no cgroup could be created.
    #[error("CSA_MEMBERSHIP=cgroup, but no session cgroup can be created: {0}")]
    NoCgroup(#[from] csa_process::cgroup::CgroupError),
    /// The record could not be written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A turn's containment: its membership record (kept up to date in the session directory) and
/// its cgroup, if any.
#[derive(Debug)]
pub struct Containment {
    dir: StoreDir,
    id: String,
    record: MembershipRecord,
    cgroup: Option<SessionCgroup>,
}

/// What the end of a turn did with the processes the agent left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Stopped (SIGTERM, then SIGKILL after the grace period).
    pub stopped: usize,
    /// Of those, how many needed SIGKILL.
    pub killed: usize,
    /// Let go (`--leave-running`).
    pub released: usize,
}

/// What to do with leftovers.
#[derive(Debug, Clone, Copy)]
pub enum EndPolicy {
    /// SIGTERM, then SIGKILL after this grace period.
    Stop(Duration),
    /// Let them go.
    Release,
}

impl Containment {
    /// Records the mechanism for turn `turn` of session `id` in `dir` (the cgroup `early`
    /// created and joined, or a process session) with the claim the turn runs under and
    /// whether it is interactive, before the agent exists.
    ///
    /// # Errors
    /// [`ContainError`]: a forced cgroup that cannot be created, or the record's write.
    pub fn begin(
        dir: &StoreDir,
        id: &str,
        turn: u32,
        (claim, nested_in): (ClaimRole, Option<String>),
        interactive: bool,
        host: &HostIdentity,
        early: EarlyCgroup,
    ) -> Result<Self, ContainError> {
        let own_dir = dir.try_clone()?;
        let me = std::process::id();
        let mut record = MembershipRecord {
            turn,
            boot_id: host.boot_id.clone(),
            boot_time: host.boot_time,
            claim,
            nested_in,
            mechanism: Mechanism::ProcessSession,
            cgroup: None,
            sid: None,
            supervisor: ProcessId::new(me, csa_process::start_time(me)),
            interactive,
            agent: None,
            released: Vec::new(),
        };
        let cgroup = early.finish()?;
        if let Some(cgroup) = &cgroup {
            record.mechanism = Mechanism::Cgroup;
            record.cgroup = Some(cgroup.path().to_owned());
        }
        // Orphans of a process session re-parent to us; in a cgroup it does no harm either. The
        // portable backend stands for platforms without one (macOS): orphans go to init there,
        // and are found by their session id or marker alone (docs/lifecycle.md).
        if csa_process::backend::current() != csa_process::Backend::Portable {
            crate::supervise::become_subreaper();
        }
        let containment = Containment {
            dir: own_dir,
            id: id.to_owned(),
            record,
            cgroup,
        };
        if let Err(err) = containment.record.store(&containment.dir) {
            containment.finish();
            return Err(err.into());
        }
        Ok(containment)
    }

    /// The record.
    pub fn record(&self) -> &MembershipRecord {
        &self.record
    }

    /// The membership the record names.
    pub fn membership(&self) -> Membership {
        self.record
            .membership()
            .unwrap_or(Membership::ProcessSession {
                sid: None,
                leader_start: None,
            })
    }

    /// Records the running agent (and, for a process session, its sid: the agent's pid).
    ///
    /// # Errors
    /// The record's write, naming the path. The agent is a member either way (born in the
    /// cgroup, or carrying the marker), so callers warn and go on.
    pub fn agent_started(
        &mut self,
        pid: u32,
        start: Option<csa_process::StartTime>,
    ) -> std::io::Result<()> {
        self.record.agent = Some(ProcessId::new(pid, start));
        if self.record.mechanism == Mechanism::ProcessSession {
            self.record.sid = Some(pid);
        }
        self.record.store(&self.dir)
    }

    /// The session's live processes other than this supervisor.
    fn leftovers(&self) -> std::io::Result<Vec<u32>> {
        self.membership()
            .members(&self.id, &[std::process::id()], &self.record.released())
    }

    /// Deals with the processes left when the agent's main process exited (see the module
    /// docs). `on_stopping` is called once, with their number, before any is signalled.
    /// Returns what was done; waits until every stopped process is gone (a process stuck in
    /// the kernel can make that long: it is said once through tracing).
    pub fn end_turn(&mut self, policy: EndPolicy, on_stopping: impl FnOnce(usize)) -> Leftovers {
        reap_orphans(None);
        let left = match self.leftovers() {
            Ok(left) => left,
            Err(err) => {
                tracing::warn!("cannot enumerate the session's leftover processes: {err}");
                return Leftovers::default();
            }
        };
        if left.is_empty() {
            return Leftovers::default();
        }
        match policy {
            EndPolicy::Release => self.release(&left),
            EndPolicy::Stop(grace) => {
                on_stopping(left.len());
                self.stop(&left, grace)
            }
        }
    }

    fn release(&mut self, left: &[u32]) -> Leftovers {
        let mut released = 0;
        for &pid in left {
            let moved = match &self.cgroup {
                Some(cgroup) => cgroup.move_out(pid).is_ok(),
                None => match csa_process::start_time(pid) {
                    Some(start) => {
                        self.record.released.push(ReleasedProcess::new(pid, start));
                        true
                    }
                    None => false,
                },
            };
            if moved {
                released += 1;
            }
        }
        if let Err(err) = self.record.store(&self.dir) {
            tracing::warn!(%err, "could not record the released processes");
        }
        Leftovers {
            released,
            ..Leftovers::default()
        }
    }

    fn stop(&self, left: &[u32], grace: Duration) -> Leftovers {
        let membership = self.membership();
        let id = self.id.clone();
        let send = |pids: &[u32], signal| {
            for &pid in pids {
                match signal_member(pid, signal, |p| membership.contains(&id, p)) {
                    Ok(Sent::Delivered | Sent::Gone) => {}
                    Ok(Sent::Refused) => {
                        tracing::warn!(
                            pid,
                            "leftover process not verified as the session's: not signalled"
                        )
                    }
                    Err(err) => tracing::warn!(pid, %err, "cannot signal a leftover process"),
                }
            }
        };
        send(left, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut still = self.wait_gone(Some(deadline));
        let mut killed = 0;
        if !still.is_empty() {
            killed = still.len();
            send(&still, Signal::SIGKILL);
            still = self.wait_gone(None);
        }
        debug_assert!(still.is_empty());
        Leftovers {
            stopped: left.len(),
            killed,
            released: 0,
        }
    }

    /// Polls (every 10 ms, reaping orphans) until no leftover runs or `deadline` passes;
    /// returns those still running.
    fn wait_gone(&self, deadline: Option<Instant>) -> Vec<u32> {
        let start = Instant::now();
        let mut said = false;
        loop {
            reap_orphans(None);
            let still = self.leftovers().unwrap_or_default();
            if still.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
                return still;
            }
            if deadline.is_none() && !said && start.elapsed() >= Duration::from_secs(5) {
                tracing::warn!(
                    "waiting for {} killed process(es) of the session to exit: {still:?}",
                    still.len()
                );
                said = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Moves this process out of the session's cgroup and removes it (once empty; a cgroup
    /// with a live child session's cgroup in it stays, and goes with the last of them).
    pub fn finish(self) {
        if let Some(cgroup) = self.cgroup {
            if let Err(err) = cgroup.move_out(0) {
                tracing::warn!(%err, "cannot leave the session cgroup");
                return;
            }
            if let Err(err) = cgroup.remove() {
                tracing::warn!(%err, "cannot remove the session cgroup");
            }
        }
    }
}
