//! The portable backend: what csa reads about processes through well-kept crates and the
//! platform's own per-process call, on every Unix, with no cgroup, boot id, PID namespace or
//! lock table.
//!
//! - **Process list, command line, environment**: sysinfo (on Linux it reads `/proc` itself; on
//!   macOS `proc_listallpids`, `proc_pidinfo` and `sysctl(KERN_PROCARGS2)`). One
//!   `sysinfo::System` per csa process, refreshed for the pids asked about and the fields
//!   needed, before each answer: nothing is answered from an older refresh.
//! - **One process** (state, parent, process group, session id, owner, start time): the
//!   platform's per-process call, one small module each, because sysinfo lists every process
//!   to refresh one, and a probe must not cost a scan of the process table: on macOS
//!   `proc_pidinfo` ([`macos`]: start in microseconds since the epoch), on Linux
//!   `/proc/<pid>/stat` ([`linux`]: start in whole seconds since boot, as sysinfo counts it);
//!   elsewhere sysinfo ([`fallback`]). Process group and session id come from `getpgid(2)` and
//!   `getsid(2)` (nix) where the call does not give them.
//! - **Boot**: sysinfo's boot time, seconds since the epoch (no boot id).
//! - **Threads of a zombie leader** (Linux, a main thread that called `pthread_exit(3)`):
//!   sysinfo's task list, read only for a zombie.
//!
//! Fallbacks, each failing closed: a process sysinfo cannot read while `kill(pid, 0)` says it
//! exists is reported by the probes as running with an unknown start time; an environment that
//! reads empty counts as unreadable (sysinfo returns an empty one when it may not read it).

use std::ffi::OsString;
use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::unistd::Pid as NixPid;
use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

use super::{ProcessStat, Status};
use crate::StartTime;

mod fallback;
mod linux;
#[cfg(target_os = "macos")]
mod macos;

/// The start time of `process` (pid `pid`) in the platform's most precise unit, for processes
/// read through sysinfo (the process table). One of the two platform switches of this backend.
fn start_time(pid: u32, process: &sysinfo::Process, boot_time: u64) -> Option<StartTime> {
    #[cfg(target_os = "macos")]
    {
        let _ = (process, boot_time);
        macos::start_time(pid)
    }
    #[cfg(not(target_os = "macos"))]
    {
        let _ = pid;
        fallback::start_time(process, boot_time)
    }
}

/// One process through the platform's per-process call; `None` where there is none (then
/// sysinfo). The other platform switch.
fn stat_one(pid: u32) -> Option<io::Result<ProcessStat>> {
    #[cfg(target_os = "macos")]
    {
        macos::stat(pid)
    }
    #[cfg(target_os = "linux")]
    {
        Some(linux::stat(pid))
    }
    #[cfg(not(any(target_os = "macos", target_os = "linux")))]
    {
        let _ = pid;
        None
    }
}

struct Reader {
    system: Mutex<System>,
    /// sysinfo's boot time when the `System` was made (seconds since the epoch): the origin of
    /// [`StartTime::BootSeconds`], fixed for this process's life.
    boot_time: u64,
}

fn reader() -> &'static Reader {
    static READER: OnceLock<Reader> = OnceLock::new();
    READER.get_or_init(|| {
        // Keep no `/proc/<pid>/stat` open between calls (sysinfo's default on Linux).
        sysinfo::set_open_files_limit(0);
        // sysinfo computes a Linux start time as its boot time plus the process's seconds since
        // boot; the boot time moves if the wall clock is set. Read it on both sides of making
        // the `System` so that the two agree.
        let mut made = None;
        for _ in 0..3 {
            let before = System::boot_time();
            let system = System::new();
            if System::boot_time() == before {
                made = Some((system, before));
                break;
            }
        }
        let (system, boot_time) = made.unwrap_or_else(|| (System::new(), System::boot_time()));
        Reader {
            system: Mutex::new(system),
            boot_time,
        }
    })
}

fn lock(reader: &Reader) -> MutexGuard<'_, System> {
    reader
        .system
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn not_found(pid: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("process {pid}: not found (sysinfo)"),
    )
}

/// Refreshes `pid` with `kind` (and nothing else) and applies `f` to it.
fn with_process<T>(
    pid: u32,
    kind: ProcessRefreshKind,
    f: impl FnOnce(&System, &sysinfo::Process, u64) -> io::Result<T>,
) -> io::Result<T> {
    let reader = reader();
    let mut system = lock(reader);
    let key = Pid::from_u32(pid);
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[key]), true, kind);
    let process = system.process(key).ok_or_else(|| not_found(pid))?;
    f(&system, process, reader.boot_time)
}

fn base_kind() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing()
        .without_tasks()
        .with_user(UpdateKind::Always)
}

pub(super) fn stat(pid: u32) -> io::Result<ProcessStat> {
    if let Some(stat) = stat_one(pid) {
        return stat;
    }
    sysinfo_stat(pid)
}

