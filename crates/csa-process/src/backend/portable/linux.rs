//! One process on Linux, for the portable backend: `/proc/<pid>/stat` (the readers of
//! [`crate::platform`]) instead of sysinfo, which lists all of `/proc` to refresh one process;
//! the start time converted to sysinfo's unit, whole seconds since boot (`start ticks /
//! CLK_TCK`, exactly what sysinfo computes), so that it compares with the process table's.
//! Fallback: none needed on Linux; a process that cannot be read is an error the probes treat
//! as unknown. Compiled everywhere (its readers answer `Unsupported` off Linux).

use std::io;

use crate::backend::{procfs, ProcessStat};
use crate::StartTime;

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn stat(pid: u32) -> io::Result<ProcessStat> {
    let mut stat = procfs::stat(pid)?;
    stat.start = match (stat.start, crate::clock_ticks_per_second()) {
        (Some(StartTime::Ticks(ticks)), Some(hz)) => Some(StartTime::BootSeconds(ticks / hz)),
        _ => None,
    };
    stat.uid = crate::platform::owner_uid(pid).ok();
    Ok(stat)
}
