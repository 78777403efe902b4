//! The attach protocol spoken over the session's Unix socket between the supervisor
//! ([`crate::server`]) and a client ([`crate::client`]).
//!
//! # Framing
//! Every message is one frame: a type byte, the payload's length as a 4-byte big-endian
//! unsigned integer, then the payload. A payload longer than [`MAX_PAYLOAD`] bytes, an unknown
//! type or a payload of the wrong length is a protocol error, and the connection is closed.
//! Integers are big-endian; sizes are in character cells.
//!
//! # Client to supervisor
//! | type | message  | payload                                                            |
//! |------|----------|--------------------------------------------------------------------|
//! | 0x01 | `Hello`  | version u16, mode u8 (0 writer, 1 steal, 2 read-only, 3 status), flags u8 (bit 0: replay), cols u16, rows u16 |
//! | 0x02 | `Input`  | bytes for the agent's terminal                                     |
//! | 0x03 | `Resize` | cols u16, rows u16                                                 |
//! | 0x04 | `Detach` | empty                                                              |
//!
//! # Supervisor to client
//! | type | message    | payload                                                          |
//! |------|------------|------------------------------------------------------------------|
//! | 0x81 | `Welcome`  | writer u8 (0/1), cols u16, rows u16 (the terminal's size now)    |
//! | 0x82 | `Repaint`  | bytes that draw the current screen on a terminal (see below)     |
//! | 0x83 | `Output`   | bytes the agent wrote, as it wrote them                          |
//! | 0x84 | `Exit`     | kind u8 (0 exit code, 1 signal), value i32                       |
//! | 0x85 | `Refused`  | reason u8 (see [`Refusal`]), argument u32                        |
//! | 0x86 | `Detached` | reason u8 (0 requested, 1 another client stole the writer, 2 the supervisor is shutting down) |
//! | 0x87 | `Status`   | writer u8 (0/1), read-only watchers u32                          |
//!
//! # Conversation
//! The client sends `Hello` first. The supervisor checks the peer's user (a process of another
//! user gets `Refused` and is closed), then answers a status query with `Status` and closes,
//! refuses with `Refused` and closes, or sends `Welcome` and then either `Output` of
//! everything the agent wrote so far (when the client asked for a replay and the supervisor
//! still has all of it, at most [`crate::server::REPLAY_LIMIT`] bytes) or a `Repaint`, and
//! from then on every `Output` in order. The writer's `Input` goes to the agent's terminal and
//! its `Resize` resizes it; a read-only client's `Input` and `Resize` are ignored. `Detach` is
//! answered with `Detached`, after which the supervisor closes the connection; so is a writer
//! whose place another client took with `steal`. When the agent has ended, every client gets
//! `Exit` and the connection is closed. A client that falls more than
//! [`crate::server::OUTBOX_LIMIT`] bytes behind skips the output it missed and gets a
//! `Repaint` instead.
//!
//! A `Repaint` is the terminal model's (the `vt100` crate's) rendering: `ESC[?1049h` first when
//! the agent uses the alternate screen, then `Screen::state_formatted()`: clear the screen,
//! draw every cell with its attributes, place the cursor, set the input modes (keypad, cursor
//! keys, bracketed paste, mouse reporting).
//!
//! [`VERSION`] changes whenever a message changes; a supervisor refuses a `Hello` of another
//! version with [`Refusal::ProtocolVersion`].

use std::fmt;

use crate::error::{Result, TerminalError};
use crate::exit::AgentExit;
use crate::size::WindowSize;

/// The protocol's version, sent in `Hello`.
pub const VERSION: u16 = 1;

/// The largest payload accepted: 16 MiB (a repaint of the largest screen,
/// [`WindowSize::MAX`] squared cells with attributes, fits).
pub const MAX_PAYLOAD: usize = 16 << 20;

const HEADER: usize = 5;

