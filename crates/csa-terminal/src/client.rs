//! The attach client: connects the user's terminal (this process's stdin and stdout) to a
//! session's supervisor until the agent exits, the user detaches, another client steals the
//! writer's place, or this process gets a terminating signal.
//!
//! While attached, the user's terminal is in raw mode ([`crate::raw_mode`]); typed bytes go to
//! the agent unchanged (`^C` is byte 0x03, which the agent's terminal turns into `SIGINT`),
//! except the detach key `Ctrl-\` `d` ([`crate::detach_key`]); the agent's output is written to
//! stdout byte for byte. The window size is sent on connect and on every `SIGWINCH`.
//!
//! On every way out the client leaves the user's terminal as it found it: the terminal modes
//! are restored, and display modes the agent left on (the alternate screen, a hidden cursor,
//! mouse reporting, bracketed paste, application keypad and cursor keys; tracked by the
//! client's own `vt100` model of what it displayed) are switched off. `SIGTERM`, `SIGHUP`,
//! `SIGINT` and `SIGQUIT` delivered to the process end the attach with
//! [`Outcome::Signalled`]: the handlers are installed (signal-hook) for the duration of
//! [`attach`] and removed before it returns; signal-hook cannot reinstate the default action,
//! so the caller should end the process promptly, as the signal would have (see
//! [`Outcome::Signalled`]).

use std::io::Read;
use std::num::NonZeroU16;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};

use crate::detach_key::DetachKey;
use crate::error::{Result, TerminalError};
use crate::exit::AgentExit;
use crate::protocol::{
    self, AttachStatus, ClientMessage, Decoder, DetachReason, Hello, Mode, ServerMessage,
};
use crate::raw_mode::RawMode;
use crate::server::HANDSHAKE_TIMEOUT;
use crate::size::WindowSize;
use crate::socket;

/// How long a detaching client waits for the supervisor's `Detached`: 2 seconds.
const DETACH_TIMEOUT: Duration = Duration::from_secs(2);

/// The signals that end an attach.
const TERMINATING: [i32; 4] = [SIGTERM, SIGHUP, SIGINT, SIGQUIT];

/// How to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachOptions {
    /// [`Mode::Writer`], [`Mode::Steal`] or [`Mode::ReadOnly`] ([`Mode::Status`] is
    /// [`query_status`]'s).
    pub mode: Mode,
    /// Ask for everything the agent wrote so far instead of a repaint (for the client that
    /// started the session: its user sees the output from the first byte, as without csa).
    pub replay: bool,
}

/// How an attach ended. The user's terminal is restored in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The agent ended; a foreground `csa run` exits with [`AgentExit::shell_code`].
    Exited(AgentExit),
    /// The client was detached; the agent goes on running.
    Detached(DetachReason),
    /// This process got this signal. Its handler is removed but the default action is not
    /// reinstated: end the process as the signal would have, e.g. with
    /// `signal_hook::low_level::emulate_default_handler(sig)`, or exit with 128 + sig.
    Signalled(i32),
    /// The supervisor closed the connection without a word: it died. The agent lost its
    /// terminal with it (`SIGHUP`).
    ConnectionLost,
}

