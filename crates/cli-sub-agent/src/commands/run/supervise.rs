//! Supervising a running agent: streaming its output (foreground), forwarding the signals csa
//! receives to the agent's process group, and waiting for it without ever signalling a PID
//! that may have been reused.
//!
//! Reuse safety: the agent is csa's child, so its PID (and process group id) cannot be reused
//! until csa reaps it. csa waits with `waitid(WEXITED | WNOWAIT)`, which leaves the zombie in
//! place, stops forwarding, and only then reaps it.

use std::io::{Read, Write};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
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

/// Copies everything read from `from` to `log` and, when given, to `echo`, chunk by chunk as
/// it arrives (so the terminal sees output as soon as the agent writes it). A failing echo
/// (a closed terminal or pipe) stops the echo, never the log.
fn pump(
    mut from: impl Read + Send + 'static,
    mut log: std::fs::File,
    mut echo: Option<Box<dyn Write + Send>>,
    done: mpsc::Sender<()>,
) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(err) = log.write_all(&buf[..n]) {
                        tracing::warn!(%err, "cannot write the session log");
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

/// Streams a foreground agent's stdout and stderr to the session logs and to csa's own stdout
/// and stderr. Returns a receiver that gets one message per stream at its end.
pub fn stream(
    child: &mut Child,
    stdout_log: std::fs::File,
    stderr_log: std::fs::File,
) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        pump(
            out,
            stdout_log,
            Some(Box::new(std::io::stdout())),
            tx.clone(),
        );
    }
    if let Some(err) = child.stderr.take() {
        pump(err, stderr_log, Some(Box::new(std::io::stderr())), tx);
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

/// Waits for the agent, forwarding the signals `forwarder` catches to the agent's process
/// group meanwhile, then reaps it. `streams` (from [`stream`]) is drained for at most
/// [`DRAIN_AFTER_EXIT`] after the exit.
///
/// # Errors
/// I/O errors of waiting.
pub fn wait(
    child: &mut Child,
    streams: Option<mpsc::Receiver<()>>,
    forwarder: Forwarder,
) -> std::io::Result<Ended> {
    let pgid = Pid::from_raw(i32::try_from(child.id()).map_err(std::io::Error::other)?);
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
    // Wait for the exit without reaping: until reaped, the pid stays the agent's.
    loop {
        match waitid(Id::Pid(pgid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
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