/// What an attaching client wants to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The writer; refused when another client is the writer.
    Writer,
    /// The writer; the current writer, if any, is told and detached.
    Steal,
    /// A watcher: sees the output, its input and size are ignored.
    ReadOnly,
    /// Only asks for the [`AttachStatus`], then disconnects.
    Status,
}

/// The first message of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The client's protocol version ([`VERSION`]).
    pub version: u16,
    /// What it wants to be.
    pub mode: Mode,
    /// Its terminal's size.
    pub size: WindowSize,
    /// Whether it wants everything the agent wrote since it started (for the client that
    /// started the session) rather than a repaint.
    pub replay: bool,
}

/// Messages from a client to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// See [`Hello`].
    Hello(Hello),
    /// Bytes typed, for the agent's terminal.
    Input(Vec<u8>),
    /// The client's terminal changed size.
    Resize(WindowSize),
    /// The client detaches.
    Detach,
}

/// Why the supervisor refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another client is the writer (its process id, when known).
    WriterAttached {
        /// The writer's process id.
        pid: Option<u32>,
    },
    /// The agent has ended.
    AgentExited,
    /// The client speaks another protocol version than the supervisor.
    ProtocolVersion {
        /// The supervisor's version.
        server: u16,
    },
    /// The client's process runs as another user.
    NotOwner,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::WriterAttached { pid: Some(pid) } => {
                write!(f, "another client (pid {pid}) is attached as the writer")
            }
            Refusal::WriterAttached { pid: None } => {
                write!(f, "another client is attached as the writer")
            }
            Refusal::AgentExited => write!(f, "the agent has exited"),
            Refusal::ProtocolVersion { server } => write!(
                f,
                "the supervisor speaks attach protocol version {server}, this client version {VERSION}"
            ),
            Refusal::NotOwner => write!(f, "the client runs as another user"),
        }
    }
}

/// Why a client was detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachReason {
    /// It asked to (the detach key).
    Requested,
    /// Another client attached with `steal` and is the writer now.
    Stolen,
    /// The supervisor is shutting down without an exit status to report.
    Shutdown,
}

/// Who is attached to a session's terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachStatus {
    /// Whether a client is attached as the writer.
    pub writer: bool,
    /// How many read-only clients are attached.
    pub watchers: u32,
}

impl AttachStatus {
    /// Whether any client is attached.
    pub fn attached(&self) -> bool {
        self.writer || self.watchers > 0
    }
}

/// Messages from the supervisor to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The client is attached.
    Welcome {
        /// Whether it is the writer.
        writer: bool,
        /// The agent's terminal's size now.
        size: WindowSize,
    },
    /// Draws the current screen (see the module doc).
    Repaint(Vec<u8>),
    /// What the agent wrote.
    Output(Vec<u8>),
    /// The agent ended.
    Exit(AgentExit),
    /// The attach is refused.
    Refused(Refusal),
    /// The client is detached.
    Detached(DetachReason),
    /// The answer to a [`Mode::Status`] hello.
    Status(AttachStatus),
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(kind);
    // Payloads are bounded by MAX_PAYLOAD (senders split output into small chunks).
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

fn size_bytes(size: WindowSize) -> [u8; 4] {
    let [c0, c1] = size.cols.to_be_bytes();
    let [r0, r1] = size.rows.to_be_bytes();
    [c0, c1, r0, r1]
}

/// A payload being taken apart, field by field.
struct Fields<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(payload: &'a [u8], what: &'static str) -> Self {
        Fields {
            rest: payload,
            what,
        }
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| TerminalError::Protocol(format!("{} is too short", self.what)))?;
        self.rest = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn size(&mut self) -> Result<WindowSize> {
        Ok(WindowSize {
            cols: self.u16()?,
            rows: self.u16()?,
        })
    }
    fn end(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(TerminalError::Protocol(format!(
                "{} is too long",
                self.what
            )))
        }
    }
    fn bad(&self, field: &str, value: impl fmt::Display) -> TerminalError {
        TerminalError::Protocol(format!("{}: invalid {field} {value}", self.what))
    }
}

