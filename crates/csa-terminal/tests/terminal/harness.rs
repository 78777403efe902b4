//! The test harness: a supervisor (`csa-terminal serve`, a real process with no terminal of
//! its own) running a real program on a pseudo-terminal, and clients (`csa-terminal attach`)
//! each on a real pseudo-terminal driven through expectrl, whose output is fed to a `vt100`
//! model so that tests read the screen as a person would see it (as tmux's capture-pane).
//! Every wait polls for a condition with a deadline; nothing sleeps to synchronise.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use expectrl::process::unix::WaitStatus;
use rustix::event::{PollFd, PollFlags, Timespec};

/// The harness binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_csa-terminal");

/// How long any expected event may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The full-screen test program: refuses to run without a terminal, shows its size and the
/// keys it got, counts SIGINT as `<INT>`, redraws on SIGWINCH, and exits 7 on `q`.
pub const CURSES_PROGRAM: &str = r#"
import curses, os, signal, sys
if not (sys.stdin.isatty() and sys.stdout.isatty()):
    sys.stderr.write("refusing to run without a terminal\n")
    sys.exit(2)
class Interrupted(Exception): pass
class Resized(Exception): pass
def raiser(exc):
    def handler(sig, frame):
        raise exc()
    return handler
signal.signal(signal.SIGINT, raiser(Interrupted))
signal.signal(signal.SIGWINCH, raiser(Resized))
def main(scr):
    keys = ""
    def draw():
        rows, cols = scr.getmaxyx()
        scr.erase()
        scr.addstr(0, 0, f"SIZE {cols}x{rows}")
        scr.addstr(1, 0, f"KEYS: {keys}")
        scr.addstr(2, 0, "READY")
        scr.refresh()
    draw()
    while True:
        try:
            ch = scr.get_wch()
        except Interrupted:
            keys += "<INT>"
        except Resized:
            size = os.get_terminal_size(sys.stdin.fileno())
            curses.resizeterm(size.lines, size.columns)
        except curses.error:
            pass
        else:
            if ch == "q":
                return 7
            if isinstance(ch, str):
                keys += ch
        draw()
sys.exit(curses.wrapper(main))
"#;

/// A private temporary directory (0700), as a session directory is.
pub fn private_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// Writes the curses program into `dir`; its path.
pub fn curses_program(dir: &Path) -> PathBuf {
    let path = dir.join("screen.py");
    fs_err::write(&path, CURSES_PROGRAM).expect("write the test program");
    path
}

/// Whether python3 with its curses module is there (for [`CURSES_PROGRAM`]); prints the skip
/// reason when not.
pub fn have_curses(test: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", "import curses"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: {test}: python3 with the curses module is not installed");
    }
    found
}

/// Whether `program` is on PATH; prints the skip reason when not.
pub fn have(program: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v \"$1\" >/dev/null", "sh", program])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: {test}: {program} is not installed");
    }
    found
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

/// A process on a real pseudo-terminal (expectrl), with a model of its screen.
pub struct Terminal {
    session: expectrl::session::OsSession,
    master: File,
    screen: vt100::Parser,
    /// Everything the process wrote to its terminal.
    pub raw: Vec<u8>,
    eof: bool,
}

