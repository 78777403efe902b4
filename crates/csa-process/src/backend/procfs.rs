//! The procfs backend: [`super::ProcessStat`] from the `/proc` readers of [`crate::platform`]
//! (Linux; elsewhere they answer `Unsupported`, which callers treat as unknown, hence alive).

use std::io;

use super::{ProcessStat, Status};
use crate::platform::{self, ProcStat};
use crate::StartTime;

/// `/proc/<pid>/stat`, plus `/proc/<pid>/task/*/stat` for a zombie leader with threads.
pub(super) fn stat(pid: u32) -> io::Result<ProcessStat> {
    Ok(convert(pid, &platform::stat(pid)?))
}

/// Every numeric entry of `/proc`, each with its stat.
pub(super) fn table() -> io::Result<Vec<(u32, ProcessStat)>> {
    let mut table = Vec::new();
    for pid in platform::pids()? {
        // A process that exits between the listing and the read is gone.
        if let Ok(stat) = platform::stat(pid) {
            table.push((pid, convert(pid, &stat)));
        }
    }
    Ok(table)
}

fn convert(pid: u32, stat: &ProcStat) -> ProcessStat {
    ProcessStat {
        status: status(pid, stat),
        ppid: stat.ppid,
        pgid: stat.pgrp,
        sid: stat.session,
        start: Some(StartTime::Ticks(stat.start_ticks)),
        uid: None,
    }
}

/// Whether the process whose stat is `stat` has exited: a zombie or dead, unless it is a
/// zombie thread-group leader with a thread that is neither
/// ([`ProcStat::may_have_live_threads`]). Fails closed: threads that cannot be listed count as
/// running.
fn status(pid: u32, stat: &ProcStat) -> Status {
    if !stat.has_exited() {
        return Status::Live;
    }
    let exited = if stat.state == 'Z' {
        Status::Zombie
    } else {
        Status::Dead
    };
    if !stat.may_have_live_threads() {
        return exited;
    }
    match platform::task_states(pid) {
        Ok(states) if states.iter().any(|s| !matches!(s, 'Z' | 'X' | 'x')) => Status::Live,
        Ok(_) => exited,
        Err(e) if e.kind() == io::ErrorKind::NotFound => exited,
        Err(_) => Status::Live,
    }
}
