//! The liveness verdict: a pure function of what the probes saw.
//!
//! csa-session reads a session's files (daemon.pid, lock bodies, its membership record, the
//! legacy `.complete` marker, the progress files) and probes what they name (this crate's
//! [`observe`](crate::observe()), [`LockTable`](crate::LockTable), [`Membership`](crate::Membership));
//! [`decide`] turns that [`Evidence`] into a [`Verdict`] with its reasons. Probing and deciding
//! are separate so that every rule is a table-driven unit test.
//!
//! The rules, strongest first. **Unknown counts as alive**: declaring a live session dead
//! destroys its result, while a dead session seen as alive only waits for the next reconcile.
//!
//! 1. **Unreadable evidence** (a file that exists but cannot be read): alive.
//! 2. **A recorded process that is this session's** ([`Claim`]): running (a zombie
//!    thread-group leader with a running thread counts as running) *and* identified: its start
//!    time equals the recorded one, compared like with like ([`StartTime::same_process`]:
//!    ticks, microseconds or seconds since boot), and, where csa recorded the process as an
//!    agent of a session it supervises, its environment carries `CSA_SESSION_ID=<ULID>`,
//!    because a pid reused within one clock tick (or second) has the same start time; or, with
//!    no start time recorded (upstream's tools) or one this backend cannot compare, its command
//!    line names the session, its environment carries the marker, or its lock file was
//!    modified within [`LOCK_FRESH`]. A start-time mismatch means the pid was reused. Alive.
//! 3. **A held lock file**: alive, whatever its body says.
//! 4. **A live member** of the session's recorded membership (its cgroup, or its process
//!    session and marker: [`Membership`](crate::Membership)): alive. Membership that could not
//!    be enumerated: alive.
//! 5. **A foreign owner** (a lock body written on another machine or in another PID
//!    namespace): [`Verdict::Foreign`], never dead.
//! 6. For a session that has ended, nothing else counts: dead.
//! 7. **A legacy `.complete` marker** with an exit code: dead, finalized from the marker.
//! 8. **Progress**: a progress file written within [`PROGRESS_FRESH`], or a recent liveness
//!    snapshot recording changed sizes: alive. When the processes are known to be gone (a
//!    membership record was consulted and has no live member), the reason says so and when the
//!    grace window ends.
//! 9. Otherwise dead.

use std::time::Duration;

use crate::{LockState, StartTime};

/// A lock file modified this recently vouches for a running pid without recorded start ticks
/// (upstream's rule for tools that do not record them): 60 seconds.
pub const LOCK_FRESH: Duration = Duration::from_secs(60);
/// A progress file modified this recently means the agent is still working: 30 seconds.
pub const PROGRESS_FRESH: Duration = Duration::from_secs(30);

/// The decision about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some signal says the owner is alive; the string says which.
    Alive(String),
    /// The owner runs on another machine or in another PID namespace: cannot be decided here.
    Foreign(String),
    /// Every signal says dead.
    Dead {
        /// Why: what was checked and found dead.
        reason: String,
        /// The exit code of a valid legacy `.complete` marker, when that decided it.
        complete_marker: Option<i64>,
    },
}

impl Verdict {
    /// Whether the session counts as alive (foreign owners count as alive: fail closed).
    pub fn is_alive(&self) -> bool {
        !matches!(self, Verdict::Dead { .. })
    }
}

/// What probing a recorded pid found ([`crate::observe()`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The pid cannot name a process (0, or above `i32::MAX`).
    Invalid,
    /// No such process, or it has exited (a zombie when `zombie`).
    Exited {
        /// Whether it is an unreaped zombie.
        zombie: bool,
    },
    /// It runs.
    Running {
        /// Its start time in the backend's unit, `None` when unreadable.
        start_time: Option<StartTime>,
        /// Whether its environment has `CSA_SESSION_ID=<this session>`; `None` when the
        /// environment cannot be read (another user's process) or was not read.
        marker: Option<bool>,
        /// Whether its command line contains the session's id or directory; `None` when
        /// unreadable or not read.
        names_session: Option<bool>,
    },
}

