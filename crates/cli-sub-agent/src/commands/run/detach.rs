//! `csa run --detach`: re-executes csa as the session's supervisor in a new session (no
//! controlling terminal, stdio on /dev/null), and returns as soon as the supervisor reports
//! that the session is running, or why it could not start.
//!
//! The report travels over a pipe whose write end the supervisor inherits; its number is in
//! `CSA_INTERNAL_READY_FD`. One line: `ok <ULID>`, or `err <exit code> <message>` (the
//! message's newlines escaped as `\n`). EOF with no line means the supervisor died first.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use anyhow::anyhow;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

use super::{print_started, spawn::new_session};
use crate::cli::{Format, GlobalArgs, RunArgs, WaitFor};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

const READY_ENV: &str = "CSA_INTERNAL_READY_FD";

/// The supervisor's end of the report pipe.
#[derive(Debug)]
pub struct Ready {
    pipe: std::sync::Mutex<Option<std::fs::File>>,
}

impl Ready {
    /// The report pipe, when this process is a detached supervisor.
    pub fn from_env() -> Option<Self> {
        let fd: i32 = std::env::var(READY_ENV).ok()?.parse().ok()?;
        std::env::remove_var(READY_ENV);
        // Check it is an open fd before owning it.
        fcntl(unsafe_free_borrow(fd)?, FcntlArg::F_GETFD).ok()?;
        #[allow(unsafe_code)]
        // SAFETY: the fd was opened by our parent for us (its number came through the
        // environment it set) and is owned by nothing else in this process.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = fcntl(owned.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        Some(Ready {
            pipe: std::sync::Mutex::new(Some(std::fs::File::from(owned))),
        })
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

    /// Reports a failure (only the first report counts).
    pub fn fail(&self, err: &CommandError) {
        let text = err.render();
        let text = text.strip_prefix("error: ").unwrap_or(&text).trim_end();
        self.send(&format!(
            "err {} {}",
            err.exit.code(),
            text.replace('\n', "\\n")
        ));
    }
}

#[allow(unsafe_code)]
fn unsafe_free_borrow(fd: i32) -> Option<std::os::fd::BorrowedFd<'static>> {
    (fd >= 0).then(|| {
        // SAFETY: only used for an F_GETFD probe right away; F_GETFD on a closed fd fails
        // with EBADF, which is all we want to know.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
    })
}

/// Starts the supervisor for `csa run` and waits for its report.
pub fn launch(global: &GlobalArgs, args: &RunArgs) -> CommandResult {
    let mut sub: Vec<OsString> = vec!["run".into()];
    if let Some(tool) = &args.tool {
        sub.extend(["--tool".into(), tool.into()]);
    }
    if let Some(d) = &args.description {
        sub.extend(["--description".into(), d.into()]);
    }
    let cd = match &args.cd {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    sub.extend(["--cd".into(), cd.into_os_string()]);
    if args.allow_concurrent {
        sub.push("--allow-concurrent".into());
    }
    match args.wait_for_dir {
        Some(WaitFor::Forever) => sub.push("--wait-for-dir".into()),
        Some(WaitFor::AtMost(d)) => {
            sub.push(format!("--wait-for-dir={}s", d.as_secs_f64().ceil()).into());
        }
        None => {}
    }
    if let Some(p) = &args.parent {
        sub.extend(["--parent".into(), p.into()]);
    }
    sub.push("--".into());
    sub.extend(args.command.iter().map(OsString::from));
    spawn_supervisor(global, &sub, args.format)
}

/// Re-executes csa with `sub` (a subcommand line that supervises a turn) as a detached
/// supervisor and waits for its report: prints the session id (JSON with `--format json`) and
/// exits 0, or relays its error and exit code.
pub fn spawn_supervisor(global: &GlobalArgs, sub: &[OsString], format: Format) -> CommandResult {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    fcntl(write.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).map_err(std::io::Error::from)?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    if let Some(dir) = &global.state_dir {
        cmd.arg("--state-dir").arg(dir);
    }
    cmd.args(sub);
    cmd.env(
        READY_ENV,
        std::os::fd::AsRawFd::as_raw_fd(&write).to_string(),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    new_session(&mut cmd);
    let child = cmd.spawn();
    drop(write);
    let mut child = child.map_err(|e| {
        CommandError::new(Exit::Negative, anyhow!("cannot start the supervisor: {e}"))
    })?;
    let mut line = String::new();
    BufReader::new(std::fs::File::from(read)).read_line(&mut line)?;
    let line = line.trim_end();
    if let Some(id) = line.strip_prefix("ok ") {
        print_started(id, format);
        // The supervisor runs on; it is reaped by init when we exit.
        drop(child);
        return Ok(Exit::Success);
    }
    if let Some(rest) = line.strip_prefix("err ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        let exit = match code.parse::<u8>().unwrap_or(1) {
            75 => Exit::Busy,
            126 => Exit::CannotExecute,
            127 => Exit::CommandNotFound,
            2 => Exit::Usage,
            4 => Exit::NotFound,
            3 => Exit::Partial,
            _ => Exit::Negative,
        };
        let message = message.replace("\\n", "\n");
        if format == Format::Json {
            println!(
                "{}",
                serde_json::json!({ "error": message, "exit_code": exit.code() })
            );
        }
        eprintln!("error: {message}");
        return Ok(exit);
    }
    let status = child.wait()?;
    Err(CommandError::new(
        Exit::Negative,
        anyhow!("the supervisor exited ({status}) before reporting"),
    ))
}
