//! A supervisor of its own: csa re-executes itself as the session's supervisor in a new process
//! session, and the launching process waits for its report that the session runs (or why it
//! could not start).
//!
//! Two uses:
//! - **Detached** (`csa run --detach`): the supervisor's stdio is /dev/null; the launcher prints
//!   the session id and returns.
//! - **Nested** (a foreground `csa run` from inside another session): the supervisor inherits
//!   the launcher's stdio (the agent's output still reaches the caller), and the launcher waits
//!   for the supervisor's exit and exits with its code, forwarding SIGINT, SIGHUP and SIGQUIT.
//!   The supervisor runs outside the caller's process session and without the caller's
//!   `CSA_*` environment, so it and its agent are the *child* session's processes, never the
//!   parent session's leftovers; the launcher itself stays a process of the parent (killing it
//!   does not stop the child session: `csa session kill` does).
//!
//! The report travels over a pipe whose write end the supervisor inherits; its number is in
//! `CSA_INTERNAL_READY_FD`, and the mode in `CSA_INTERNAL_SUPERVISOR` (`detached` or
//! `nested`). One line: `ok <ULID>`, or `err <exit code> <message>` (the message's newlines
//! escaped as `\n`). EOF with no line means the supervisor died first.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use crate::spawn::new_session;

const READY_ENV: &str = "CSA_INTERNAL_READY_FD";
const MODE_ENV: &str = "CSA_INTERNAL_SUPERVISOR";

/// The environment a supervisor started by [`spawn_supervisor`] does not inherit: the caller's
/// session marker and the rest of the session environment csa gives an agent.
pub const SESSION_ENV: [&str; 5] = [
    "CSA_SESSION_ID",
    "CSA_SESSION_DIR",
    "CSA_DEPTH",
    "CSA_PROJECT_ROOT",
    "CSA_PARENT_SESSION",
];

/// How a re-executed supervisor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorMode {
    /// stdio on /dev/null; the agent writes straight into the logs.
    Detached,
    /// stdio inherited; the agent's output is streamed to it and to the logs.
    Nested,
}

/// The supervisor's end of the report pipe.
#[derive(Debug)]
pub struct Ready {
    pipe: std::sync::Mutex<Option<std::fs::File>>,
    mode: SupervisorMode,
}

impl Ready {
    /// The report pipe, when this process is a supervisor started by [`spawn_supervisor`]
    /// (the variables are removed from the environment).
    pub fn from_env() -> Option<Self> {
        let fd: i32 = std::env::var(READY_ENV).ok()?.parse().ok()?;
        let mode = match std::env::var(MODE_ENV).as_deref() {
            Ok("nested") => SupervisorMode::Nested,
            _ => SupervisorMode::Detached,
        };
        std::env::remove_var(READY_ENV);
        std::env::remove_var(MODE_ENV);
        // Check it is an open fd before owning it.
        fcntl(borrow_for_probe(fd)?, FcntlArg::F_GETFD).ok()?;
        #[allow(unsafe_code)]
        // SAFETY: the fd was opened by our parent for us (its number came through the
        // environment it set) and is owned by nothing else in this process.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = fcntl(owned.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        Some(Ready {
            pipe: std::sync::Mutex::new(Some(std::fs::File::from(owned))),
            mode,
        })
    }

    /// How this supervisor runs.
    pub fn mode(&self) -> SupervisorMode {
        self.mode
    }

    fn send(&self, line: &str) {
        if let Ok(mut pipe) = self.pipe.lock() {
            if let Some(mut file) = pipe.take() {
                let _ = writeln!(file, "{line}");
            }
        }
    }

    /// Reports that session `id` is running.
    pub fn ok(&self, id: &str) {
        self.send(&format!("ok {id}"));
    }

    /// Reports a failure with its exit code and rendered message (only the first report
    /// counts).
    pub fn fail(&self, code: u8, message: &str) {
        let text = message
            .strip_prefix("error: ")
            .unwrap_or(message)
            .trim_end();
        self.send(&format!("err {code} {}", text.replace('\n', "\\n")));
    }
}