impl Terminal {
    /// Runs `program args…` on a new `cols`×`rows` pseudo-terminal (`stty` sets the size
    /// before the program starts; the arguments go through `"$@"`, never through a shell
    /// string).
    pub fn spawn(cols: u16, rows: u16, script: &str, args: &[&str]) -> Terminal {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("stty cols {cols} rows {rows} && {script}"))
            .arg("sh")
            .args(args);
        let session = expectrl::Session::spawn(cmd).expect("spawn on a pseudo-terminal");
        let master = session
            .get_process()
            .get_raw_handle()
            .expect("the pseudo-terminal's master");
        Terminal {
            session,
            master,
            screen: vt100::Parser::new(
                std::num::NonZeroU16::new(rows).expect("rows"),
                std::num::NonZeroU16::new(cols).expect("cols"),
                0,
            ),
            raw: Vec::new(),
            eof: false,
        }
    }

    /// `csa-terminal attach --dir DIR [extra…]` on a new `cols`×`rows` terminal.
    pub fn attach(sup: &Supervisor, cols: u16, rows: u16, extra: &[&str]) -> Terminal {
        let dir = sup.path().to_str().expect("utf-8 path");
        let mut args = vec![BIN, "attach", "--dir", dir];
        args.extend_from_slice(extra);
        Terminal::spawn(cols, rows, "exec \"$@\"", &args)
    }

    /// Reads what arrives within `timeout`; `false` once the terminal is closed.
    fn pump(&mut self, timeout: Duration) -> bool {
        if self.eof {
            return false;
        }
        let ts = Timespec::try_from(timeout).expect("timespec");
        let mut fds = [PollFd::new(&self.master, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => return true,
            Ok(_) => {}
            Err(e) => panic!("poll: {e}"),
        }
        let mut buf = [0u8; 65536];
        match self.master.read(&mut buf) {
            Ok(0) | Err(_) => {
                // EIO: every process on the terminal has closed it.
                self.eof = true;
                false
            }
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                self.screen.process(&buf[..n]);
                true
            }
        }
    }

    /// The screen's text.
    pub fn text(&self) -> String {
        self.screen.screen().contents()
    }

    /// Waits until `pred` holds for this terminal.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Terminal) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !pred(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || (!self.pump(left.min(Duration::from_millis(200))) && !pred(self)) {
                panic!(
                    "{what}: not seen within {DEADLINE:?}{}; the screen is:\n{}\nraw output: {:?}",
                    if self.eof {
                        " (the terminal closed)"
                    } else {
                        ""
                    },
                    self.text(),
                    String::from_utf8_lossy(&self.raw)
                );
            }
        }
    }

    /// Waits until the screen shows `text`.
    pub fn wait_text(&mut self, text: &str) {
        self.wait_for(&format!("{text:?} on the screen"), |t| {
            t.text().contains(text)
        });
    }

    /// Waits until the raw output contains `text` (for lines a shell prints).
    pub fn wait_raw(&mut self, text: &str) {
        self.wait_for(&format!("{text:?} in the output"), |t| {
            String::from_utf8_lossy(&t.raw).contains(text)
        });
    }

    /// Types `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("type on the terminal");
    }

    /// Resizes the terminal (the kernel sends SIGWINCH to its foreground process group).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.session
            .get_process_mut()
            .set_window_size(cols, rows)
            .expect("resize the terminal");
        self.screen.set_size(
            std::num::NonZeroU16::new(rows).expect("rows"),
            std::num::NonZeroU16::new(cols).expect("cols"),
        );
    }

    /// The terminal's modes, as the process on it sees them (on Linux the master's termios is
    /// the slave's).
    pub fn modes(&self) -> rustix::termios::Termios {
        rustix::termios::tcgetattr(self.master.as_fd()).expect("tcgetattr")
    }

    /// Whether the terminal is in raw mode (no canonical input, no signal keys).
    pub fn is_raw(&self) -> bool {
        use rustix::termios::LocalModes;
        !self
            .modes()
            .local_modes
            .intersects(LocalModes::ICANON | LocalModes::ISIG)
    }

    /// Reads until the terminal closes, then reaps the process: its exit code, or 128 + the
    /// signal that killed it.
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + DEADLINE;
        while self.pump(Duration::from_millis(200)) {
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {DEADLINE:?}; the screen is:\n{}",
                self.text()
            );
        }
        match self.session.get_process().wait().expect("wait") {
            WaitStatus::Exited(_, code) => code,
            WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
            other => panic!("unexpected wait status {other:?}"),
        }
    }

    /// The raw output as text.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// Waits until process `pid` is gone or a zombie.
pub fn wait_dead(pid: u32) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok();
        // The state is the field after the parenthesised command name.
        let state = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(") "))
            .and_then(|(_, rest)| rest.chars().next());
        if matches!(state, None | Some('Z' | 'X')) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} still runs (state {state:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
