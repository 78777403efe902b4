//! The per-session advisory lock, `<session>/.reconcile.lock`.
//!
//! It is the same file upstream's reconciler locks, with the same discipline: `flock(2)`,
//! exclusive, non-blocking; a busy lock means "someone else is deciding about this session",
//! and the caller skips the session rather than waiting. The file is never deleted: deleting a
//! lock file that another process has open lets a third process lock a *new* file of the same
//! name while the second still holds the old one.
//!
//! A [`ReconcileLock`] value is the proof that the lock is held: every function that mutates a
//! session takes one by reference, so "mutated without the lock" does not compile.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// File name of the per-session lock.
pub const RECONCILE_LOCK: &str = ".reconcile.lock";

/// A held exclusive flock on a session's `.reconcile.lock`; released on drop (or by the kernel
/// when the process dies, so a crash never leaves a session locked).
#[derive(Debug)]
pub struct ReconcileLock {
    _flock: Flock<File>,
    session_dir: PathBuf,
}

impl ReconcileLock {
    /// Tries to take the lock without waiting. Returns `Ok(None)` when another process holds it.
    ///
    /// The lock file is opened with `O_NOFOLLOW` (a symlink in its place is an error, never
    /// followed) and created 0600 when missing.
    ///
    /// # Errors
    /// I/O errors of the open or of `flock` other than `EWOULDBLOCK`, naming the path.
    pub fn try_acquire(session_dir: &Path) -> io::Result<Option<Self>> {
        let path = session_dir.join(RECONCILE_LOCK);
        let file = open_lock_file(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Some(ReconcileLock {
                _flock: flock,
                session_dir: session_dir.to_owned(),
            })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(crate::atomic::with_path(
                io::Error::from(errno),
                "flock",
                &path,
            )),
        }
    }

    /// Takes the lock, waiting for it. Only for a session's owner finalizing its own turn:
    /// reconcilers hold the lock for one decision and a few writes, never while waiting on
    /// anything, so the wait is short.
    ///
    /// # Errors
    /// I/O errors of the open or of `flock`, naming the path.
    pub fn acquire(session_dir: &Path) -> io::Result<Self> {
        let path = session_dir.join(RECONCILE_LOCK);
        let file = open_lock_file(&path)?;
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(flock) => Ok(ReconcileLock {
                _flock: flock,
                session_dir: session_dir.to_owned(),
            }),
            Err((_, errno)) => Err(crate::atomic::with_path(
                io::Error::from(errno),
                "flock",
                &path,
            )),
        }
    }

    /// The session directory this lock protects.
    pub fn session_dir(&self) -> &Path {
        &self.session_dir
    }
}

/// Replaces the body of a held lock file in place (truncate, write): the flock is on this
/// inode, so the file cannot be replaced by rename. Readers may see it empty or partial for an
/// instant; lock bodies are informational, the held flock is what counts.
pub(crate) fn rewrite_lock_body(file: &mut File, path: &Path, body: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let named = |e| crate::atomic::with_path(e, "write", path);
    file.set_len(0).map_err(named)?;
    file.seek(SeekFrom::Start(0)).map_err(named)?;
    file.write_all(body).map_err(named)
}

/// Opens (creating 0600 if missing) a lock file without following a symlink in its place.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    Ok(fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)?
        .into_parts()
        .0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_busy_until_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ReconcileLock::try_acquire(dir.path()).expect("io");
        assert!(first.is_some());
        assert!(ReconcileLock::try_acquire(dir.path())
            .expect("io")
            .is_none());
        drop(first);
        assert!(ReconcileLock::try_acquire(dir.path())
            .expect("io")
            .is_some());
        assert!(dir.path().join(RECONCILE_LOCK).exists(), "never deleted");
    }
}
