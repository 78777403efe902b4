//! The per-session advisory lock, `<session>/.reconcile.lock`.
//!
//! It is the same file upstream's reconciler locks, with the same discipline: `flock(2)`,
//! exclusive, non-blocking; a busy lock means "someone else is deciding about this session",
//! and the caller skips the session rather than waiting. The file is never deleted: deleting a
//! lock file that another process has open lets a third process lock a *new* file of the same
//! name while the second still holds the old one.
//!
//! Callers that must have the lock (a session's owner finalizing its turn, `csa session kill`,
//! `csa session resume`) wait for it with [`ReconcileLock::acquire_with`] and a [`Wait`]
//! policy: never silently (the caller is told once, with the [`Holder`]: the lock file and the
//! pids `/proc/locks` names as holding it) and, where a person waits, never without a bound.
//!
//! A [`ReconcileLock`] value is the proof that the lock is held: every function that mutates a
//! session takes one by reference, so "mutated without the lock" does not compile. It also
//! carries the session directory it locked, opened without following a link and verified
//! ([`StoreDir`]): every mutation under the lock goes through that descriptor
//! ([`ReconcileLock::dir`]), so it lands in the directory that was checked and locked, whatever
//! is renamed or swapped at its path meanwhile.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::dirfd::StoreDir;

/// File name of the per-session lock.
pub const RECONCILE_LOCK: &str = ".reconcile.lock";

/// A held exclusive flock on a session's `.reconcile.lock`; released on drop (or by the kernel
/// when the process dies, so a crash never leaves a session locked).
#[derive(Debug)]
pub struct ReconcileLock {
    _flock: Flock<File>,
    dir: StoreDir,
}

impl ReconcileLock {
    /// Tries to take the lock of the session directory `dir` (opened without following a
    /// link: [`crate::paths::Project::open_session`]) without waiting. Returns `Ok(None)` when
    /// another process holds it.
    ///
    /// The open directory is verified first: owned by this user and not writable by group or
    /// others ([`StoreDir::verify`]): every mutation of a session takes this lock, so none
    /// happens in a directory csa refuses. The lock file is opened in that open directory
    /// with `O_NOFOLLOW` (a symlink in its place is an error, never followed) and created 0600
    /// when missing. The lock keeps a descriptor of the directory ([`ReconcileLock::dir`]).
    ///
    /// # Errors
    /// [`StoreError::Insecure`](crate::StoreError::Insecure) for a refused session directory
    /// (nothing is created in it); [`StoreError::Io`](crate::StoreError::Io) for the open or
    /// `flock` other than `EWOULDBLOCK`, naming the path.
    pub fn try_acquire(dir: &StoreDir) -> crate::Result<Option<Self>> {
        let path = dir.join(RECONCILE_LOCK);
        let file = open_session_lock(dir)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => {
                tracing::debug!(path = %path.display(), "locked (flock, exclusive)");
                Ok(Some(ReconcileLock {
                    _flock: flock,
                    dir: dir.try_clone()?,
                }))
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                tracing::debug!(path = %path.display(), "busy: another process holds the flock");
                Ok(None)
            }
            Err((_, errno)) => {
                Err(crate::atomic::with_path(io::Error::from(errno), "flock", &path).into())
            }
        }
    }

    /// Takes the lock, waiting for it as `wait` says. When the lock is busy, `on_wait` is
    /// called once, before waiting, with who holds it ([`Holder`]), so the caller can say that it
    /// waits and for whom. csa's reconcilers hold the lock for one decision and a few writes,
    /// never while waiting on anything, so a long wait means another program (upstream's
    /// reconciler, a stuck process) holds it.
    ///
    /// [`Wait::Forever`] blocks in `flock(2)` until the lock is free (for a session's owner
    /// finalizing its own turn: it owes the outcome). [`Wait::AtMost`] retries the non-blocking
    /// `flock` every [`POLL`] until the bound has passed, then gives up with
    /// [`StoreError::LockTimeout`](crate::StoreError::LockTimeout).
    ///
    /// The session directory and the lock file are opened and checked as by
    /// [`ReconcileLock::try_acquire`].
    ///
    /// # Errors
    /// As [`ReconcileLock::try_acquire`], plus
    /// [`StoreError::LockTimeout`](crate::StoreError::LockTimeout) when [`Wait::AtMost`]'s
    /// bound passes with the lock still busy.
    pub fn acquire_with(
        dir: &StoreDir,
        wait: Wait,
        on_wait: impl FnOnce(&Holder),
    ) -> crate::Result<Self> {
        let path = dir.join(RECONCILE_LOCK);
        let file = open_session_lock(dir)?;
        let own = dir.try_clone()?;
        let locked = |flock| {
            tracing::debug!(path = %path.display(), "locked (flock, exclusive, waited)");
            ReconcileLock {
                _flock: flock,
                dir: own,
            }
        };
        let failed = |errno: Errno| -> crate::StoreError {
            crate::atomic::with_path(io::Error::from(errno), "flock", &path).into()
        };
        let start = Instant::now();
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => return Ok(locked(flock)),
            Err((file, Errno::EWOULDBLOCK)) => file,
            Err((_, errno)) => return Err(failed(errno)),
        };
        let holder = Holder::of(&file, &path);
        on_wait(&holder);
        let limit = match wait {
            Wait::Forever => loop {
                // A signal handled during the wait (the supervisor forwards signals to its
                // agent) interrupts flock(2): wait again.
                file = match Flock::lock(file, FlockArg::LockExclusive) {
                    Ok(flock) => return Ok(locked(flock)),
                    Err((file, Errno::EINTR)) => file,
                    Err((_, errno)) => return Err(failed(errno)),
                };
            },
            Wait::AtMost(limit) => limit,
        };
        loop {
            let waited = start.elapsed();
            if waited >= limit {
                // Who holds it now (it may have changed hands while we waited).
                let holder = Holder::of(&file, &path);
                return Err(crate::StoreError::LockTimeout {
                    path,
                    holders: holder.pids,
                    waited,
                });
            }
            std::thread::sleep(POLL.min(limit - waited));
            file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => return Ok(locked(flock)),
                Err((file, Errno::EWOULDBLOCK)) => file,
                Err((_, errno)) => return Err(failed(errno)),
            };
        }
    }

    /// The session directory this lock protects, for messages.
    pub fn session_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The session directory this lock protects, as the descriptor it was locked through:
    /// every mutation under the lock goes through it.
    pub fn dir(&self) -> &StoreDir {
        &self.dir
    }
}

