//! The attach socket, `attach.sock` in the session directory, reached only through the
//! directory's open descriptor.
//!
//! **Creating it** (supervisor): bound under a temporary name, given mode 0600, checked (a
//! socket owned by this user), then renamed to `attach.sock`, so the name only ever shows a
//! listening socket with its final mode, and a stale socket left by a killed supervisor is
//! replaced atomically. It is removed when the supervisor finishes, if it is still the same
//! inode.
//!
//! **Connecting** (client): `fstatat(AT_SYMLINK_NOFOLLOW)` first: it must be a socket (not a
//! link), owned by this process's effective user, with no permission for group or others;
//! then, once connected, the peer must run as this user too ([`crate::peer`]).
//!
//! **Addresses**: a Unix socket address holds at most 107 bytes of path on Linux (103
//! elsewhere) and session directories are often longer. On Linux and Android the directory is
//! named through this process's descriptor, `/proc/self/fd/<dirfd>/attach.sock` (about 35
//! bytes), which also keeps the kernel from walking the directory's path again; that name is
//! used after checking it resolves to the descriptor's directory (same device and inode).
//! Where it does not (no `/proc`) and on other platforms, the directory's full path is used
//! when it fits, after checking that it still names the descriptor's directory; a path that
//! does not fit is [`TerminalError::PathTooLong`]. (FreeBSD's `bindat`/`connectat` would lift
//! that limit there; they are not used yet.)

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Stat};

use crate::error::{Result, TerminalError};
use crate::peer;

/// The socket's name in the session directory.
pub const SOCKET_NAME: &str = "attach.sock";

/// The longest socket path this platform's `sockaddr_un` holds, in bytes (without the NUL).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const MAX_SOCKET_PATH: usize = 107;
/// The longest socket path this platform's `sockaddr_un` holds, in bytes (without the NUL).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const MAX_SOCKET_PATH: usize = 103;

/// `/proc/self/fd/<dir>` when it resolves to `dir` (Linux, Android).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn short_dir_name(dir: BorrowedFd<'_>) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let name = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let through_proc = rustix::fs::stat(&name).ok()?;
    same_inode(&through_proc, &rustix::fs::fstat(dir).ok()?).then_some(name)
}

/// No short name for a directory descriptor on this platform: the full path is used.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn short_dir_name(_dir: BorrowedFd<'_>) -> Option<PathBuf> {
    None
}

/// `st_mode` as a `u32` (it is a `u16` on macOS).
#[allow(clippy::useless_conversion)]
fn mode_bits(st: &Stat) -> u32 {
    u32::from(st.st_mode)
}