/// A process a session's files name as its owner: `daemon.pid` (the supervisor) or a lock body
/// (the supervisor, then the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Where the pid was read, for messages: `daemon.pid`, `locks/codex.lock`.
    pub source: String,
    /// The pid.
    pub pid: u32,
    /// The start time recorded with it (`pid_start_time_ticks`, `pid_start_time_us`, …).
    pub recorded: Option<StartTime>,
    /// Whether identity also needs the session's marker in the process's environment (csa
    /// recorded this process as the agent of a session it supervises).
    pub marker_required: bool,
    /// For a lock body: how long ago its lock file was modified.
    pub lock_age: Option<Duration>,
    /// What probing the pid found.
    pub observed: Observed,
}

/// A lock file of the session and whether it is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEvidence {
    /// The lock file, for messages: `locks/codex.lock`.
    pub source: String,
    /// Whether it is held; `Err(why)` when that could not be found out.
    pub held: Result<LockState, String>,
}

/// What the session's recorded membership says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvidence {
    /// The session has no membership record (written by upstream, or by an older csa), or it
    /// was recorded in another boot or on another host: not a signal.
    NotRecorded,
    /// Not consulted (an owner was already found alive).
    NotConsulted,
    /// Enumerated: the live members (pids) other than the supervisor.
    Enumerated {
        /// The mechanism, for messages: `cgroup /sys/fs/cgroup/…/csa-…`, `process session 42`.
        mechanism: String,
        /// The live members.
        live: Vec<u32>,
    },
    /// Could not be enumerated (why).
    Unknown(String),
}

/// The progress files of an Active session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The freshest non-empty progress file (`output.log`, `stderr.log`,
    /// `output/acp-events.jsonl`) and its age.
    pub newest: Option<(String, Duration)>,
    /// The age of a liveness snapshot that records sizes differing from the current ones.
    pub snapshot_changed: Option<Duration>,
}

/// Everything the probes saw about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Whether its phase is Active (then `.complete` and progress count).
    pub active: bool,
    /// Files that exist but could not be read (each a sentence naming it).
    pub unreadable: Vec<String>,
    /// Recorded owners, in the order read (daemon.pid first).
    pub claims: Vec<Claim>,
    /// Lock files.
    pub locks: Vec<LockEvidence>,
    /// Lock bodies naming an owner on another machine or in another PID namespace (each a
    /// sentence).
    pub foreign: Vec<String>,
    /// Lock bodies naming an owner of another boot of this machine (each a sentence): no
    /// signal, only part of the reason.
    pub other_boot: Vec<String>,
    /// The membership record's members.
    pub membership: MembershipEvidence,
    /// The exit code of a valid legacy `.complete` marker.
    pub complete_marker: Option<i64>,
    /// Progress files.
    pub progress: Progress,
}

impl Evidence {
    /// Evidence with nothing recorded, for a session whose phase is Active when `active`.
    pub fn new(active: bool) -> Self {
        Evidence {
            active,
            unreadable: Vec::new(),
            claims: Vec::new(),
            locks: Vec::new(),
            foreign: Vec::new(),
            other_boot: Vec::new(),
            membership: MembershipEvidence::NotRecorded,
            complete_marker: None,
            progress: Progress::default(),
        }
    }

    /// Whether some recorded owner or held lock already says alive, so that enumerating the
    /// membership (a scan of the process table without a cgroup) can be skipped.
    pub fn owner_alive(&self) -> bool {
        !self.unreadable.is_empty()
            || self
                .claims
                .iter()
                .any(|c| matches!(judge(c), Judged::Alive(_)))
            || self
                .locks
                .iter()
                .any(|l| !matches!(l.held, Ok(LockState::Free)))
    }
}

enum Judged {
    Alive(String),
    No(String),
}

