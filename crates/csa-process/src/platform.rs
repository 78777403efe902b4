//! The `/proc` readers, one function per file: the procfs backend ([`crate::backend`]), and
//! what tests use to lay out upstream's files (start ticks). Linux only; the fallback (other
//! Unix) reports every read as unsupported, which the callers treat as "unknown", hence alive.
//!
//! Formats follow proc(5): `/proc/<pid>/stat` (fields after the parenthesised `comm`, which may
//! itself contain spaces and parentheses, so parsing starts after the *last* `)`),
//! `/proc/<pid>/cmdline` and `/proc/<pid>/environ` (NUL-separated), and `/proc/locks`.

use std::io;

/// The fields of `/proc/<pid>/stat` that liveness needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3, the process state: `R`, `S`, `D`, `Z` (zombie), `T`, `t`, `X` (dead), `I`, …
    pub state: char,
    /// Field 4, the parent's pid.
    pub ppid: u32,
    /// Field 5, the process group id.
    pub pgrp: u32,
    /// Field 6, the session id (the pid of the process that called `setsid(2)`).
    pub session: u32,
    /// Field 20, the number of threads in the thread group.
    pub num_threads: u64,
    /// Field 22, the start time in clock ticks since boot.
    pub start_ticks: u64,
}

impl ProcStat {
    /// Whether the state is `Z` (zombie) or `X`/`x` (dead). For a thread-group leader this
    /// describes the *main thread* only: a leader whose main thread called `pthread_exit(3)`
    /// reads `Z` while its other threads run ([`ProcStat::may_have_live_threads`]).
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Whether the main thread has exited but the thread group may still have running threads
    /// (`Z` with more than one thread): the process is alive until every thread exits, which
    /// only `/proc/<pid>/task/*/stat` can tell ([`task_states`]).
    pub fn may_have_live_threads(&self) -> bool {
        self.state == 'Z' && self.num_threads > 1
    }
}

/// Largest number of bytes read from `/proc/<pid>/cmdline` or `environ`. Both are bounded by the
/// kernel's argument limit; the cap keeps a pathological process from costing more.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const MAX_PROC_READ: u64 = 4 << 20;

#[cfg(target_os = "linux")]
mod imp {
    use super::{ProcStat, MAX_PROC_READ};
    use std::io::{self, Read};

