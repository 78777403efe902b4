//! Test support (feature `testing`): a process on a real pseudo-terminal, driven as a person
//! would drive it, with a model of its screen (as tmux's `capture-pane` shows it), and the
//! full-screen program the tests run. Used by this crate's tests and by the `csa` binary's.
//! Every wait polls for a condition with a deadline; nothing sleeps to synchronise.

#![allow(missing_docs, clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use expectrl::process::unix::WaitStatus;
use rustix::event::{PollFd, PollFlags, Timespec};

/// How long any expected event may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The full-screen test program: refuses to run without a terminal, shows its size and the
/// keys it got, counts SIGINT as `<INT>`, redraws on SIGWINCH, and exits 7 on `q`.
pub const CURSES_PROGRAM: &str = r#"
import curses, os, signal, sys
if not (sys.stdin.isatty() and sys.stdout.isatty()):
    sys.stderr.write("refusing to run without a terminal\n")
    sys.exit(2)
# Signal handlers only set flags: an exception raised from a handler could land anywhere (in
# the middle of a redraw) and end the program. The input wait wakes up every 50 ms to look.
pending = {"int": 0, "winch": False}
def on_int(sig, frame):
    pending["int"] += 1
def on_winch(sig, frame):
    pending["winch"] = True
signal.signal(signal.SIGINT, on_int)
signal.signal(signal.SIGWINCH, on_winch)
def main(scr):
    keys = ""
    scr.timeout(50)
    def draw():
        rows, cols = scr.getmaxyx()
        scr.erase()
        for y, text in enumerate([f"SIZE {cols}x{rows}", f"KEYS: {keys}", "READY"]):
            try:
                scr.addstr(y, 0, text[: max(cols - 1, 0)])
            except curses.error:
                pass
        scr.refresh()
    draw()
    while True:
        try:
            ch = scr.get_wch()
        except curses.error:
            ch = None
        if pending["winch"]:
            pending["winch"] = False
            size = os.get_terminal_size(sys.stdin.fileno())
            curses.resizeterm(size.lines, size.columns)
        while pending["int"] > 0:
            pending["int"] -= 1
            keys += "<INT>"
        if ch == "q":
            return 7
        if isinstance(ch, str):
            keys += ch
        draw()
sys.exit(curses.wrapper(main))
"#;

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

/// A process on a real pseudo-terminal (expectrl), with a model of its screen.
#[allow(missing_debug_implementations)]
pub struct Terminal {
    session: expectrl::session::OsSession,
    master: File,
    screen: vt100::Parser,
    /// Everything the process wrote to its terminal.
    pub raw: Vec<u8>,
    eof: bool,
}

impl Terminal {
    /// Runs `script` (with `args` as `"$@"`, never through a shell string) on a new
    /// `cols`×`rows` pseudo-terminal. The script starts only once the terminal has its size:
    /// expectrl (ptyprocess) sets 80x24 on the master *after* the child has started, so a size
    /// the child set itself (`stty`) could be overwritten while the program reads it. Here the
    /// child waits for a line that is sent only after the size is set.
    pub fn spawn(cols: u16, rows: u16, script: &str, args: &[&str]) -> Terminal {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("IFS= read -r _ && {script}"))
            .arg("sh")
            .args(args);
        let mut session = expectrl::Session::spawn(cmd).expect("spawn on a pseudo-terminal");
        session
            .get_process_mut()
            .set_window_size(cols, rows)
            .expect("set the terminal's size");
        let mut master = session
            .get_process()
            .get_raw_handle()
            .expect("the pseudo-terminal's master");
        // Echo is off (ptyprocess turns it off before the exec), so the line leaves no trace.
        master.write_all(b"\n").expect("start the script");
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
