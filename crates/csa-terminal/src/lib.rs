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

pub use asciicast::{CastHeader, CastWriter};
pub use client::{attach, query_status, AttachOptions, Outcome};
pub use error::{Result, TerminalError};
pub use exit::AgentExit;
pub use plain_text::strip_escapes;
pub use protocol::{AttachStatus, DetachReason, Mode, Refusal};
pub use pty::{Pty, PtyMaster};
pub use raw_mode::RawMode;
pub use server::{Server, ServerOptions, StatusCallback};
pub use size::WindowSize;