fn same_inode(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// The address of `name` in `dir` (whose path is `dir_path`), per the module doc.
fn address(dir: BorrowedFd<'_>, dir_path: &Path, name: &str) -> Result<PathBuf> {
    if let Some(short) = short_dir_name(dir) {
        return Ok(short.join(name));
    }
    let full = dir_path.join(name);
    let len = full.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(TerminalError::PathTooLong {
            path: full,
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    let moved = || TerminalError::InsecureSocket {
        path: full.clone(),
        reason: format!(
            "{} no longer names the session directory that was opened",
            dir_path.display()
        ),
    };
    let by_path = rustix::fs::stat(dir_path).map_err(|_| moved())?;
    let by_fd = rustix::fs::fstat(dir)
        .map_err(|e| TerminalError::io(format!("stat {}", dir_path.display()), e.into()))?;
    if !same_inode(&by_path, &by_fd) {
        return Err(moved());
    }
    Ok(full)
}

/// What is wrong with a socket file's metadata, if anything: it must be a socket owned by
/// `me` with no permission bits for group or others.
pub fn check_socket_metadata(kind: FileType, uid: u32, mode: u32, me: u32) -> Option<String> {
    if kind == FileType::Symlink {
        return Some("it is a symbolic link".to_owned());
    }
    if kind != FileType::Socket {
        return Some(format!("it is not a socket but a {kind:?}"));
    }
    if uid != me {
        return Some(format!(
            "it is owned by uid {uid}, not by this user (uid {me})"
        ));
    }
    if mode & 0o077 != 0 {
        return Some(format!(
            "its mode is {:04o}: group or others may use it (the supervisor creates it 0600)",
            mode & 0o7777
        ));
    }
    None
}

/// The supervisor's listening socket.
#[derive(Debug)]
pub struct Listening {
    listener: UnixListener,
    dir: OwnedFd,
    path: PathBuf,
    /// The socket file's identity (device and inode) when it was placed.
    placed: Stat,
}

impl Listening {
    /// Creates `attach.sock` in `dir` (per the module doc) and listens on it.
    ///
    /// # Errors
    /// [`TerminalError::Io`] from bind, chmod, rename; [`TerminalError::PathTooLong`];
    /// [`TerminalError::InsecureSocket`] when the bound file is not what was just created.
    pub fn create(dir: BorrowedFd<'_>, dir_path: &Path) -> Result<Listening> {
        let path = dir_path.join(SOCKET_NAME);
        let io =
            |what: &str, e: io::Error| TerminalError::io(format!("{what} {}", path.display()), e);
        let dir = rustix::io::fcntl_dupfd_cloexec(dir, 0)
            .map_err(|e| io("duplicate the directory descriptor of", e.into()))?;
        let tmp = format!("{SOCKET_NAME}.{}.tmp", std::process::id());
        // A leftover of a killed supervisor that had our pid: only ever a socket we made.
        if let Ok(st) = rustix::fs::statat(&dir, tmp.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Socket {
                let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            }
        }
        let listener =
            UnixListener::bind(address(dir.as_fd(), dir_path, &tmp)?).map_err(|e| io("bind", e))?;
        let placed = (|| {
            rustix::fs::chmodat(
                &dir,
                tmp.as_str(),
                Mode::from_raw_mode(0o600),
                AtFlags::empty(),
            )
            .map_err(|e| io("chmod", e.into()))?;
            let st = rustix::fs::statat(&dir, tmp.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io("stat", e.into()))?;
            if let Some(reason) = check_socket_metadata(
                FileType::from_raw_mode(st.st_mode),
                st.st_uid,
                mode_bits(&st),
                peer::euid(),
            ) {
                return Err(TerminalError::InsecureSocket {
                    path: path.clone(),
                    reason,
                });
            }
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, SOCKET_NAME)
                .map_err(|e| io("rename a new socket to", e.into()))?;
            Ok(st)
        })();
        let st = match placed {
            Ok(st) => st,
            Err(e) => {
                let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
                return Err(e);
            }
        };
        Ok(Listening {
            listener,
            dir,
            path,
            placed: st,
        })
    }

    /// The listening socket.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The socket's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes `attach.sock` if it is still the socket this created (another supervisor of
    /// the same session directory may have replaced it since).
    pub fn remove(&self) {
        if let Ok(st) = rustix::fs::statat(&self.dir, SOCKET_NAME, AtFlags::SYMLINK_NOFOLLOW) {
            if same_inode(&st, &self.placed) {
                let _ = rustix::fs::unlinkat(&self.dir, SOCKET_NAME, AtFlags::empty());
            }
        }
    }
}

/// Connects to the attach socket of the session directory `dir` (whose path is `dir_path`,
/// for messages and the fallback address), after the checks of the module doc.
///
/// # Errors
/// [`TerminalError::NotAttachable`] when there is no socket or nobody listens on it;
/// [`TerminalError::InsecureSocket`]; [`TerminalError::PeerNotOwner`];
/// [`TerminalError::PathTooLong`]; [`TerminalError::Io`] for other failures.
pub fn connect(dir: BorrowedFd<'_>, dir_path: &Path) -> Result<UnixStream> {
    let path = dir_path.join(SOCKET_NAME);
    let st = match rustix::fs::statat(dir, SOCKET_NAME, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Err(TerminalError::NotAttachable { path }),
        Err(e) => {
            return Err(TerminalError::io(
                format!("stat {}", path.display()),
                e.into(),
            ))
        }
    };
    if let Some(reason) = check_socket_metadata(
        FileType::from_raw_mode(st.st_mode),
        st.st_uid,
        mode_bits(&st),
        peer::euid(),
    ) {
        return Err(TerminalError::InsecureSocket { path, reason });
    }
    let stream = match UnixStream::connect(address(dir, dir_path, SOCKET_NAME)?) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            ) =>
        {
            return Err(TerminalError::NotAttachable { path })
        }
        Err(e) => {
            return Err(TerminalError::io(
                format!("connect to {}", path.display()),
                e,
            ))
        }
    };
    peer::same_user(peer::peer(stream.as_fd())?, peer::euid())?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_dir(path: &Path) -> OwnedFd {
        rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open dir")
    }

    #[test]
    fn the_metadata_rules() {
        let me = 1000;
        assert_eq!(
            check_socket_metadata(FileType::Socket, me, 0o140600, me),
            None
        );
        let bad = [
            (FileType::Symlink, me, 0o777, "symbolic link"),
            (FileType::RegularFile, me, 0o600, "not a socket"),
            (FileType::Socket, 0, 0o600, "owned by uid 0"),
            (FileType::Socket, me, 0o660, "group or others"),
            (FileType::Socket, me, 0o604, "group or others"),
        ];
        for (kind, uid, mode, expected) in bad {
            let reason = check_socket_metadata(kind, uid, mode, me).expect("refused");
            assert!(reason.contains(expected), "{reason}");
        }
    }

    #[test]
    fn created_0600_reachable_under_a_long_path_and_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        // Longer than any sockaddr_un.
        let deep = root.path().join("d".repeat(60)).join("e".repeat(60));
        fs_mkdir(&deep);
        let dir = open_dir(&deep);
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            let err = Listening::create(dir.as_fd(), &deep).expect_err("too long here");
            assert!(matches!(err, TerminalError::PathTooLong { .. }), "{err}");
            return;
        }
        let listening = Listening::create(dir.as_fd(), &deep).expect("listen");
        let st = rustix::fs::statat(&dir, SOCKET_NAME, AtFlags::SYMLINK_NOFOLLOW).expect("stat");
        assert_eq!(st.st_mode & 0o777, 0o600);
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Socket);
        let stream = connect(dir.as_fd(), &deep).expect("connect through /proc/self/fd");
        let (accepted, _) = listening.listener().accept().expect("accept");
        assert_eq!(
            peer::peer(accepted.as_fd()).expect("peer").uid,
            peer::euid()
        );
        drop(stream);
        listening.remove();
        let gone = connect(dir.as_fd(), &deep).expect_err("removed");
        assert!(
            matches!(gone, TerminalError::NotAttachable { .. }),
            "{gone}"
        );
    }

    #[test]
    fn a_link_or_a_loose_mode_is_refused_before_connecting() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = open_dir(root.path());
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let target_dir = open_dir(elsewhere.path());
        let _real = Listening::create(target_dir.as_fd(), elsewhere.path()).expect("listen");
        std::os::unix::fs::symlink(
            elsewhere.path().join(SOCKET_NAME),
            root.path().join(SOCKET_NAME),
        )
        .expect("symlink");
        let err = connect(dir.as_fd(), root.path()).expect_err("a link");
        assert!(err.to_string().contains("symbolic link"), "{err}");

        let listening = Listening::create(target_dir.as_fd(), elsewhere.path()).expect("listen");
        rustix::fs::chmodat(
            &target_dir,
            SOCKET_NAME,
            Mode::from_raw_mode(0o666),
            AtFlags::empty(),
        )
        .expect("chmod");
        let err = connect(target_dir.as_fd(), elsewhere.path()).expect_err("loose mode");
        assert!(err.to_string().contains("0666"), "{err}");
        listening.remove();
    }

    #[test]
    fn a_socket_of_another_user_is_refused() {
        if peer::euid() != 0 {
            eprintln!("skipped: giving a socket to another user needs root");
            return;
        }
        let root = tempfile::tempdir().expect("tempdir");
        let dir = open_dir(root.path());
        let _listening = Listening::create(dir.as_fd(), root.path()).expect("listen");
        rustix::fs::chownat(
            &dir,
            SOCKET_NAME,
            Some(rustix::fs::Uid::from_raw(4242)),
            None,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("chown");
        let err = connect(dir.as_fd(), root.path()).expect_err("another user's");
        assert!(err.to_string().contains("owned by uid 4242"), "{err}");
    }

    fn fs_mkdir(path: &Path) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(path)
            .expect("mkdir");
    }
}
