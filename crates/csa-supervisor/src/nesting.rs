//! Nested sub-agents: a `csa run` started from inside a session, in a directory that session
//! (or one of its ancestors) holds, runs at once as a child session under that claim instead
//! of waiting on its own ancestor forever.
//!
//! A run is nested when all of these hold (docs/lifecycle.md, "Nesting"):
//! - it has a parent session `P` (`--parent`, or the `CSA_SESSION_ID` it was started with);
//! - the directory's claim is held by `P` or by one of `P`'s ancestors (`[genealogy]
//!   parent_session_id`: csa-session `inventory::lineage`);
//! - this process descends from `P`'s turn: it is inside `P`'s cgroup, in `P`'s process session,
//!   or one of its ancestors is `P`'s recorded agent or supervisor (pid and start ticks). An
//!   inherited `CSA_SESSION_ID` alone (a shell that exported it, a stray variable) is not
//!   enough.

use csa_session::membership::MembershipRecord;
use csa_session::StoreDir;

/// Whether this process descends from the turn recorded in `session_dir`'s membership record
/// (see the module docs). Fails towards "no": a run that cannot prove it is nested waits or
/// reports busy like any other.
pub fn descends_from(session_dir: &StoreDir) -> bool {
    let Ok(Some(record)) = MembershipRecord::load(session_dir) else {
        return false;
    };
    let me = std::process::id();
    if let Some(path) = &record.cgroup {
        let inside = csa_process::platform::cgroup(me)
            .ok()
            .flatten()
            .zip(
                csa_process::mountinfo::MountInfo::read()
                    .ok()
                    .and_then(|m| m.cgroup2_mount().cloned()),
            )
            .is_some_and(|(rel, mount)| mount.join(rel.trim_start_matches('/')).starts_with(path));
        if inside {
            return true;
        }
    }
    if let (Some(sid), Ok(stat)) = (record.sid, csa_process::backend::stat(me)) {
        if sid > 0 && stat.sid == sid {
            return true;
        }
    }
    let recorded: Vec<(u32, Option<csa_process::StartTime>)> =
        [Some(record.supervisor), record.agent]
            .into_iter()
            .flatten()
            .map(|p| (p.pid, p.start()))
            .collect();
    csa_process::ancestors(me).into_iter().any(|(pid, start)| {
        recorded.iter().any(|&(rp, rt)| {
            rp == pid
                && rt
                    .is_some_and(|rt| csa_process::StartTime::same_process(rt, start) == Some(true))
        })
    })
}
