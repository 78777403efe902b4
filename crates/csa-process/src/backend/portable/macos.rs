//! Start time on macOS: `proc_pidinfo(PROC_PIDTBSDINFO)` (through the libproc crate), whose
//! `pbi_start_tvsec` and `pbi_start_tvusec` are the kernel's record of when the process
//! started, precise to the microsecond and fixed for its life. Seconds alone would let a pid
//! reused within the same second compare equal. Fallback: none; when the call fails (the
//! process exited, or macOS refuses), the start time is unknown, which counts as alive.

use libproc::libproc::bsd_info::BSDInfo;
use libproc::libproc::proc_pid::pidinfo;

use crate::StartTime;

/// The start of `pid` in microseconds since the Unix epoch.
pub(super) fn start_time(pid: u32) -> Option<StartTime> {
    let pid = i32::try_from(pid).ok()?;
    let info = pidinfo::<BSDInfo>(pid, 0).ok()?;
    let micros = info
        .pbi_start_tvsec
        .checked_mul(1_000_000)?
        .checked_add(info.pbi_start_tvusec)?;
    Some(StartTime::Micros(micros))
}
