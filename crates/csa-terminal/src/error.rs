//! Errors of csa-terminal. Every variant says what failed and, where one is involved, names the
//! file or socket; [`TerminalError::hint`] gives the command that usually fixes it.

use std::io;
use std::path::PathBuf;

use crate::protocol::Refusal;

/// Everything this crate's functions can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// A system call failed; `what` names the operation and, when there is one, the path.
    #[error("cannot {what}")]
    Io {
        /// The operation, e.g. "open a pseudo-terminal" or "connect to /…/attach.sock".
        what: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// The session directory has no attach socket: the session is not interactive, or its
    /// supervisor has ended.
    #[error("{}: no attach socket: the session is not interactive, or its supervisor has ended", path.display())]
    NotAttachable {
        /// Where the socket was looked for.
        path: PathBuf,
    },

    /// The attach socket is not what the supervisor creates (a socket owned by this user with
    /// mode 0600, not a symbolic link); nothing was connected to.
    #[error("{}: refusing to connect: {reason}", path.display())]
    InsecureSocket {
        /// The socket's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The process at the other end of the socket runs as another user (`SO_PEERCRED` /
    /// `getpeereid`); the connection was closed.
    #[error("the process at the other end of the attach socket runs as uid {peer}, not as this user (uid {me})")]
    PeerNotOwner {
        /// The peer's effective user id.
        peer: u32,
        /// This process's effective user id.
        me: u32,
    },

    /// The session directory's path is too long for a Unix socket address and this platform
    /// has no short way to name it (see [`crate::socket`]).
    #[error("{}: the path is too long for a Unix socket address ({len} bytes, at most {max})", path.display())]
    PathTooLong {
        /// The socket's path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The platform's limit in bytes.
        max: usize,
    },

    /// The supervisor refused the attach.
    #[error("the supervisor refused to attach: {0}")]
    Refused(Refusal),

    /// The other end sent something that is not this crate's protocol (see
    /// [`crate::protocol`]), or closed the connection during the handshake.
    #[error("attach protocol error: {0}")]
    Protocol(String),
}

impl TerminalError {
    /// A constructor for [`TerminalError::Io`].
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        TerminalError::Io {
            what: what.into(),
            source,
        }
    }

    /// What to do about it, when there is a usual fix: a `hint:` line without the prefix.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            TerminalError::Refused(Refusal::WriterAttached { .. }) => Some(
                "attach with --read-only to watch, or with --steal to take over from the attached writer",
            ),
            TerminalError::Refused(Refusal::ProtocolVersion { .. }) => Some(
                "the session was started by another csa version: attach with that version",
            ),
            TerminalError::NotAttachable { .. } => {
                Some("`csa session list` shows which sessions are attachable")
            }
            _ => None,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = TerminalError> = std::result::Result<T, E>;