/// Attaches this process's terminal (stdin, stdout) to the session whose directory is `dir`
/// (opened without following links and verified by the caller; `dir_path` is its path), per
/// the module doc. Raw mode is set only when stdin is a terminal, and only once the supervisor
/// has accepted the client, so a refusal is printed on a terminal in its normal modes.
///
/// # Errors
/// Connecting ([`socket::connect`]: no socket, an insecure one, another user's peer);
/// [`TerminalError::Refused`] (another writer is attached, the agent has exited, another
/// protocol version); [`TerminalError::Protocol`]; [`TerminalError::Io`] when the terminal's
/// modes cannot be set, a signal handler cannot be installed, or writing to stdout fails.
pub fn attach(dir: BorrowedFd<'_>, dir_path: &Path, options: AttachOptions) -> Result<Outcome> {
    let stdin = rustix::stdio::stdin();
    let stdout = rustix::stdio::stdout();
    let mut stream = socket::connect(dir, dir_path)?;
    let signals = SignalPipe::install()?;
    let size = WindowSize::of_terminal(stdout)
        .or_else(|| WindowSize::of_terminal(stdin))
        .unwrap_or(WindowSize::DEFAULT);
    let hello = Hello {
        version: protocol::VERSION,
        mode: options.mode,
        size,
        replay: options.replay,
    };
    let mut decoder = Decoder::default();
    let (writer, server_size) = match handshake(&mut stream, &mut decoder, &hello)? {
        ServerMessage::Welcome { writer, size } => (writer, size),
        ServerMessage::Refused(refusal) => return Err(TerminalError::Refused(refusal)),
        other => {
            return Err(TerminalError::Protocol(format!(
                "expected a welcome, got {other:?}"
            )))
        }
    };
    let raw = if rustix::termios::isatty(stdin) {
        Some(RawMode::enable(stdin)?)
    } else {
        None
    };
    let mut session = Attached {
        stream: &stream,
        decoder,
        writer,
        signals: &signals,
        keys: DetachKey::default(),
        model: vt100::Parser::new(nonzero(server_size.rows), nonzero(server_size.cols), 0),
        size,
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let sender = {
        let stream = stream
            .try_clone()
            .map_err(|e| TerminalError::io("duplicate the attach socket", e))?;
        thread::spawn(move || {
            for frame in rx {
                if protocol::send_all(stream.as_fd(), &frame).is_err() {
                    break;
                }
            }
        })
    };
    let outcome = session.run(stdin, stdout, &tx);
    let _ = write_all(stdout, &display_resets(session.model.screen()));
    drop(raw);
    drop(tx);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    drop(signals);
    outcome
}

/// Asks the supervisor of the session in `dir` who is attached, without attaching.
///
/// # Errors
/// As [`attach`]'s connection and handshake errors.
pub fn query_status(dir: BorrowedFd<'_>, dir_path: &Path) -> Result<AttachStatus> {
    let mut stream = socket::connect(dir, dir_path)?;
    let hello = Hello {
        version: protocol::VERSION,
        mode: Mode::Status,
        size: WindowSize::DEFAULT,
        replay: false,
    };
    match handshake(&mut stream, &mut Decoder::default(), &hello)? {
        ServerMessage::Status(status) => Ok(status),
        ServerMessage::Refused(refusal) => Err(TerminalError::Refused(refusal)),
        other => Err(TerminalError::Protocol(format!(
            "expected a status, got {other:?}"
        ))),
    }
}

/// Sends `hello` and reads the first answer, waiting at most [`HANDSHAKE_TIMEOUT`].
fn handshake(
    stream: &mut UnixStream,
    decoder: &mut Decoder,
    hello: &Hello,
) -> Result<ServerMessage> {
    protocol::send_all(stream.as_fd(), &ClientMessage::Hello(*hello).encode())
        .map_err(|e| TerminalError::io("send to the supervisor", e))?;
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| TerminalError::io("set a timeout on the attach socket", e))?;
    let mut buf = [0u8; 16 * 1024];
    let first = loop {
        if let Some(message) = decoder.next_server()? {
            break message;
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                return Err(TerminalError::Protocol(
                    "the supervisor closed the connection without answering".to_owned(),
                ))
            }
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TerminalError::io("read from the supervisor", e)),
        }
    };
    stream
        .set_read_timeout(None)
        .map_err(|e| TerminalError::io("clear the attach socket's timeout", e))?;
    Ok(first)
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Escape sequences that switch off what the agent left on, per the client's model of the
/// display (xterm control sequences).
fn display_resets(screen: &vt100::Screen) -> Vec<u8> {
    let mut out = Vec::new();
    if screen.mouse_protocol_mode() != vt100::MouseProtocolMode::None {
        out.extend_from_slice(b"\x1b[?1000l\x1b[?1002l\x1b[?1003l");
    }
    if screen.mouse_protocol_encoding() != vt100::MouseProtocolEncoding::Default {
        out.extend_from_slice(b"\x1b[?1005l\x1b[?1006l");
    }
    if screen.bracketed_paste() {
        out.extend_from_slice(b"\x1b[?2004l");
    }
    if screen.application_cursor() {
        out.extend_from_slice(b"\x1b[?1l");
    }
    if screen.application_keypad() {
        out.extend_from_slice(b"\x1b>");
    }
    if screen.hide_cursor() {
        out.extend_from_slice(b"\x1b[?25h");
    }
    if screen.alternate_screen() {
        out.extend_from_slice(b"\x1b[?1049l");
    }
    out
}

/// The signals of an attach: a flag per signal and one self-pipe that wakes the loop.
struct SignalPipe {
    wake: UnixStream,
    flags: Vec<(i32, Arc<AtomicBool>)>,
    ids: Vec<signal_hook::SigId>,
}

impl SignalPipe {
    fn install() -> Result<SignalPipe> {
        let err = |e| TerminalError::io("install signal handlers", e);
        let (wake, notify) = UnixStream::pair().map_err(err)?;
        wake.set_nonblocking(true).map_err(err)?;
        let mut pipe = SignalPipe {
            wake,
            flags: Vec::new(),
            ids: Vec::new(),
        };
        for sig in std::iter::once(SIGWINCH).chain(TERMINATING) {
            let flag = Arc::new(AtomicBool::new(false));
            // The flag first, then the wake-up: the loop drains the pipe, then reads flags.
            pipe.ids
                .push(signal_hook::flag::register(sig, flag.clone()).map_err(err)?);
            pipe.ids.push(
                signal_hook::low_level::pipe::register(sig, notify.try_clone().map_err(err)?)
                    .map_err(err)?,
            );
            pipe.flags.push((sig, flag));
        }
        Ok(pipe)
    }

    /// Empties the pipe, then takes the signals that arrived.
    fn take(&self) -> Vec<i32> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::SeqCst))
            .map(|(sig, _)| *sig)
            .collect()
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

