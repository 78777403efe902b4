//! Start time on macOS: `proc_pidinfo(PROC_PIDTBSDINFO)` (through the libproc crate), whose
//! `pbi_start_tvsec` and `pbi_start_tvusec` are the kernel's record of when the process
//! started, precise to the microsecond and fixed for its life. Seconds alone would let a pid
//! reused within the same second compare equal. The same call describes one process for the
//! probes ([`stat`]), so that a probe never lists the process table. Fallback: when the call
//! fails, sysinfo for the process's state, and an unknown start time, which counts as alive.

use std::io;

use libproc::libproc::bsd_info::BSDInfo;
use libproc::libproc::proc_pid::pidinfo;

use crate::backend::{ProcessStat, Status};
use crate::StartTime;

/// `SZOMB` in `pbi_status` (`<sys/proc.h>`): a zombie.
const SZOMB: u32 = 5;

/// One process through `proc_pidinfo(PROC_PIDTBSDINFO)`: state, parent, process group, owner
/// (effective uid) and start, with `getsid(2)` for the session id. `None` when the call fails
/// (a zombie has no BSD info to give, a process macOS will not describe): the caller falls back
/// to sysinfo, which tells a zombie and a process that is gone.
pub(super) fn stat(pid: u32) -> Option<io::Result<ProcessStat>> {
    let raw = i32::try_from(pid).ok()?;
    let info = pidinfo::<BSDInfo>(raw, 0).ok()?;
    let sid = match nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(raw))) {
        Ok(sid) => sid.as_raw().unsigned_abs(),
        Err(nix::errno::Errno::ESRCH) => {
            return Some(Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("process {pid}: not found"),
            )))
        }
        Err(errno) => return Some(Err(errno.into())),
    };
    Some(Ok(ProcessStat {
        status: if info.pbi_status == SZOMB {
            Status::Zombie
        } else {
            Status::Live
        },
        ppid: info.pbi_ppid,
        pgid: info.pbi_pgid,
        sid,
        start: micros(&info),
        uid: Some(info.pbi_uid),
    }))
}

fn micros(info: &BSDInfo) -> Option<StartTime> {
    let micros = info
        .pbi_start_tvsec
        .checked_mul(1_000_000)?
        .checked_add(info.pbi_start_tvusec)?;
    Some(StartTime::Micros(micros))
}

/// The start of `pid` in microseconds since the Unix epoch.
pub(super) fn start_time(pid: u32) -> Option<StartTime> {
    let pid = i32::try_from(pid).ok()?;
    micros(&pidinfo::<BSDInfo>(pid, 0).ok()?)
}
