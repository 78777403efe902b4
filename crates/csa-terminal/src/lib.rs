//! Pseudo-terminals for interactive csa sessions: an agent such as `claude` or `vim` runs on a
//! pseudo-terminal owned by its session's supervisor, and people attach to it, detach from it
//! and attach again, as with tmux, but with the session tracked by csa like any other.
//!
//! # The model
//! - The **supervisor** (a detached csa process without a controlling terminal) opens a
//!   [`Pty`], spawns the agent on its slave ([`Pty::configure`]: a new session with the slave
//!   as controlling terminal and as stdin, stdout and stderr), and runs a [`Server`] on the
//!   master: everything the agent writes goes to `output.log` (raw), `output.cast` (asciicast
//!   v2, [`asciicast`]) and a terminal-state model (the `vt100` crate) that repaints the
//!   screen for a client attaching later; the server listens on `attach.sock` in the session
//!   directory ([`socket`]). When the agent has ended, [`Server::finish`] sends its exit status
//!   to the attached clients. If the supervisor dies, the master closes and the kernel hangs up
//!   the terminal: the agent gets `SIGHUP`, as a program in a closed terminal window does.
//! - A **client** ([`attach`]) puts the user's terminal in raw mode and relays bytes both ways
//!   until the agent exits (the client reports the agent's exit status), the user detaches,
//!   or another client steals the writer's place. `csa run --tty` in the foreground starts the
//!   supervisor, then is a client (with `replay`); `csa session attach` is a client.
//! - **One writer**: the first client is the writer; another writer is refused unless it asks
//!   to steal, and read-only clients only watch (their keys other than the detach key are
//!   ignored, their window size is not applied). When a writer attaches, the agent's terminal
//!   takes the writer's size (the agent gets `SIGWINCH`) and the client is sent a repaint.
//!
//! # Keys
//! **Detach: `Ctrl-\` then `d`.** `Ctrl-\` twice sends one `Ctrl-\` (the agent's `SIGQUIT`
//! key); `Ctrl-\` then any other key sends both ([`detach_key`]). Every other key, `Ctrl-C`
//! included, goes to the agent as typed.
//!
//! # Protocol
//! Length-prefixed frames over the Unix socket, documented in [`protocol`].
//!
//! # Status
//! [`Server::status`] and the [`ServerOptions::on_status`] callback (called on every change)
//! tell whether a writer and how many read-only watchers are attached, for `csa session
//! list`; another process can ask a live supervisor with [`query_status`].
//!
//! # Logs
//! [`strip_escapes`] turns an interactive session's raw log into text for `csa session logs`;
//! [`asciicast::parse`] reads a recording back.

//! # What the supervisor does around it
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (dir, dir_path, log, cast_file) = todo_open_session_dir();
//! use std::os::fd::AsFd;
//! use csa_terminal::*;
//! // The foreground terminal's size, measured by the csa that launches the supervisor
//! // (WindowSize::of_terminal(stdout)), or WindowSize::DEFAULT when there is none.
//! let size = WindowSize::DEFAULT;
//! let pty = Pty::open(size)?;
//! let mut cmd = std::process::Command::new("claude");
//! cmd.env("TERM", "xterm-256color"); // the user's TERM when there is one
//! pty.configure(&mut cmd)?; // stdio and setsid + TIOCSCTTY: instead of another setsid
//! let child = cmd.spawn()?;
//! drop(cmd); // the slave copies it holds must close, or the end of output is never seen
//! let cast = CastWriter::create(cast_file, &CastHeader::now(size, Some("xterm-256color".into())))?;
//! let server = Server::start(pty.into_master(), dir.as_fd(), &dir_path, ServerOptions {
//!     log: Some(log),
//!     cast: Some(cast),
//!     on_status: Some(Box::new(|status| { /* write the session's attach status */ })),
//! })?;
//! // Only now report "running" to the launching csa: the socket exists.
//! // … wait for the agent as for any session (waitid, forward signals, reap) …
//! # let status: std::process::ExitStatus = unimplemented!();
//! server.finish(AgentExit::from_status(status), std::time::Duration::from_millis(500));
//! # Ok(()) }
//! # fn todo_open_session_dir() -> (std::fs::File, std::path::PathBuf, std::fs::File, std::fs::File) { unimplemented!() }
//! ```
//! The server needs no signal handling and no particular file descriptors from the
//! supervisor; its threads are its own. The foreground client is [`attach`] with
//! [`Mode::Writer`] and `replay: true`; it installs its own handlers for `SIGWINCH`,
//! `SIGTERM`, `SIGHUP`, `SIGINT` and `SIGQUIT` while it runs.

#![warn(missing_docs)]

pub mod asciicast;
pub mod client;
pub mod detach_key;
pub mod error;
pub mod exit;
mod outbox;
pub mod peer;
pub mod plain_text;
pub mod protocol;
pub mod pty;
pub mod raw_mode;
pub mod server;
pub mod size;
pub mod socket;
#[cfg(feature = "testing")]
pub mod testing;

pub use asciicast::{CastHeader, CastWriter};
pub use client::{attach, query_status, AttachOptions, Outcome};
pub use error::{Result, TerminalError};
pub use exit::AgentExit;
pub use plain_text::{strip_escapes, PlainText};
pub use protocol::{AttachStatus, DetachReason, Mode, Refusal};
pub use pty::{Pty, PtyMaster};
pub use raw_mode::RawMode;
pub use server::{Server, ServerOptions, StatusCallback};
pub use size::WindowSize;