#[allow(unsafe_code)]
fn borrow_for_probe(fd: i32) -> Option<std::os::fd::BorrowedFd<'static>> {
    (fd >= 0).then(|| {
        // SAFETY: only used for an F_GETFD probe right away; F_GETFD on a closed fd fails
        // with EBADF, which is all we want to know.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
    })
}

/// What the supervisor reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The session runs (detached: the launcher is done).
    Started(String),
    /// Nested: the session ran, and the supervisor exited with this code.
    Exited {
        /// The session.
        session_id: String,
        /// The supervisor's exit code (the agent's, as a foreground `csa run` exits).
        code: u8,
    },
    /// It could not start: the exit code and message it reported.
    Failed {
        /// The exit code.
        code: u8,
        /// The message (without `error: `).
        message: String,
    },
    /// It exited before reporting.
    Died(String),
}

/// Re-executes `exe` with `args` (a command line that supervises a turn) as a supervisor in
/// `mode`, in a new process session without the caller's session environment, and waits for
/// its report (nested: and for its exit, forwarding SIGINT, SIGHUP and SIGQUIT to it).
///
/// # Errors
/// I/O errors of the pipe, the spawn or the wait.
pub fn spawn_supervisor(
    exe: &Path,
    args: &[OsString],
    mode: SupervisorMode,
) -> std::io::Result<Report> {
    // std's pipe is close-on-exec on every platform (nix has no pipe2 on macOS); the write end
    // is then made inheritable for the supervisor.
    let (read, write) = std::io::pipe()?;
    let (read, write) = (OwnedFd::from(read), OwnedFd::from(write));
    fcntl(write.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).map_err(std::io::Error::from)?;
    let mut cmd = Command::new(exe);
    cmd.args(args);
    for key in SESSION_ENV {
        cmd.env_remove(key);
    }
    cmd.env(
        READY_ENV,
        std::os::fd::AsRawFd::as_raw_fd(&write).to_string(),
    )
    .env(
        MODE_ENV,
        match mode {
            SupervisorMode::Detached => "detached",
            SupervisorMode::Nested => "nested",
        },
    );
    if mode == SupervisorMode::Detached {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    // Caught before the spawn so that none of them kills this launcher before it can forward.
    let forward = match mode {
        SupervisorMode::Nested => Some(signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
            signal_hook::consts::SIGQUIT,
        ])?),
        SupervisorMode::Detached => None,
    };
    new_session(&mut cmd);
    let child = cmd.spawn();
    drop(write);
    let mut child = child?;
    let mut line = String::new();
    BufReader::new(std::fs::File::from(read)).read_line(&mut line)?;
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("err ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        let _ = child.wait();
        return Ok(Report::Failed {
            code: code.parse().unwrap_or(1),
            message: message.replace("\\n", "\n"),
        });
    }
    let Some(id) = line.strip_prefix("ok ") else {
        let status = child.wait()?;
        return Ok(Report::Died(format!(
            "the supervisor exited ({status}) before reporting"
        )));
    };
    let Some(mut signals) = forward else {
        // Detached: the supervisor runs on; init reaps it when we exit.
        return Ok(Report::Started(id.to_owned()));
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).map_err(std::io::Error::other)?);
    let handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        for sig in signals.forever() {
            if let Ok(signal) = nix::sys::signal::Signal::try_from(sig) {
                // The supervisor is our unreaped child: its pid names no one else.
                let _ = nix::sys::signal::kill(pid, signal);
            }
        }
    });
    let status = child.wait()?;
    handle.close();
    let _ = forwarder.join();
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => 128u8.saturating_add(u8::try_from(sig).unwrap_or(0)),
        (None, None) => 1,
    };
    Ok(Report::Exited {
        session_id: id.to_owned(),
        code,
    })
}
