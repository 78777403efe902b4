//! Signalling a verified member of a session, and nothing else.
//!
//! A pid alone never proves identity (it may have been reused, even within one clock tick, with
//! equal start ticks). So a signal goes to a process only after it was pinned and verified: on
//! Linux the pid is first opened as a pidfd (`pidfd_open(2)`), then verified (the caller's
//! membership test and its owner, read through the backend in use: `/proc/<pid>/…` or
//! sysinfo), then signalled through the pidfd (`pidfd_send_signal(2)`). If the pinned process
//! exited at any point in between, the send fails with `ESRCH`: whatever got the pid since is
//! never signalled, and if it is still alive at the send it was alive through the
//! verification, so what was read about the pid was its. (pidfds are a system call, not
//! `/proc`: both backends use them on Linux.)
//!
//! Fallback (kernels before 5.3, other platforms): verify, then `kill(2)`; the window between
//! the two is a pid reuse race, stated here.

use std::io;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// What happened to one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Delivered to the verified process.
    Delivered,
    /// The process had exited: nothing was sent.
    Gone,
    /// The process is not a member (or belongs to another user): nothing was sent.
    Refused,
}

/// Sends `signal` to `pid` if `is_member(pid)` holds for the process pinned by a pidfd and it
/// is owned by this user (see the module docs).
///
/// # Errors
/// An unexpected error of `pidfd_open` or of the send (other than `ESRCH`).
pub fn signal_member(
    pid: u32,
    signal: Signal,
    is_member: impl FnOnce(u32) -> bool,
) -> io::Result<Sent> {
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(Sent::Refused);
    };
    if raw <= 1 {
        return Ok(Sent::Refused);
    }
    let pidfd = match pin(raw) {
        Ok(fd) => Some(fd),
        Err(Errno::ESRCH) => return Ok(Sent::Gone),
        // ENOSYS (old kernel) or no pidfd on this platform: the documented fallback.
        Err(Errno::ENOSYS | Errno::EINVAL) => None,
        Err(errno) => return Err(errno.into()),
    };
    let owner_ok = crate::backend::owner_uid(pid)
        .map(|uid| uid == nix::unistd::geteuid().as_raw())
        .unwrap_or(false);
    if !owner_ok || !is_member(pid) {
        if !crate::probe(pid).is_running() {
            return Ok(Sent::Gone);
        }
        return Ok(Sent::Refused);
    }
    let sent = match &pidfd {
        Some(fd) => send_pidfd(fd, signal),
        None => nix::sys::signal::kill(Pid::from_raw(raw), signal),
    };
    match sent {
        Ok(()) => Ok(Sent::Delivered),
        Err(Errno::ESRCH) => Ok(Sent::Gone),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(target_os = "linux")]
fn pin(pid: i32) -> Result<std::os::fd::OwnedFd, Errno> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or(Errno::EINVAL)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| Errno::from_raw(e.raw_os_error()))
}

#[cfg(not(target_os = "linux"))]
fn pin(_pid: i32) -> Result<std::os::fd::OwnedFd, Errno> {
    Err(Errno::ENOSYS)
}

#[cfg(target_os = "linux")]
fn send_pidfd(fd: &std::os::fd::OwnedFd, signal: Signal) -> Result<(), Errno> {
    let sig = rustix::process::Signal::from_named_raw(signal as i32).ok_or(Errno::EINVAL)?;
    rustix::process::pidfd_send_signal(fd, sig).map_err(|e| Errno::from_raw(e.raw_os_error()))
}

#[cfg(not(target_os = "linux"))]
fn send_pidfd(_fd: &std::os::fd::OwnedFd, _signal: Signal) -> Result<(), Errno> {
    Err(Errno::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_members_are_signalled_and_exited_ones_are_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        let pid = child.id();
        assert_eq!(
            signal_member(pid, Signal::SIGTERM, |_| false).expect("send"),
            Sent::Refused
        );
        assert!(
            crate::probe(pid).is_running(),
            "a refused process is not signalled"
        );
        assert_eq!(
            signal_member(pid, Signal::SIGKILL, |p| p == pid).expect("send"),
            Sent::Delivered
        );
        child.wait().expect("reap");
        assert_eq!(
            signal_member(pid, Signal::SIGKILL, |_| true).expect("send"),
            Sent::Gone
        );
        assert_eq!(
            signal_member(1, Signal::SIGKILL, |_| true).expect("send"),
            Sent::Refused
        );
    }
}