/// [`stat`] through sysinfo (which lists every process to refresh one): the platforms without
/// a per-process module, and the fallback of macOS's.
pub(super) fn sysinfo_stat(pid: u32) -> io::Result<ProcessStat> {
    let mut stat = with_process(pid, base_kind(), |_, process, boot| {
        convert(pid, process, boot)
    })?;
    if stat.status == Status::Zombie && zombie_has_live_thread(pid) {
        stat.status = Status::Live;
    }
    Ok(stat)
}

pub(super) fn owner_uid(pid: u32) -> io::Result<u32> {
    stat(pid)?.uid.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("process {pid}: owner unreadable (sysinfo)"),
        )
    })
}

pub(super) fn table() -> io::Result<Vec<(u32, ProcessStat)>> {
    let reader = reader();
    let mut system = lock(reader);
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, base_kind());
    if system.processes().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "sysinfo lists no process on this platform",
        ));
    }
    let mut table = Vec::with_capacity(system.processes().len());
    for (key, process) in system.processes() {
        // A process that exits between the listing and the reads is gone.
        if let Ok(stat) = convert(key.as_u32(), process, reader.boot_time) {
            table.push((key.as_u32(), stat));
        }
    }
    drop(system);
    for (pid, stat) in &mut table {
        if stat.status == Status::Zombie && zombie_has_live_thread(*pid) {
            stat.status = Status::Live;
        }
    }
    Ok(table)
}

pub(super) fn cmdline(pid: u32) -> io::Result<Vec<u8>> {
    let kind = ProcessRefreshKind::nothing()
        .without_tasks()
        .with_cmd(UpdateKind::Always);
    with_process(pid, kind, |_, process, _| Ok(nul_terminated(process.cmd())))
}

pub(super) fn environ(pid: u32) -> io::Result<Vec<u8>> {
    let kind = base_kind().with_environ(UpdateKind::Always);
    with_process(pid, kind, |_, process, _| {
        let me = nix::unistd::geteuid();
        let owner = process.effective_user_id().map(|uid| **uid);
        if !me.is_root() && owner != Some(me.as_raw()) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("process {pid}: another user's environment"),
            ));
        }
        if process.environ().is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("process {pid}: environment unreadable or empty"),
            ));
        }
        Ok(nul_terminated(process.environ()))
    })
}

/// sysinfo's boot time, or `None` when it is not a plausible time since the epoch (sysinfo on
/// Linux without `/proc/stat` returns the seconds since boot instead).
pub(super) fn boot_time() -> Option<u64> {
    /// 2001-09-09: no machine csa runs on booted before.
    const PLAUSIBLE: u64 = 1_000_000_000;
    Some(reader().boot_time).filter(|&t| t > PLAUSIBLE)
}

/// The entries of `parts`, each followed by a NUL (the shape of `/proc/<pid>/cmdline`).
fn nul_terminated(parts: &[OsString]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    out
}

fn convert(pid: u32, process: &sysinfo::Process, boot_time: u64) -> io::Result<ProcessStat> {
    let status = match process.status() {
        ProcessStatus::Zombie => Status::Zombie,
        ProcessStatus::Dead => Status::Dead,
        _ => Status::Live,
    };
    let raw = i32::try_from(pid).map_err(|_| not_found(pid))?;
    let errno = |e: nix::errno::Errno| {
        if e == nix::errno::Errno::ESRCH {
            not_found(pid)
        } else {
            io::Error::from(e)
        }
    };
    let pgid = nix::unistd::getpgid(Some(NixPid::from_raw(raw))).map_err(errno)?;
    let sid = nix::unistd::getsid(Some(NixPid::from_raw(raw))).map_err(errno)?;
    Ok(ProcessStat {
        status,
        ppid: process.parent().map_or(0, Pid::as_u32),
        pgid: pgid.as_raw().unsigned_abs(),
        sid: sid.as_raw().unsigned_abs(),
        start: start_time(pid, process, boot_time),
        uid: process.effective_user_id().map(|uid| **uid),
    })
}

/// Whether the zombie `pid` has a thread that is not a zombie (Linux: sysinfo lists a
/// process's threads as its tasks; elsewhere there are none, and a process whose main thread
/// exited while others run is not a zombie). Fails closed: threads listed but unreadable count
/// as running.
fn zombie_has_live_thread(pid: u32) -> bool {
    let reader = reader();
    let mut system = lock(reader);
    let key = Pid::from_u32(pid);
    let with_tasks = ProcessRefreshKind::nothing();
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[key]), true, with_tasks);
    let Some(tasks) = system.process(key).and_then(|p| p.tasks()) else {
        return false;
    };
    let tasks: Vec<Pid> = tasks.iter().copied().filter(|t| *t != key).collect();
    if tasks.is_empty() {
        return false;
    }
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&tasks), true, with_tasks);
    tasks.iter().any(|t| {
        system.process(*t).is_none_or(|task| {
            !matches!(task.status(), ProcessStatus::Zombie | ProcessStatus::Dead)
        })
    })
}