impl ClientMessage {
    /// The message as one frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ClientMessage::Hello(hello) => {
                let mode = match hello.mode {
                    Mode::Writer => 0,
                    Mode::Steal => 1,
                    Mode::ReadOnly => 2,
                    Mode::Status => 3,
                };
                let mut payload = hello.version.to_be_bytes().to_vec();
                payload.extend_from_slice(&[mode, u8::from(hello.replay)]);
                payload.extend_from_slice(&size_bytes(hello.size));
                frame(0x01, &payload)
            }
            ClientMessage::Input(bytes) => frame(0x02, bytes),
            ClientMessage::Resize(size) => frame(0x03, &size_bytes(*size)),
            ClientMessage::Detach => frame(0x04, &[]),
        }
    }

    fn decode(kind: u8, payload: Vec<u8>) -> Result<Self> {
        Ok(match kind {
            0x01 => {
                let mut f = Fields::new(&payload, "Hello");
                let version = f.u16()?;
                if version != VERSION {
                    // Another version's hello may have another shape: keep only the version,
                    // so that the supervisor can refuse it by name.
                    return Ok(ClientMessage::Hello(Hello {
                        version,
                        mode: Mode::Status,
                        size: WindowSize::DEFAULT,
                        replay: false,
                    }));
                }
                let mode = match f.u8()? {
                    0 => Mode::Writer,
                    1 => Mode::Steal,
                    2 => Mode::ReadOnly,
                    3 => Mode::Status,
                    other => return Err(f.bad("mode", other)),
                };
                let flags = f.u8()?;
                let size = f.size()?;
                f.end()?;
                ClientMessage::Hello(Hello {
                    version,
                    mode,
                    size,
                    replay: flags & 1 != 0,
                })
            }
            0x02 => ClientMessage::Input(payload),
            0x03 => {
                let mut f = Fields::new(&payload, "Resize");
                let size = f.size()?;
                f.end()?;
                ClientMessage::Resize(size)
            }
            0x04 => {
                Fields::new(&payload, "Detach").end()?;
                ClientMessage::Detach
            }
            other => {
                return Err(TerminalError::Protocol(format!(
                    "unknown client message type {other:#04x}"
                )))
            }
        })
    }
}

