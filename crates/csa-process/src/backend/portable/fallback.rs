//! Start time where the platform offers nothing finer than sysinfo (Linux, and any Unix other
//! than macOS): whole seconds since boot, sysinfo's start time less the boot time it was
//! computed from. On Linux that is exactly `start ticks / CLK_TCK` and does not move when the
//! wall clock is set. A pid reused within the same second compares equal: csa then also
//! requires the session's marker (`CSA_SESSION_ID`) before it counts a process as an agent's.
//! On Unix systems other than Linux and macOS this is untested (docs/platforms.md).

use crate::StartTime;

/// `process`'s start in whole seconds since boot; `None` when sysinfo does not know it.
#[cfg_attr(target_os = "macos", allow(dead_code))]
pub(super) fn start_time(process: &sysinfo::Process, boot_time: u64) -> Option<StartTime> {
    let start = process.start_time();
    if start == 0 || boot_time == 0 {
        return None;
    }
    start.checked_sub(boot_time).map(StartTime::BootSeconds)
}
