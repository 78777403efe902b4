//! Who is at the other end of a Unix socket, so that both the supervisor and the client can
//! refuse a process of another user.
//!
//! - Linux and Android: `SO_PEERCRED` (unix(7)): the user and process id the peer had when it
//!   connected (client side: when the supervisor called `listen`).
//! - macOS, iOS and the BSDs: `getpeereid(3)`, which gives the user but no process id.
//! - Elsewhere: the credentials cannot be read, and the connection is refused with
//!   `Unsupported` (failing closed: an unverifiable peer is treated as a stranger).

use std::io;
use std::os::fd::BorrowedFd;

use crate::error::{Result, TerminalError};

/// The peer of a connected Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its effective user id.
    pub uid: u32,
    /// Its process id, where the platform tells it.
    pub pid: Option<u32>,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn credentials(sock: BorrowedFd<'_>) -> io::Result<Peer> {
    let cred = rustix::net::sockopt::socket_peercred(sock)?;
    Ok(Peer {
        uid: cred.uid.as_raw(),
        pid: u32::try_from(cred.pid.as_raw_nonzero().get()).ok(),
    })
}

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
fn credentials(sock: BorrowedFd<'_>) -> io::Result<Peer> {
    let (uid, _gid) = nix::unistd::getpeereid(sock)?;
    Ok(Peer {
        uid: uid.as_raw(),
        pid: None,
    })
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
fn credentials(_sock: BorrowedFd<'_>) -> io::Result<Peer> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "this platform cannot tell the user at the other end of a Unix socket",
    ))
}

/// The peer of `sock`.
///
/// # Errors
/// [`TerminalError::Io`] when its credentials cannot be read (always, on platforms without a
/// way to read them).
pub fn peer(sock: BorrowedFd<'_>) -> Result<Peer> {
    credentials(sock).map_err(|e| TerminalError::io("read the attach socket's peer credentials", e))
}

/// Accepts a peer only when it runs as `me`.
///
/// # Errors
/// [`TerminalError::PeerNotOwner`] otherwise.
pub fn same_user(peer: Peer, me: u32) -> Result<()> {
    if peer.uid == me {
        Ok(())
    } else {
        Err(TerminalError::PeerNotOwner { peer: peer.uid, me })
    }
}

/// This process's effective user id.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reads_our_own_credentials_and_refuses_another_user() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let me = peer(a.as_fd()).expect("credentials");
        assert_eq!(me.uid, euid());
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(me.pid, Some(std::process::id()));
        same_user(me, euid()).expect("ourselves");
        let err = same_user(me, euid().wrapping_add(1)).expect_err("a stranger");
        assert!(matches!(err, TerminalError::PeerNotOwner { .. }), "{err}");
    }
}