    pub fn stat(pid: u32) -> io::Result<ProcStat> {
        let path = format!("/proc/{pid}/stat");
        let text = fs_err::read_to_string(&path)?;
        parse_stat(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path}: unexpected format"),
            )
        })
    }

    pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
        let after_comm = &text[text.rfind(')')? + 1..];
        // Fields 3 (state) onwards; field N is at index N - 3.
        let fields: Vec<&str> = after_comm.split_ascii_whitespace().take(20).collect();
        let field = |n: usize| fields.get(n - 3).copied();
        Some(ProcStat {
            state: field(3)?.chars().next()?,
            ppid: field(4)?.parse().ok()?,
            pgrp: field(5)?.parse().ok()?,
            session: field(6)?.parse().ok()?,
            num_threads: field(20)?.parse().ok()?,
            start_ticks: field(22)?.parse().ok()?,
        })
    }

    pub fn task_states(pid: u32) -> io::Result<Vec<char>> {
        let mut states = Vec::new();
        for entry in fs_err::read_dir(format!("/proc/{pid}/task"))? {
            let task = entry?.file_name();
            let path = format!("/proc/{pid}/task/{}/stat", task.to_string_lossy());
            match fs_err::read_to_string(&path) {
                Ok(text) => {
                    if let Some(stat) = parse_stat(&text) {
                        states.push(stat.state);
                    }
                }
                // A thread that exited between the listing and the read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(states)
    }

    pub fn cgroup(pid: u32) -> io::Result<Option<String>> {
        // An exited main thread reads as in the root cgroup: ask a running thread.
        let bytes = match stat(pid) {
            Ok(s) if s.may_have_live_threads() => read_of_live_thread(pid, "cgroup", true)?,
            _ => read_capped(&format!("/proc/{pid}/cgroup"))?,
        };
        Ok(super::parse_cgroup_v2(&String::from_utf8_lossy(&bytes)))
    }

    pub fn mountinfo() -> io::Result<String> {
        fs_err::read_to_string("/proc/self/mountinfo")
    }

    fn read_capped(path: &str) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        fs_err::File::open(path)?
            .take(MAX_PROC_READ)
            .read_to_end(&mut buf)?;
        Ok(buf)
    }

    pub fn cmdline(pid: u32) -> io::Result<Vec<u8>> {
        read_of_live_thread(pid, "cmdline", false)
    }

    pub fn environ(pid: u32) -> io::Result<Vec<u8>> {
        read_of_live_thread(pid, "environ", false)
    }

    /// `/proc/<pid>/<file>`, or, for a thread-group leader whose main thread exited while
    /// others run (its own file reads empty or fails with `ESRCH`; with `always`, whatever it
    /// reads), the same file of a running thread (`/proc/<pid>/task/<tid>/<file>`).
    fn read_of_live_thread(pid: u32, file: &str, always: bool) -> io::Result<Vec<u8>> {
        let own = read_capped(&format!("/proc/{pid}/{file}"));
        let retry = always
            || match &own {
                Ok(bytes) => bytes.is_empty(),
                Err(e) => e.raw_os_error() == Some(nix::libc::ESRCH),
            };
        if !retry || !stat(pid).is_ok_and(|s| s.may_have_live_threads()) {
            return own;
        }
        for entry in fs_err::read_dir(format!("/proc/{pid}/task"))? {
            let tid = entry?.file_name();
            let tid = tid.to_string_lossy();
            let live = fs_err::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
                .ok()
                .and_then(|text| parse_stat(&text))
                .is_some_and(|s| !s.has_exited());
            if live {
                if let Ok(bytes) = read_capped(&format!("/proc/{pid}/task/{tid}/{file}")) {
                    return Ok(bytes);
                }
            }
        }
        own
    }

    pub fn proc_locks() -> io::Result<String> {
        fs_err::read_to_string("/proc/locks")
    }

    pub fn owner_uid(pid: u32) -> io::Result<u32> {
        use std::os::unix::fs::MetadataExt;
        Ok(fs_err::metadata(format!("/proc/{pid}"))?.uid())
    }

    pub fn boot_id() -> io::Result<String> {
        Ok(fs_err::read_to_string("/proc/sys/kernel/random/boot_id")?
            .trim()
            .to_owned())
    }

    pub fn pid_namespace() -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(fs_err::metadata("/proc/self/ns/pid")?.ino())
    }

    pub fn pids() -> io::Result<Vec<u32>> {
        let mut pids = Vec::new();
        for entry in fs_err::read_dir("/proc")? {
            if let Ok(pid) = entry?.file_name().to_string_lossy().parse() {
                pids.push(pid);
            }
        }
        Ok(pids)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::ProcStat;
    use std::io;

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "/proc is not available on this platform",
        )
    }
    pub fn stat(_pid: u32) -> io::Result<ProcStat> {
        Err(unsupported())
    }
    pub fn cmdline(_pid: u32) -> io::Result<Vec<u8>> {
        Err(unsupported())
    }
    pub fn environ(_pid: u32) -> io::Result<Vec<u8>> {
        Err(unsupported())
    }
    pub fn proc_locks() -> io::Result<String> {
        Err(unsupported())
    }
    pub fn owner_uid(_pid: u32) -> io::Result<u32> {
        Err(unsupported())
    }
    pub fn boot_id() -> io::Result<String> {
        Err(unsupported())
    }
    pub fn pid_namespace() -> io::Result<u64> {
        Err(unsupported())
    }
    pub fn pids() -> io::Result<Vec<u32>> {
        Err(unsupported())
    }
    pub fn task_states(_pid: u32) -> io::Result<Vec<char>> {
        Err(unsupported())
    }
    pub fn cgroup(_pid: u32) -> io::Result<Option<String>> {
        Err(unsupported())
    }
    pub fn mountinfo() -> io::Result<String> {
        Err(unsupported())
    }
}

/// Reads `/proc/<pid>/stat`.
///
/// # Errors
/// `NotFound` when the process does not exist; `InvalidData` when the file does not parse;
/// `Unsupported` without `/proc`; any other I/O error of the read.
pub fn stat(pid: u32) -> io::Result<ProcStat> {
    imp::stat(pid)
}