struct Attached<'a> {
    stream: &'a UnixStream,
    decoder: Decoder,
    writer: bool,
    signals: &'a SignalPipe,
    keys: DetachKey,
    model: vt100::Parser,
    size: WindowSize,
}

impl Attached<'_> {
    fn run(
        &mut self,
        stdin: BorrowedFd<'_>,
        stdout: BorrowedFd<'_>,
        tx: &mpsc::Sender<Vec<u8>>,
    ) -> Result<Outcome> {
        // Frames that arrived with the welcome.
        if let Some(outcome) = self.drain_messages(stdout)? {
            return Ok(outcome);
        }
        let mut stdin_open = true;
        let mut detaching: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let timeout = detaching.map(|deadline| {
                let left = deadline.saturating_duration_since(Instant::now());
                Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                })
            });
            let (signal_ready, socket_ready, stdin_ready) = {
                let mut fds = vec![
                    PollFd::new(&self.signals.wake, PollFlags::IN),
                    PollFd::new(self.stream, PollFlags::IN),
                ];
                if stdin_open && detaching.is_none() {
                    fds.push(PollFd::new(&stdin, PollFlags::IN));
                }
                match rustix::event::poll(&mut fds, timeout.as_ref()) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(TerminalError::io("poll", e.into())),
                }
                let ready = |i: usize| fds.get(i).is_some_and(|fd| !fd.revents().is_empty());
                (ready(0), ready(1), ready(2))
            };
            if let Some(deadline) = detaching {
                if Instant::now() >= deadline && !socket_ready {
                    // The supervisor did not confirm; the client is gone for it all the same.
                    return Ok(Outcome::Detached(DetachReason::Requested));
                }
            }
            if signal_ready {
                for sig in self.signals.take() {
                    if TERMINATING.contains(&sig) {
                        return Ok(Outcome::Signalled(sig));
                    }
                    if sig == SIGWINCH && self.writer {
                        if let Some(size) = WindowSize::of_terminal(stdout) {
                            if size != self.size {
                                self.size = size;
                                self.model.set_size(nonzero(size.rows), nonzero(size.cols));
                                let _ = tx.send(ClientMessage::Resize(size).encode());
                            }
                        }
                    }
                }
            }
            if socket_ready {
                let n = match (&*self.stream).read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                if n == 0 {
                    return Ok(if detaching.is_some() {
                        Outcome::Detached(DetachReason::Requested)
                    } else {
                        Outcome::ConnectionLost
                    });
                }
                self.decoder.push(&buf[..n]);
                if let Some(outcome) = self.drain_messages(stdout)? {
                    return Ok(outcome);
                }
            }
            if stdin_ready {
                let n = match rustix::io::read(stdin, &mut buf) {
                    Ok(n) => n,
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                    Err(_) => 0,
                };
                if n == 0 {
                    stdin_open = false;
                    continue;
                }
                let keys = self.keys.feed(&buf[..n]);
                if self.writer && !keys.forward.is_empty() {
                    let _ = tx.send(ClientMessage::Input(keys.forward).encode());
                }
                if keys.detach {
                    let _ = tx.send(ClientMessage::Detach.encode());
                    detaching = Some(Instant::now() + DETACH_TIMEOUT);
                }
            }
        }
    }

    /// Handles every complete message received; the outcome when one ends the attach.
    fn drain_messages(&mut self, stdout: BorrowedFd<'_>) -> Result<Option<Outcome>> {
        while let Some(message) = self.decoder.next_server()? {
            match message {
                ServerMessage::Output(bytes) | ServerMessage::Repaint(bytes) => {
                    write_all(stdout, &bytes)
                        .map_err(|e| TerminalError::io("write to the terminal", e))?;
                    self.model.process(&bytes);
                }
                ServerMessage::Exit(exit) => return Ok(Some(Outcome::Exited(exit))),
                ServerMessage::Detached(reason) => return Ok(Some(Outcome::Detached(reason))),
                other => {
                    return Err(TerminalError::Protocol(format!(
                        "unexpected message while attached: {other:?}"
                    )))
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_what_the_agent_left_on_and_nothing_else() {
        let mut model = vt100::Parser::new(nonzero(24), nonzero(80), 0);
        model.process(b"plain text");
        assert!(display_resets(model.screen()).is_empty());
        model.process(b"\x1b[?1049h\x1b[?25l\x1b[?2004h\x1b[?1000h\x1b[?1006h");
        let resets = String::from_utf8(display_resets(model.screen())).expect("utf8");
        for expected in [
            "\x1b[?1049l",
            "\x1b[?25h",
            "\x1b[?2004l",
            "\x1b[?1000l",
            "\x1b[?1006l",
        ] {
            assert!(resets.contains(expected), "{resets:?} lacks {expected:?}");
        }
        // Replayed through a model, the resets leave it as a fresh terminal.
        model.process(resets.as_bytes());
        assert!(display_resets(model.screen()).is_empty());
    }
}