impl ServerMessage {
    /// The message as one frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ServerMessage::Welcome { writer, size } => {
                let mut payload = vec![u8::from(*writer)];
                payload.extend_from_slice(&size_bytes(*size));
                frame(0x81, &payload)
            }
            ServerMessage::Repaint(bytes) => frame(0x82, bytes),
            ServerMessage::Output(bytes) => frame(0x83, bytes),
            ServerMessage::Exit(exit) => {
                let (kind, value) = match exit {
                    AgentExit::Code(code) => (0u8, *code),
                    AgentExit::Signal(sig) => (1u8, *sig),
                };
                let mut payload = vec![kind];
                payload.extend_from_slice(&value.to_be_bytes());
                frame(0x84, &payload)
            }
            ServerMessage::Refused(refusal) => {
                let (reason, arg) = match refusal {
                    Refusal::WriterAttached { pid } => (0u8, pid.unwrap_or(0)),
                    Refusal::AgentExited => (1, 0),
                    Refusal::ProtocolVersion { server } => (2, u32::from(*server)),
                    Refusal::NotOwner => (3, 0),
                };
                let mut payload = vec![reason];
                payload.extend_from_slice(&arg.to_be_bytes());
                frame(0x85, &payload)
            }
            ServerMessage::Detached(reason) => frame(
                0x86,
                &[match reason {
                    DetachReason::Requested => 0,
                    DetachReason::Stolen => 1,
                    DetachReason::Shutdown => 2,
                }],
            ),
            ServerMessage::Status(status) => {
                let mut payload = vec![u8::from(status.writer)];
                payload.extend_from_slice(&status.watchers.to_be_bytes());
                frame(0x87, &payload)
            }
        }
    }

    fn decode(kind: u8, payload: Vec<u8>) -> Result<Self> {
        let bool_of = |f: &Fields<'_>, v: u8| match v {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(f.bad("flag", other)),
        };
        Ok(match kind {
            0x81 => {
                let mut f = Fields::new(&payload, "Welcome");
                let writer = f.u8()?;
                let writer = bool_of(&f, writer)?;
                let size = f.size()?;
                f.end()?;
                ServerMessage::Welcome { writer, size }
            }
            0x82 => ServerMessage::Repaint(payload),
            0x83 => ServerMessage::Output(payload),
            0x84 => {
                let mut f = Fields::new(&payload, "Exit");
                let kind = f.u8()?;
                let value = i32::from_be_bytes(f.take()?);
                let exit = match kind {
                    0 => AgentExit::Code(value),
                    1 => AgentExit::Signal(value),
                    other => return Err(f.bad("exit kind", other)),
                };
                f.end()?;
                ServerMessage::Exit(exit)
            }
            0x85 => {
                let mut f = Fields::new(&payload, "Refused");
                let reason = f.u8()?;
                let arg = f.u32()?;
                let refusal = match reason {
                    0 => Refusal::WriterAttached {
                        pid: (arg != 0).then_some(arg),
                    },
                    1 => Refusal::AgentExited,
                    2 => Refusal::ProtocolVersion {
                        server: u16::try_from(arg).map_err(|_| f.bad("version", arg))?,
                    },
                    3 => Refusal::NotOwner,
                    other => return Err(f.bad("refusal", other)),
                };
                f.end()?;
                ServerMessage::Refused(refusal)
            }
            0x86 => {
                let mut f = Fields::new(&payload, "Detached");
                let reason = match f.u8()? {
                    0 => DetachReason::Requested,
                    1 => DetachReason::Stolen,
                    2 => DetachReason::Shutdown,
                    other => return Err(f.bad("reason", other)),
                };
                f.end()?;
                ServerMessage::Detached(reason)
            }
            0x87 => {
                let mut f = Fields::new(&payload, "Status");
                let writer = f.u8()?;
                let writer = bool_of(&f, writer)?;
                let watchers = f.u32()?;
                f.end()?;
                ServerMessage::Status(AttachStatus { writer, watchers })
            }
            other => {
                return Err(TerminalError::Protocol(format!(
                    "unknown supervisor message type {other:#04x}"
                )))
            }
        })
    }
}

/// Reassembles frames from bytes as they arrive on a stream.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether a partial frame is waiting for more bytes.
    pub fn is_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    fn frame(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        let Some(header) = self.buf.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let kind = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_PAYLOAD {
            return Err(TerminalError::Protocol(format!(
                "a message of {len} bytes is larger than the limit of {MAX_PAYLOAD}"
            )));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        Ok(Some((kind, payload)))
    }

    /// The next complete message from a client, if one has arrived.
    ///
    /// # Errors
    /// [`TerminalError::Protocol`] for an oversized, unknown or malformed frame.
    pub fn next_client(&mut self) -> Result<Option<ClientMessage>> {
        self.frame()?
            .map(|(kind, payload)| ClientMessage::decode(kind, payload))
            .transpose()
    }

    /// The next complete message from the supervisor, if one has arrived.
    ///
    /// # Errors
    /// [`TerminalError::Protocol`] for an oversized, unknown or malformed frame.
    pub fn next_server(&mut self) -> Result<Option<ServerMessage>> {
        self.frame()?
            .map(|(kind, payload)| ServerMessage::decode(kind, payload))
            .transpose()
    }
}

/// `send(2)` flags for the socket: no `SIGPIPE` when the other end is gone (where the flag
/// exists; elsewhere Rust programs ignore `SIGPIPE` from startup).
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
const SEND_FLAGS: rustix::net::SendFlags = rustix::net::SendFlags::NOSIGNAL;
#[cfg(any(target_os = "macos", target_os = "ios"))]
const SEND_FLAGS: rustix::net::SendFlags = rustix::net::SendFlags::empty();

