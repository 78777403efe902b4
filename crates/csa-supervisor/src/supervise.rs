//! Supervising a running agent: streaming its output (foreground), forwarding the signals csa
//! receives to the agent's process group, reaping the agent's orphaned descendants, and
//! waiting for the agent without ever signalling a pid that may have been reused.
//!
//! Reuse safety: the agent is csa's child, so its pid (and process group id) cannot be reused
//! until csa reaps it. csa waits with `waitid(WEXITED | WNOWAIT)`, which leaves the zombie in
//! place, stops forwarding, and only then reaps it.
//!
//! Orphans: the supervisor is the *child subreaper* of its descendants (Linux
//! `prctl(PR_SET_CHILD_SUBREAPER)`; [`become_subreaper`]): a process whose parent exits (a
//! daemon the agent double-forked, a child of an agent that exited first) is re-parented to the
//! supervisor instead of init, so the supervisor reaps it and no exited member lingers as a
//! zombie of someone else. Elsewhere the fallback is init, stated in docs/lifecycle.md.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[cfg(target_os = "linux")]
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
#[cfg(target_os = "linux")]
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long to keep copying output after the agent exited, for descendants that still hold
/// its pipes (their later output is not captured).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// How the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Ended {
    fn of(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Ended::Code(code),
            (None, Some(sig)) => Ended::Signal(sig),
            (None, None) => Ended::Code(1),
        }
    }
}

/// Makes this process the child subreaper of its descendants (Linux; a no-op elsewhere, where
/// orphans go to init). Best effort: a failure is logged.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(err) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        tracing::warn!(%err, "cannot become the child subreaper: orphans go to init");
    }
}

/// Reaps every exited child that is not `keep` (orphans re-parented to this subreaper),
/// without waiting. Returns how many were reaped.
#[cfg(target_os = "linux")]
pub fn reap_orphans(keep: Option<u32>) -> usize {
    let mut reaped = 0;
    loop {
        match waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
            Ok(status) => {
                let Some(pid) = status.pid() else {
                    return reaped;
                };
                if Some(pid.as_raw().unsigned_abs()) == keep {
                    return reaped;
                }
                let _ = waitpid(pid, None);
                reaped += 1;
            }
        }
    }
}

/// Without a child subreaper (platforms other than Linux) orphans go to init, never to this
/// supervisor, so there is nothing to reap: returns 0.
#[cfg(not(target_os = "linux"))]
pub fn reap_orphans(_keep: Option<u32>) -> usize {
    0
}

/// Copies everything read from `from` to `log` and, when given, to `echo`, chunk by chunk as
/// it arrives (so the terminal sees output as soon as the agent writes it). A failing echo (a
/// closed terminal or pipe) stops the echo, never the log; a failing log write (a full disk)
/// is reported once, naming the log, and the copy goes on.
fn pump(
    mut from: impl Read + Send + 'static,
    mut log: std::fs::File,
    log_path: PathBuf,
    mut echo: Option<Box<dyn Write + Send>>,
    done: mpsc::Sender<()>,
) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut log_failed = false;
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(err) = log.write_all(&buf[..n]) {
                        if !log_failed {
                            tracing::warn!(
                                "cannot write the session log {}: {err}; the agent's output is not recorded from here on",
                                log_path.display()
                            );
                            log_failed = true;
                        }
                    }
                    if let Some(out) = echo.as_mut() {
                        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                            echo = None;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
}

/// The session's two logs, open for appending, with their paths.
#[derive(Debug)]
pub struct Logs {
    /// output.log.
    pub stdout: std::fs::File,
    /// Its path.
    pub stdout_path: PathBuf,
    /// stderr.log.
    pub stderr: std::fs::File,
    /// Its path.
    pub stderr_path: PathBuf,
}

/// Streams a piped agent's stdout and stderr to the session logs and to csa's own stdout and
/// stderr. Returns a receiver that gets one message per stream at its end.
pub fn stream(child: &mut Child, logs: Logs) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        pump(
            out,
            logs.stdout,
            logs.stdout_path,
            Some(Box::new(std::io::stdout())),
            tx.clone(),
        );
    }
    if let Some(err) = child.stderr.take() {
        pump(
            err,
            logs.stderr,
            logs.stderr_path,
            Some(Box::new(std::io::stderr())),
            tx,
        );
    }
    rx
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, caught from before the agent is spawned (so that
/// none of them kills csa instead of reaching the agent) and forwarded once it runs.
#[derive(Debug)]
pub struct Forwarder {
    signals: Signals,
}

impl Forwarder {
    /// Catches the signals; those arriving before [`wait`] starts are queued.
    ///
    /// # Errors
    /// I/O errors of installing the handlers.
    pub fn install() -> std::io::Result<Self> {
        Ok(Forwarder {
            signals: Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])?,
        })
    }
}

/// Waits for the child `agent` to exit without reaping it: until reaped, the agent's pid (and
/// process group id) stays its own. Another child that exits meanwhile is an orphan re-parented
/// to this subreaper: it is reaped and the wait goes on.
///
/// # Errors
/// I/O errors of `waitid(2)` other than `EINTR`.
#[cfg(target_os = "linux")]
fn wait_for_exit(agent: Pid) -> std::io::Result<()> {
    loop {
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(status) => match status.pid() {
                Some(pid) if pid == agent => return Ok(()),
                Some(pid) => {
                    let _ = waitpid(pid, None);
                }
                None => {}
            },
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for the child `agent` to exit without reaping it (`waitid(P_PID, WEXITED |
/// WNOWAIT)`, through rustix: nix has no `waitid` on macOS). Without a subreaper no orphan
/// comes here.
///
/// # Errors
/// I/O errors of `waitid(2)` other than `EINTR`.
#[cfg(not(target_os = "linux"))]
fn wait_for_exit(agent: Pid) -> std::io::Result<()> {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    let pid = rustix::process::Pid::from_raw(agent.as_raw())
        .ok_or_else(|| std::io::Error::other("the agent's pid is not positive"))?;
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for the agent, forwarding the signals `forwarder` catches to the agent's process
/// group meanwhile and reaping orphans re-parented to this supervisor, then reaps the agent.
/// `streams` (from [`stream`]) is drained for at most 500 ms after the exit.
///
/// # Errors
/// I/O errors of waiting.
pub fn wait(
    child: &mut Child,
    streams: Option<mpsc::Receiver<()>>,
    forwarder: Forwarder,
) -> std::io::Result<Ended> {
    let agent = child.id();
    let pgid = Pid::from_raw(i32::try_from(agent).map_err(std::io::Error::other)?);
    let mut signals = forwarder.signals;
    let handle = signals.handle();
    let forwarder = thread::spawn(move || {
        for sig in signals.forever() {
            if let Ok(signal) = Signal::try_from(sig) {
                // The agent is an unreaped child: its process group id cannot name anyone else.
                if let Err(err) = killpg(pgid, signal) {
                    tracing::debug!(%err, "could not forward {signal} to the agent");
                }
            }
        }
    });
    wait_for_exit(pgid)?;
    handle.close();
    let _ = forwarder.join();
    let status = child.wait()?;
    if let Some(rx) = streams {
        let deadline = std::time::Instant::now() + DRAIN_AFTER_EXIT;
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if rx.recv_timeout(left).is_err() {
                break;
            }
        }
    }
    Ok(Ended::of(status))
}
