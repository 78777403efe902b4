//! `csa-terminal`: this crate's supervisor and client on their own, without csa's session
//! store. The integration tests drive it (a supervisor in one process, clients on real
//! pseudo-terminals in others), and it shows the calls a supervisor makes.
//!
//! - `csa-terminal serve --dir DIR [--cols N] [--rows N] [--term TERM] -- PROGRAM [ARGS…]`
//!   runs PROGRAM on a new pseudo-terminal, records to DIR/output.log and DIR/output.cast,
//!   serves DIR/attach.sock, prints `ready agent=PID` and then `status writer=BOOL
//!   watchers=N` on every change on stdout, and exits with PROGRAM's status.
//! - `csa-terminal attach --dir DIR [--read-only | --steal] [--replay]` attaches this terminal;
//!   it exits with the agent's status when the agent ends, 0 when detached, 75 when refused,
//!   1 on other errors, and as the signal would when it gets SIGTERM, SIGHUP, SIGINT or
//!   SIGQUIT.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::{Parser, Subcommand};
use csa_terminal::{
    attach, AgentExit, AttachOptions, CastHeader, CastWriter, Mode, Outcome, Pty, Server,
    ServerOptions, TerminalError, WindowSize,
};
use rustix::fs::{Mode as FileMode, OFlags};

#[derive(Parser)]
#[command(about = "Run a program on a pseudo-terminal you can attach to (csa-terminal's harness)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run PROGRAM on a pseudo-terminal served on DIR/attach.sock.
    Serve {
        /// The directory of the socket and recordings.
        #[arg(long)]
        dir: PathBuf,
        /// The terminal's initial width.
        #[arg(long, default_value_t = 80)]
        cols: u16,
        /// The terminal's initial height.
        #[arg(long, default_value_t = 24)]
        rows: u16,
        /// The program's TERM.
        #[arg(long, default_value = "xterm-256color")]
        term: String,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Attach this terminal to the program served in DIR.
    Attach {
        /// The directory of the socket.
        #[arg(long)]
        dir: PathBuf,
        /// Watch only.
        #[arg(long, conflicts_with = "steal")]
        read_only: bool,
        /// Take the writer's place from the attached writer.
        #[arg(long)]
        steal: bool,
        /// Replay the output from the start instead of a repaint.
        #[arg(long)]
        replay: bool,
    },
}

fn open_dir(path: &Path) -> Result<OwnedFd, TerminalError> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        FileMode::empty(),
    )
    .map_err(|e| TerminalError::io(format!("open {}", path.display()), e.into()))
}

fn create_in(dir: &OwnedFd, dir_path: &Path, name: &str) -> Result<File, TerminalError> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        FileMode::from_raw_mode(0o600),
    )
    .map(File::from)
    .map_err(|e| TerminalError::io(format!("open {}", dir_path.join(name).display()), e.into()))
}

fn serve(
    dir_path: &Path,
    size: WindowSize,
    term: &str,
    command: &[String],
) -> Result<AgentExit, TerminalError> {
    let dir = open_dir(dir_path)?;
    let log = create_in(&dir, dir_path, "output.log")?;
    let cast = create_in(&dir, dir_path, "output.cast")?;
    let cast = CastWriter::create(cast, &CastHeader::now(size, Some(term.to_owned())))
        .map_err(|e| TerminalError::io("write output.cast", e))?;
    let pty = Pty::open(size)?;
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).env("TERM", term);
    pty.configure(&mut cmd)?;
    let mut child = cmd
        .spawn()
        .map_err(|e| TerminalError::io(format!("start {}", command[0]), e))?;
    drop(cmd);
    let options = ServerOptions {
        log: Some(log),
        cast: Some(cast),
        on_status: Some(Box::new(|status| {
            println!(
                "status writer={} watchers={}",
                status.writer, status.watchers
            );
        })),
    };
    let server = Server::start(pty.into_master(), dir.as_fd(), dir_path, options)?;
    println!("ready agent={}", child.id());
    let status = child
        .wait()
        .map_err(|e| TerminalError::io("wait for the program", e))?;
    let exit = AgentExit::from_status(status);
    server.finish(exit, Duration::from_millis(500));
    println!("exited {exit:?}");
    Ok(exit)
}

fn report(err: &TerminalError) {
    let mut text = format!("error: {err}\n");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!("caused by: {cause}\n"));
        source = cause.source();
    }
    if let Some(hint) = err.hint() {
        text.push_str(&format!("hint: {hint}\n"));
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Serve {
            dir,
            cols,
            rows,
            term,
            command,
        } => match serve(&dir, WindowSize { cols, rows }, &term, &command) {
            Ok(exit) => ExitCode::from(exit.shell_code()),
            Err(err) => {
                report(&err);
                ExitCode::from(1)
            }
        },
        Cmd::Attach {
            dir,
            read_only,
            steal,
            replay,
        } => {
            let mode = match (read_only, steal) {
                (true, _) => Mode::ReadOnly,
                (false, true) => Mode::Steal,
                (false, false) => Mode::Writer,
            };
            let outcome = open_dir(&dir)
                .and_then(|fd| attach(fd.as_fd(), &dir, AttachOptions { mode, replay }));
            match outcome {
                Ok(Outcome::Exited(exit)) => {
                    eprintln!("\r\n[the program exited: {exit:?}]");
                    ExitCode::from(exit.shell_code())
                }
                Ok(Outcome::Detached(reason)) => {
                    eprintln!("\r\n[detached: {reason:?}]");
                    ExitCode::SUCCESS
                }
                Ok(Outcome::Signalled(sig)) => {
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                    ExitCode::from(u8::try_from(128 + sig).unwrap_or(1))
                }
                Ok(Outcome::ConnectionLost) => {
                    eprintln!("\r\nerror: the connection to the supervisor was lost");
                    ExitCode::from(1)
                }
                Err(err) => {
                    report(&err);
                    ExitCode::from(if matches!(err, TerminalError::Refused(_)) {
                        75
                    } else {
                        1
                    })
                }
            }
        }
    }
}
