//! The test harness: a supervisor (`csa-terminal serve`, a real process with no terminal of
//! its own) running a real program on a pseudo-terminal, and clients (`csa-terminal attach`)
//! each on a real pseudo-terminal driven through expectrl, whose output is fed to a `vt100`
//! model so that tests read the screen as a person would see it (as tmux's capture-pane).
//! Every wait polls for a condition with a deadline; nothing sleeps to synchronise.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Instant;

/// The harness binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_csa-terminal");

pub use csa_terminal::testing::{curses_program, have, have_curses, wait_dead, Terminal, DEADLINE};

/// A private temporary directory (0700), as a session directory is.
pub fn private_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// A running `csa-terminal serve`.
pub struct Supervisor {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// The last `status` line, as (writer, watchers).
    pub status: (bool, u32),
    /// The agent's process id.
    pub agent: u32,
    /// The session directory (socket, output.log, output.cast).
    pub dir: tempfile::TempDir,
}

impl Supervisor {
    /// Starts `command` on a `cols`×`rows` terminal and waits until it is served.
    pub fn start(cols: u16, rows: u16, command: &[&str]) -> Supervisor {
        let dir = private_dir();
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--dir")
            .arg(dir.path())
            .args(["--cols", &cols.to_string(), "--rows", &rows.to_string()])
            .arg("--")
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start csa-terminal serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sup = Supervisor {
            child,
            lines,
            seen: Vec::new(),
            status: (false, 0),
            agent: 0,
            dir,
        };
        let ready = sup.wait_line("ready", |l| l.starts_with("ready agent="));
        sup.agent = ready["ready agent=".len()..].parse().expect("agent pid");
        sup
    }

    /// The session directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Waits for a line of the supervisor's stdout that satisfies `pred`.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("status ") {
                        let mut writer = false;
                        let mut watchers = 0;
                        for field in rest.split(' ') {
                            match field.split_once('=') {
                                Some(("writer", v)) => writer = v == "true",
                                Some(("watchers", v)) => watchers = v.parse().expect("count"),
                                _ => {}
                            }
                        }
                        self.status = (writer, watchers);
                    }
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the supervisor did not print {what} within {DEADLINE:?}; it printed {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits until the supervisor reports this attach status.
    pub fn wait_status(&mut self, writer: bool, watchers: u32) {
        if self.status == (writer, watchers) {
            return;
        }
        let want = format!("status writer={writer} watchers={watchers}");
        self.wait_line(&want, |l| l == want);
    }

    /// Waits for the supervisor to exit (after the agent).
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.wait_line("the agent's exit", |l| l.starts_with("exited "));
        self.child.wait().expect("wait for the supervisor")
    }

    /// Kills the supervisor with SIGKILL and reaps it.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9 the supervisor");
        self.child.wait().expect("reap the supervisor");
    }

    /// The session's output.log.
    pub fn log(&self) -> Vec<u8> {
        fs_err::read(self.path().join("output.log")).expect("read output.log")
    }

    /// The session's output.cast.
    pub fn cast(&self) -> String {
        fs_err::read_to_string(self.path().join("output.cast")).expect("read output.cast")
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `csa-terminal attach --dir DIR [extra…]` on a new `cols`×`rows` terminal.
pub fn attach(sup: &Supervisor, cols: u16, rows: u16, extra: &[&str]) -> Terminal {
    let dir = sup.path().to_str().expect("utf-8 path");
    let mut args = vec![BIN, "attach", "--dir", dir];
    args.extend_from_slice(extra);
    Terminal::spawn(cols, rows, "exec \"$@\"", &args)
}