/// Sends all of `bytes` on the socket `sock`, blocking while its buffer is full.
///
/// # Errors
/// The send's error (`EPIPE` when the other end has closed).
pub(crate) fn send_all(sock: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::net::send(sock, bytes, SEND_FLAGS) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_byte_by_byte() {
        let size = WindowSize {
            cols: 132,
            rows: 43,
        };
        let clients = [
            ClientMessage::Hello(Hello {
                version: VERSION,
                mode: Mode::Steal,
                size,
                replay: true,
            }),
            ClientMessage::Hello(Hello {
                version: VERSION,
                mode: Mode::ReadOnly,
                size,
                replay: false,
            }),
            ClientMessage::Input(b"\x03hello\x1c".to_vec()),
            ClientMessage::Input(Vec::new()),
            ClientMessage::Resize(size),
            ClientMessage::Detach,
        ];
        let servers = [
            ServerMessage::Welcome { writer: true, size },
            ServerMessage::Repaint(b"\x1b[H\x1b[Jscreen".to_vec()),
            ServerMessage::Output(vec![0xff, 0x00, b'x']),
            ServerMessage::Exit(AgentExit::Code(7)),
            ServerMessage::Exit(AgentExit::Signal(9)),
            ServerMessage::Refused(Refusal::WriterAttached { pid: Some(4242) }),
            ServerMessage::Refused(Refusal::WriterAttached { pid: None }),
            ServerMessage::Refused(Refusal::ProtocolVersion { server: 9 }),
            ServerMessage::Refused(Refusal::AgentExited),
            ServerMessage::Refused(Refusal::NotOwner),
            ServerMessage::Detached(DetachReason::Stolen),
            ServerMessage::Status(AttachStatus {
                writer: true,
                watchers: 3,
            }),
        ];
        // All frames concatenated, fed one byte at a time: each comes out whole, in order.
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        for byte in clients.iter().flat_map(ClientMessage::encode) {
            decoder.push(&[byte]);
            while let Some(message) = decoder.next_client().expect("decode") {
                got.push(message);
            }
        }
        assert_eq!(got, clients);
        assert!(!decoder.is_partial());
        let mut got = Vec::new();
        for byte in servers.iter().flat_map(ServerMessage::encode) {
            decoder.push(&[byte]);
            while let Some(message) = decoder.next_server().expect("decode") {
                got.push(message);
            }
        }
        assert_eq!(got, servers);
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x7f, 0, 0, 0, 0], "unknown"),
            (&[0x03, 0, 0, 0, 1, 9], "too short"),
            (&[0x04, 0, 0, 0, 1, 9], "too long"),
            (
                &[0x01, 0, 0, 0, 8, 0, 1, 9, 0, 0, 80, 0, 24],
                "invalid mode",
            ),
            (&[0x02, 0xff, 0xff, 0xff, 0xff], "larger than the limit"),
        ];
        for (bytes, expected) in cases {
            let mut decoder = Decoder::default();
            decoder.push(bytes);
            let err = decoder.next_client().expect_err("must fail");
            assert!(err.to_string().contains(expected), "{bytes:?}: {err}");
        }
        let mut decoder = Decoder::default();
        decoder.push(&[0x86, 0, 0, 0, 1, 7]);
        assert!(decoder.next_server().is_err());
    }

    #[test]
    fn another_version_is_recognised_whatever_its_shape() {
        let mut decoder = Decoder::default();
        decoder.push(&[0x01, 0, 0, 0, 3, 0, 2, 0xee]);
        match decoder.next_client().expect("decode") {
            Some(ClientMessage::Hello(hello)) => assert_eq!(hello.version, 2),
            other => panic!("{other:?}"),
        }
    }
}