impl Drop for ReconcileLock {
    fn drop(&mut self) {
        tracing::debug!(path = %self.dir.join(RECONCILE_LOCK).display(), "unlocked");
    }
}

/// How often [`ReconcileLock::acquire_with`] retries a busy lock under [`Wait::AtMost`].
pub const POLL: Duration = Duration::from_millis(25);

/// How long [`ReconcileLock::acquire_with`] waits for a busy lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until it is free: for a session's owner, which owes the turn's outcome.
    Forever,
    /// At most this long, then [`StoreError::LockTimeout`](crate::StoreError::LockTimeout):
    /// where a person (or a hook) waits.
    AtMost(Duration),
}

/// Who holds a busy lock, as far as `/proc/locks` tells (csa-process
/// [`LockTable`](csa_process::LockTable)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The lock file.
    pub path: PathBuf,
    /// The pids holding a lock on it, as `/proc/locks` names them: empty when it cannot tell
    /// (unreadable, a filesystem whose device it does not name, an open file description
    /// lock).
    pub pids: Vec<u32>,
}

impl Holder {
    /// The holders of the open lock file `file` (at `path`), from csa-process's
    /// [`LockTable`](csa_process::LockTable).
    fn of(file: &File, path: &Path) -> Self {
        let pids = match csa_process::LockTable::read().state(file) {
            Ok(csa_process::LockState::Held { holder: Some(pid) }) => vec![pid],
            _ => Vec::new(),
        };
        Holder {
            path: path.to_owned(),
            pids,
        }
    }

    /// `pid 1234` (or `pids 1234, 5678`), or `another process` when no pid is known: for
    /// messages.
    pub fn describe(&self) -> String {
        describe_pids(&self.pids)
    }
}

