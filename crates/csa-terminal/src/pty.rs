//! The agent's pseudo-terminal: opening a master/slave pair (posix_openpt(3), grantpt(3),
//! unlockpt(3), ptsname(3)), making the slave the agent's controlling terminal and standard
//! streams, and resizing it.
//!
//! Invariants: both ends are opened close-on-exec, so only the agent gets the slave (as fds
//! 0, 1 and 2) and nobody but the supervisor holds the master. Once the agent and everything
//! that inherited the slave have closed it, reading the master fails with `EIO` (Linux) or
//! returns end-of-file: that is how the supervisor sees the last output. When the master is
//! closed (the supervisor ends or dies), the kernel hangs up the terminal: the agent, as the
//! controlling process, and its foreground process group get `SIGHUP`, as a program in a closed
//! terminal window does.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;

use crate::error::{Result, TerminalError};
use crate::size::WindowSize;

/// A pseudo-terminal pair, before the agent is spawned on its slave.
#[derive(Debug)]
pub struct Pty {
    master: PtyMaster,
    slave: OwnedFd,
}

/// The supervisor's end of the agent's pseudo-terminal: what the agent writes is read here,
/// what is written here is the agent's input.
#[derive(Debug)]
pub struct PtyMaster {
    fd: OwnedFd,
}

impl Pty {
    /// Opens a new pseudo-terminal of `size` with the kernel's default terminal modes (echo,
    /// canonical input, `^C` for `SIGINT`: what a new terminal window has).
    ///
    /// # Errors
    /// [`TerminalError::Io`] from `posix_openpt`, `grantpt`, `unlockpt`, `ptsname`, opening the
    /// slave or setting the size.
    pub fn open(size: WindowSize) -> Result<Pty> {
        let err = |what: &str| {
            let what = what.to_owned();
            move |e: rustix::io::Errno| TerminalError::io(what, e.into())
        };
        // Linux opens the master close-on-exec at once; elsewhere (macOS has no such flag for
        // posix_openpt) it is set right after.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY;
        let master =
            rustix::pty::openpt(flags).map_err(err("open a pseudo-terminal (posix_openpt)"))?;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        rustix::io::fcntl_setfd(&master, rustix::io::FdFlags::CLOEXEC)
            .map_err(err("set close-on-exec on the pseudo-terminal"))?;
        rustix::pty::grantpt(&master).map_err(err("grant the pseudo-terminal (grantpt)"))?;
        rustix::pty::unlockpt(&master).map_err(err("unlock the pseudo-terminal (unlockpt)"))?;
        let name = rustix::pty::ptsname(&master, Vec::new())
            .map_err(err("name the pseudo-terminal's slave (ptsname)"))?;
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err(&format!("open {}", name.to_string_lossy())))?;
        let master = PtyMaster { fd: master };
        master.resize(size)?;
        Ok(Pty { master, slave })
    }

    /// Makes `cmd` run on this terminal: its stdin, stdout and stderr become the slave, and
    /// between fork and exec the child calls `setsid()` (a new session and process group whose
    /// id is its pid, so `killpg` reaches its whole group) and `ioctl(0, TIOCSCTTY)`, making the
    /// slave its controlling terminal: `^C` typed by a client becomes `SIGINT` for its
    /// foreground process group, and a resize becomes `SIGWINCH`.
    ///
    /// This replaces any other `setsid` the caller would add: a second `setsid` in the same
    /// child fails with `EPERM`. The slave copies are owned by `cmd`: drop `cmd` right after
    /// spawning (and this `Pty`, through [`Pty::into_master`]), or the master never reports the
    /// end of the agent's output.
    ///
    /// # Errors
    /// [`TerminalError::Io`] when the slave cannot be duplicated.
    #[allow(unsafe_code)]
    pub fn configure(&self, cmd: &mut Command) -> Result<()> {
        let dup = || {
            self.slave
                .try_clone()
                .map_err(|e| TerminalError::io("duplicate the pseudo-terminal's slave", e))
        };
        cmd.stdin(Stdio::from(dup()?))
            .stdout(Stdio::from(dup()?))
            .stderr(Stdio::from(dup()?));
        // SAFETY: the closure runs in the forked child before exec, after std has made the
        // slave fds 0-2; it only calls setsid(2) and ioctl(2), both async-signal-safe, converts
        // their errno without allocating, and touches no lock.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
                Ok(())
            });
        }
        Ok(())
    }

    /// The master, closing the supervisor's copy of the slave: call it once the agent is
    /// spawned.
    pub fn into_master(self) -> PtyMaster {
        self.master
    }

    /// The slave (for tests and for callers that spawn the agent themselves).
    pub fn slave(&self) -> BorrowedFd<'_> {
        self.slave.as_fd()
    }

    /// The master.
    pub fn master(&self) -> &PtyMaster {
        &self.master
    }
}

impl PtyMaster {
    /// Sets the terminal's window size (`TIOCSWINSZ`). When it changes, the kernel sends
    /// `SIGWINCH` to the terminal's foreground process group.
    ///
    /// # Errors
    /// [`TerminalError::Io`] from the ioctl.
    pub fn resize(&self, size: WindowSize) -> Result<()> {
        rustix::termios::tcsetwinsize(&self.fd, size.winsize())
            .map_err(|e| TerminalError::io("set the pseudo-terminal's size", e.into()))
    }

    /// The terminal's window size (`TIOCGWINSZ`), [`WindowSize::DEFAULT`] when it reports none.
    pub fn size(&self) -> WindowSize {
        WindowSize::of_terminal(&self.fd).unwrap_or(WindowSize::DEFAULT)
    }

    /// Reads what the agent wrote: up to `buf.len()` bytes; blocks until there is some.
    /// `Ok(0)` or an `EIO` error means every holder of the slave has closed it.
    ///
    /// # Errors
    /// The read's error (`EIO` at the end on Linux).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        rustix::io::read(&self.fd, buf).map_err(io::Error::from)
    }

    /// Writes all of `bytes` as the agent's input, blocking while the terminal's input queue
    /// is full.
    ///
    /// # Errors
    /// The write's error.
    pub fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match rustix::io::write(&self.fd, bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl AsFd for PtyMaster {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_gets_the_slave_as_its_controlling_terminal() {
        let pty = Pty::open(WindowSize { cols: 91, rows: 17 }).expect("openpty");
        let mut cmd = Command::new("sh");
        // `stty size` needs a terminal on stdin; `tty` names it; `ps -o tty=` would also do.
        cmd.args(["-c", "stty size; test -t 0 && test -t 1 && echo tty-ok"]);
        pty.configure(&mut cmd).expect("configure");
        let mut child = cmd.spawn().expect("spawn sh");
        drop(cmd);
        let master = pty.into_master();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        let status = child.wait().expect("wait");
        assert!(status.success(), "{status}");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("17 91"), "{text:?}");
        assert!(text.contains("tty-ok"), "{text:?}");
    }
}