/// Reads `/proc/<pid>/cmdline` (arguments separated by NUL), at most 4 MiB.
///
/// # Errors
/// `NotFound` when the process does not exist, `PermissionDenied` under `hidepid`, `Unsupported`
/// without `/proc`.
pub fn cmdline(pid: u32) -> io::Result<Vec<u8>> {
    imp::cmdline(pid)
}

/// Reads `/proc/<pid>/environ` (`KEY=VALUE` entries separated by NUL), at most 4 MiB.
///
/// # Errors
/// `PermissionDenied` for another user's process (it needs ptrace access), `NotFound` when the
/// process does not exist, `Unsupported` without `/proc`.
pub fn environ(pid: u32) -> io::Result<Vec<u8>> {
    imp::environ(pid)
}

/// Reads `/proc/locks` whole (one line per lock held or waited for, see [`crate::HeldLocks`]).
///
/// # Errors
/// Any I/O error of the read; `Unsupported` without `/proc`.
pub fn proc_locks() -> io::Result<String> {
    imp::proc_locks()
}

/// The user id owning process `pid` (the owner of `/proc/<pid>`: its effective uid).
///
/// # Errors
/// `NotFound` when the process does not exist; `Unsupported` without `/proc`.
pub fn owner_uid(pid: u32) -> io::Result<u32> {
    imp::owner_uid(pid)
}

/// This boot's id, `/proc/sys/kernel/random/boot_id` (a UUID, new at every boot), trimmed.
///
/// # Errors
/// Any I/O error of the read; `Unsupported` without `/proc`.
pub fn boot_id() -> io::Result<String> {
    imp::boot_id()
}

/// The inode of `/proc/self/ns/pid`, which identifies this process's PID namespace.
///
/// # Errors
/// Any I/O error of the stat; `Unsupported` without `/proc`.
pub fn pid_namespace() -> io::Result<u64> {
    imp::pid_namespace()
}

/// The pids of every process visible in `/proc` (its numeric entries), in no order. Used only
/// to find a process group's members ([`crate::group_is_running`]): no other interface lists
/// them.
///
/// # Errors
/// Any I/O error of listing `/proc`; `Unsupported` without `/proc`.
pub fn pids() -> io::Result<Vec<u32>> {
    imp::pids()
}

/// The states (field 3 of each `/proc/<pid>/task/<tid>/stat`) of every thread of `pid`.
///
/// # Errors
/// `NotFound` when the process does not exist; `Unsupported` without `/proc`.
pub fn task_states(pid: u32) -> io::Result<Vec<char>> {
    imp::task_states(pid)
}

/// The cgroup v2 path of `pid` (the `0::<path>` line of `/proc/<pid>/cgroup`, relative to the
/// cgroup2 mount), `None` when it has none (a cgroup v1 only system).
///
/// # Errors
/// `NotFound` when the process does not exist; `Unsupported` without `/proc`.
pub fn cgroup(pid: u32) -> io::Result<Option<String>> {
    imp::cgroup(pid)
}

/// `/proc/self/mountinfo`, whole (proc(5): one mount per line).
///
/// # Errors
/// Any I/O error of the read; `Unsupported` without `/proc`.
pub fn mountinfo() -> io::Result<String> {
    imp::mountinfo()
}

/// The cgroup v2 path in the text of a `/proc/<pid>/cgroup` file: the line `0::<path>`
/// (cgroups(7)); `None` without one.
pub fn parse_cgroup_v2(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim_end().to_owned())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::imp::parse_stat;

    #[test]
    fn parses_stat_with_spaces_and_parens_in_comm() {
        let line =
            "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.session, 4242);
        assert_eq!(stat.num_threads, 1);
        assert_eq!(stat.start_ticks, 987654);
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("4242 (x) S 1 2 3"), None);
        assert_eq!(
            super::parse_cgroup_v2("4:memory:/a\n0::/user.slice/x.scope\n"),
            Some("/user.slice/x.scope".to_owned())
        );
        assert_eq!(super::parse_cgroup_v2("4:memory:/a\n"), None);
        assert_eq!(parse_stat("no parens here"), None);
    }

    #[test]
    fn reads_own_stat() {
        let stat = super::stat(std::process::id()).expect("own stat");
        assert!(!stat.has_exited());
        assert!(stat.start_ticks > 0);
    }
}