/// [`Holder::describe`] of `pids`.
pub fn describe_pids(pids: &[u32]) -> String {
    match pids {
        [] => "another process".to_owned(),
        [pid] => format!("pid {pid}"),
        pids => format!(
            "pids {}",
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Replaces the body of a held lock file in place (truncate, write): the flock is on this
/// inode, so the file cannot be replaced by rename. Readers may see it empty or partial for an
/// instant; lock bodies are informational, the held flock is what counts.
pub(crate) fn rewrite_lock_body(file: &mut File, path: &Path, body: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let named = |e| crate::atomic::with_path(e, "write", path);
    crate::failpoint!("lock::truncate_body")
        .and_then(|()| file.set_len(0))
        .map_err(named)?;
    file.seek(SeekFrom::Start(0)).map_err(named)?;
    crate::failpoint!("lock::write_body")
        .and_then(|()| file.write_all(body))
        .map_err(named)
}

/// Verifies the open session directory `dir` ([`StoreDir::verify`]: refusing another user's
/// directory or one writable by group or others), then opens its `.reconcile.lock` in it,
/// creating it 0600 if missing, without following a symlink in its place.
fn open_session_lock(dir: &StoreDir) -> crate::Result<File> {
    dir.verify()?;
    Ok(dir.open_lock(RECONCILE_LOCK)?)
}

#[cfg(test)]
// Tests lay out and inspect their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::dirfd::test_dir;

    #[test]
    fn second_acquire_is_busy_until_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ReconcileLock::try_acquire(&test_dir(dir.path())).expect("io");
        assert!(first.is_some());
        assert!(ReconcileLock::try_acquire(&test_dir(dir.path()))
            .expect("io")
            .is_none());
        drop(first);
        assert!(ReconcileLock::try_acquire(&test_dir(dir.path()))
            .expect("io")
            .is_some());
        assert!(dir.path().join(RECONCILE_LOCK).exists(), "never deleted");
    }

    #[test]
    fn a_bounded_wait_says_who_holds_the_lock_then_gives_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A flock belongs to an open file description: a second open, even in this process,
        // waits for the first.
        let first = ReconcileLock::try_acquire(&test_dir(dir.path()))
            .expect("io")
            .expect("free");
        let mut told = None;
        let err = ReconcileLock::acquire_with(
            &test_dir(dir.path()),
            Wait::AtMost(Duration::from_millis(100)),
            |h| told = Some(h.clone()),
        )
        .expect_err("busy");
        let told = told.expect("told once that it waits");
        assert_eq!(told.path, dir.path().join(RECONCILE_LOCK));
        // The holder comes from /proc/locks, which the portable backend does not read.
        if cfg!(target_os = "linux")
            && csa_process::backend::current() == csa_process::Backend::Procfs
        {
            assert_eq!(
                told.pids,
                [std::process::id()],
                "the holder, from /proc/locks"
            );
        }
        match err {
            crate::StoreError::LockTimeout {
                holders, waited, ..
            } => {
                assert_eq!(holders, told.pids);
                assert!(waited >= Duration::from_millis(100), "{waited:?}");
            }
            other => panic!("{other}"),
        }
        drop(first);
        let got = ReconcileLock::acquire_with(
            &test_dir(dir.path()),
            Wait::AtMost(Duration::ZERO),
            |_| panic!("free: no wait"),
        );
        assert!(got.is_ok());
    }

    #[test]
    fn an_unbounded_wait_says_so_once_and_gets_the_lock_when_it_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = ReconcileLock::try_acquire(&test_dir(dir.path()))
            .expect("io")
            .expect("free");
        let (told_tx, told_rx) = std::sync::mpsc::channel();
        // The holder lets go only once the waiter has said that it waits.
        let releaser = std::thread::spawn(move || {
            let holder: Holder = told_rx.recv().expect("told");
            drop(held);
            holder
        });
        let got = ReconcileLock::acquire_with(&test_dir(dir.path()), Wait::Forever, move |h| {
            told_tx.send(h.clone()).expect("send");
        });
        assert!(got.is_ok(), "{got:?}");
        let holder = releaser.join().expect("releaser");
        assert_eq!(holder.path, dir.path().join(RECONCILE_LOCK));
    }

    #[test]
    fn refuses_links_and_writable_directories_before_creating_anything() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let parent = test_dir(tmp.path());
        let real = tmp.path().join("real");
        fs_err::create_dir(&real).expect("mkdir");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(
            parent.open_dir("link").is_err(),
            "a linked session directory is never opened"
        );

        fs_err::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let opened = parent.open_dir("real").expect("open");
        let err = ReconcileLock::acquire_with(&opened, Wait::Forever, |_| {})
            .expect_err("a world-writable session directory");
        assert!(matches!(err, crate::StoreError::Insecure(_)), "{err}");
        assert!(!real.join(RECONCILE_LOCK).exists());

        fs_err::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let canary = tmp.path().join("canary");
        fs_err::write(&canary, "keep").expect("write");
        std::os::unix::fs::symlink(&canary, real.join(RECONCILE_LOCK)).expect("symlink");
        let err = ReconcileLock::try_acquire(&opened).expect_err("a linked lock file");
        assert!(err.to_string().contains(RECONCILE_LOCK), "{err}");
        assert_eq!(fs_err::read(&canary).expect("read"), b"keep");
    }

    #[test]
    fn the_lock_keeps_the_directory_it_locked_whatever_is_renamed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let parent = test_dir(tmp.path());
        let session = parent.create_private_dir("s").expect("mkdir");
        let lock = ReconcileLock::try_acquire(&session)
            .expect("io")
            .expect("free");
        let outside = tempfile::tempdir().expect("tempdir");
        parent.rename("s", &parent, "moved").expect("rename");
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("s")).expect("symlink");
        lock.dir()
            .write_atomic("f", b"x", 0o600, crate::atomic::Publish::Replace)
            .expect("write");
        assert!(tmp.path().join("moved/f").is_file());
        assert_eq!(fs_err::read_dir(outside.path()).expect("ls").count(), 0);
    }
}