/// Whether a claim names a live process of the session (rule 2 of the module docs).
fn judge(claim: &Claim) -> Judged {
    let pid = claim.pid;
    let (start_time, marker, names_session) = match claim.observed {
        Observed::Invalid => return Judged::No(format!("pid {pid} names no process")),
        Observed::Exited { zombie: true } => return Judged::No(format!("pid {pid} is a zombie")),
        Observed::Exited { zombie: false } => {
            return Judged::No(format!("pid {pid} is not running"))
        }
        Observed::Running {
            start_time,
            marker,
            names_session,
        } => (start_time, marker, names_session),
    };
    if let Some(recorded) = claim.recorded {
        let Some(actual) = start_time else {
            return Judged::Alive(format!("pid {pid} running, start time unreadable"));
        };
        let precision = StartTime::precision(recorded, actual);
        match StartTime::same_process(recorded, actual) {
            Some(false) => {
                return Judged::No(format!(
                    "pid {pid} was reused ({actual}, recorded {recorded})"
                ))
            }
            Some(true) if claim.marker_required && marker == Some(false) => {
                return Judged::No(format!(
                "pid {pid} was reused within {precision} (start times match, but it does not carry the session's CSA_SESSION_ID)"
            ))
            }
            Some(true) => {
                return Judged::Alive(match (recorded, actual) {
                    (StartTime::Ticks(_), StartTime::Ticks(t)) => {
                        format!("pid {pid} running, start ticks {t} match")
                    }
                    _ => format!("pid {pid} running, {actual} matches the record to {precision}"),
                })
            }
            // Units that cannot be compared: the context rules below, as without a record.
            None => {}
        }
    }
    match names_session {
        Some(true) => {
            return Judged::Alive(format!("pid {pid} running, command line names the session"))
        }
        None => return Judged::Alive(format!("pid {pid} running, command line unreadable")),
        Some(false) => {}
    }
    match marker {
        Some(true) => return Judged::Alive(format!("pid {pid} running with CSA_SESSION_ID")),
        None => return Judged::Alive(format!("pid {pid} running, environment unreadable")),
        Some(false) => {}
    }
    if let Some(age) = claim.lock_age {
        if age <= LOCK_FRESH {
            return Judged::Alive(format!(
                "pid {pid} running, lock modified {}s ago",
                age.as_secs()
            ));
        }
    }
    Judged::No(format!(
        "pid {pid} is running but is not this session's (no start ticks recorded, no session id in its command line or environment)"
    ))
}

/// The verdict the evidence supports (the rules of the module docs, in order).
pub fn decide(e: &Evidence) -> Verdict {
    if let Some(why) = e.unreadable.first() {
        return Verdict::Alive(why.clone());
    }
    let mut dead = Vec::new();
    for claim in &e.claims {
        match judge(claim) {
            Judged::Alive(why) => return Verdict::Alive(format!("{}: {why}", claim.source)),
            Judged::No(why) => dead.push(format!("{}: {why}", claim.source)),
        }
    }
    for lock in &e.locks {
        match &lock.held {
            Ok(LockState::Held { holder: Some(pid) }) => {
                return Verdict::Alive(format!("{}: its flock is held (by pid {pid})", lock.source))
            }
            Ok(LockState::Held { holder: None }) => {
                return Verdict::Alive(format!("{}: its flock is held", lock.source))
            }
            Err(why) => {
                return Verdict::Alive(format!(
                    "{}: cannot tell whether it is held ({why})",
                    lock.source
                ))
            }
            Ok(LockState::Free) => {}
        }
    }
    let mut processes_gone = false;
    match &e.membership {
        MembershipEvidence::Enumerated { mechanism, live } if !live.is_empty() => {
            let more = match live.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            return Verdict::Alive(format!(
                "pid {}{more} of the session still runs ({mechanism})",
                live[0]
            ));
        }
        MembershipEvidence::Enumerated { mechanism, .. } => {
            processes_gone = true;
            dead.push(format!("no process of the session runs ({mechanism})"));
        }
        MembershipEvidence::Unknown(why) => {
            return Verdict::Alive(format!("cannot enumerate the session's processes ({why})"))
        }
        MembershipEvidence::NotRecorded | MembershipEvidence::NotConsulted => {}
    }
    if let Some(why) = e.foreign.first() {
        return Verdict::Foreign(why.clone());
    }
    dead.extend(e.other_boot.iter().cloned());
    if !e.active {
        return dead_verdict(dead, None);
    }
    if let Some(code) = e.complete_marker {
        dead.push(format!(".complete records exit code {code}"));
        return dead_verdict(dead, Some(code));
    }
    if let Some((name, age)) = &e.progress.newest {
        if *age <= PROGRESS_FRESH {
            if processes_gone {
                let left = PROGRESS_FRESH.saturating_sub(*age);
                return Verdict::Alive(format!(
                    "processes gone; {name} written {}s ago, grace ends in {}s",
                    age.as_secs(),
                    left.as_secs().max(1)
                ));
            }
            return Verdict::Alive(format!("{name} written {}s ago", age.as_secs()));
        }
    }
    if let Some(age) = e.progress.snapshot_changed {
        if age <= PROGRESS_FRESH {
            return Verdict::Alive(format!(
                ".liveness.snapshot ({}s old) records sizes that differ from the current ones",
                age.as_secs()
            ));
        }
    }
    if dead.is_empty() {
        dead.push("no daemon.pid or lock names a process".to_owned());
    }
    dead.push(format!("no progress for {}s", PROGRESS_FRESH.as_secs()));
    dead_verdict(dead, None)
}

/// A live process the evidence names, and where it was found (`daemon.pid`, `locks/x.lock`,
/// `a member`): the process to name when saying who holds something. `None` when no live
/// process is known by pid (a held lock whose holder is unknown, or nothing alive).
pub fn witness(e: &Evidence) -> Option<(u32, String)> {
    e.claims
        .iter()
        .find(|c| matches!(judge(c), Judged::Alive(_)))
        .map(|c| (c.pid, c.source.clone()))
        .or_else(|| {
            e.locks.iter().find_map(|l| match l.held {
                Ok(LockState::Held { holder: Some(pid) }) => {
                    Some((pid, format!("holder of {}", l.source)))
                }
                _ => None,
            })
        })
        .or_else(|| match &e.membership {
            MembershipEvidence::Enumerated { mechanism, live } => live
                .first()
                .map(|&pid| (pid, format!("member of the {mechanism}"))),
            _ => None,
        })
}

fn dead_verdict(reasons: Vec<String>, complete_marker: Option<i64>) -> Verdict {
    let reason = if reasons.is_empty() {
        "no daemon.pid or lock names a live process".to_owned()
    } else {
        reasons.join("; ")
    };
    Verdict::Dead {
        reason,
        complete_marker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(ticks: u64, marker: Option<bool>) -> Observed {
        Observed::Running {
            start_time: Some(StartTime::Ticks(ticks)),
            marker,
            names_session: Some(false),
        }
    }

    fn claim(recorded: Option<u64>, observed: Observed) -> Claim {
        Claim {
            source: "locks/x.lock".into(),
            pid: 42,
            recorded: recorded.map(StartTime::Ticks),
            marker_required: false,
            lock_age: None,
            observed,
        }
    }

    fn alive(v: &Verdict) -> bool {
        matches!(v, Verdict::Alive(_))
    }

    /// One row per rule: the evidence, and whether it must read alive.
    #[test]
    fn each_rule_decides_as_documented() {
        let secs = Duration::from_secs;
        let mut rows: Vec<(&str, Evidence, bool)> = Vec::new();
        let base = || Evidence::new(true);

        rows.push(("nothing recorded", base(), false));
        let mut e = base();
        e.unreadable.push("daemon.pid unreadable (EIO)".into());
        rows.push(("unreadable evidence", e, true));
        let mut e = base();
        e.claims.push(claim(Some(7), running(7, None)));
        rows.push(("ticks match", e, true));
        let mut e = base();
        e.claims.push(claim(Some(7), running(8, None)));
        rows.push(("ticks differ: reused", e, false));
        let mut e = base();
        let mut c = claim(Some(7), running(7, Some(false)));
        c.marker_required = true;
        e.claims.push(c);
        rows.push(("same tick, no marker: reused within a tick", e, false));
        let mut e = base();
        let mut c = claim(Some(7), running(7, Some(true)));
        c.marker_required = true;
        e.claims.push(c);
        rows.push(("same tick with the marker", e, true));
        let mut e = base();
        let mut c = claim(Some(7), running(7, None));
        c.marker_required = true;
        e.claims.push(c);
        rows.push(("marker unreadable: fail closed", e, true));
        let mut e = base();
        e.claims
            .push(claim(Some(7), Observed::Exited { zombie: true }));
        rows.push(("zombie", e, false));
        let mut e = base();
        e.claims.push(claim(None, running(1, Some(false))));
        rows.push(("no ticks, nothing names it", e, false));
        let mut e = base();
        let mut c = claim(Some(7), running(7, Some(false)));
        c.observed = Observed::Running {
            start_time: Some(StartTime::Micros(7)),
            marker: Some(false),
            names_session: Some(false),
        };
        e.claims.push(c);
        rows.push((
            "ticks against microseconds: context rules, nothing names it",
            e,
            false,
        ));
        let mut e = base();
        let mut c = claim(Some(7), running(7, Some(true)));
        c.observed = Observed::Running {
            start_time: Some(StartTime::Micros(7)),
            marker: Some(true),
            names_session: Some(false),
        };
        e.claims.push(c);
        rows.push(("ticks against microseconds: context rules, marker", e, true));
        let mut e = base();
        let mut c = claim(None, running(1, Some(false)));
        c.recorded = Some(StartTime::Micros(5));
        c.observed = Observed::Running {
            start_time: Some(StartTime::Micros(6)),
            marker: None,
            names_session: None,
        };
        e.claims.push(c);
        rows.push(("microseconds differ: reused", e, false));
        let mut e = base();
        let mut c = claim(None, running(1, Some(false)));
        c.lock_age = Some(secs(5));
        e.claims.push(c);
        rows.push(("no ticks, fresh lock", e, true));
        let mut e = base();
        e.claims.push(claim(None, running(1, Some(true))));
        rows.push(("no ticks, marker", e, true));
        let mut e = base();
        e.locks.push(LockEvidence {
            source: "locks/x.lock".into(),
            held: Ok(LockState::Held { holder: Some(9) }),
        });
        rows.push(("held lock", e, true));
        let mut e = base();
        e.locks.push(LockEvidence {
            source: "locks/x.lock".into(),
            held: Err("ENOLCK".into()),
        });
        rows.push(("lock state unknown", e, true));
        let mut e = base();
        e.membership = MembershipEvidence::Enumerated {
            mechanism: "cgroup".into(),
            live: vec![77],
        };
        rows.push(("a live member", e, true));
        let mut e = base();
        e.membership = MembershipEvidence::Unknown("EACCES".into());
        rows.push(("membership unknown", e, true));
        let mut e = base();
        e.foreign.push("owner is on machine m".into());
        rows.push(("foreign", e, true));
        let mut e = base();
        e.complete_marker = Some(3);
        e.progress.newest = Some(("output.log".into(), secs(0)));
        rows.push(("marker outranks progress", e, false));
        let mut e = base();
        e.progress.newest = Some(("output.log".into(), secs(3)));
        rows.push(("fresh progress", e, true));
        let mut e = base();
        e.progress.newest = Some(("output.log".into(), secs(31)));
        rows.push(("stale progress", e, false));
        let mut e = Evidence::new(false);
        e.progress.newest = Some(("output.log".into(), secs(0)));
        rows.push(("ended: progress does not count", e, false));

        for (name, evidence, want_alive) in rows {
            let verdict = decide(&evidence);
            assert_eq!(verdict.is_alive(), want_alive, "{name}: {verdict:?}");
        }
    }

    #[test]
    fn grace_after_every_process_is_gone_is_said_plainly() {
        let mut e = Evidence::new(true);
        e.membership = MembershipEvidence::Enumerated {
            mechanism: "cgroup".into(),
            live: vec![],
        };
        e.progress.newest = Some(("output.log".into(), Duration::from_secs(4)));
        let verdict = decide(&e);
        assert!(alive(&verdict));
        assert_eq!(
            verdict,
            Verdict::Alive("processes gone; output.log written 4s ago, grace ends in 26s".into())
        );
        e.progress.newest = Some(("output.log".into(), Duration::from_secs(40)));
        match decide(&e) {
            Verdict::Dead { reason, .. } => {
                assert!(
                    reason.contains("no process of the session runs"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn owner_alive_skips_the_membership_scan_only_when_it_may() {
        let mut e = Evidence::new(true);
        assert!(!e.owner_alive());
        e.claims.push(claim(Some(7), running(8, None)));
        assert!(!e.owner_alive(), "a reused pid is no owner");
        e.claims.push(claim(Some(7), running(7, None)));
        assert!(e.owner_alive());
    }
}
