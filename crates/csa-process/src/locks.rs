//! Which files have a lock held on them right now, from `/proc/locks`, without taking any lock.
//!
//! Taking a lock to test it (even `LOCK_SH | LOCK_NB` released at once) can make its owner's own
//! non-blocking acquisition fail, so liveness never does that. `/proc/locks` lists every lock in
//! the system, one per line (proc(5)):
//!
//! ```text
//! 1: FLOCK  ADVISORY  WRITE 1922 fe:00:10010669 0 EOF
//! 2: -> FLOCK  ADVISORY  WRITE 2011 fe:00:10010669 0 EOF
//! ```
//!
//! The sixth column is `MAJOR:MINOR:INODE` of the locked file (major and minor in hex, inode in
//! decimal), the fifth the holder's pid. Lines whose second column is `->` are waiters, not
//! holders. Every lock type (`FLOCK`, `POSIX`, `OFDLCK`, `LEASE`) counts: whoever holds any lock
//! on the file is alive.
//!
//! `/proc/locks` prints the device of the file's *superblock*, which is not always the `st_dev`
//! that `stat(2)` reports: a btrfs subvolume (and btrfs in general) reports an anonymous device
//! of its own, so a held lock there is missed by a `dev:ino` lookup (regression: a live agent's
//! lock on a btrfs subvolume read as free, and reconcile finalized a running session). So
//! [`LockTable`] trusts `/proc/locks` only for a file whose `st_dev` is the device of a mount in
//! `/proc/self/mountinfo`; for any other file, and wherever `/proc` cannot be read, it *tests*
//! the lock: `flock(LOCK_EX | LOCK_NB)` on its own open file description, released at once. The
//! test can make an owner's own non-blocking acquisition fail during those microseconds, which
//! is why it is not the default; csa's own acquisitions retry briefly.
//!
//! The portable backend ([`crate::backend`]) tests every lock the same way: there is no lock
//! table to read without `/proc`. The test is `flock(2)`, which is also what `fd-lock`'s
//! `try_write` does on Unix; csa calls it through nix like every other flock it takes.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::mountinfo::MountInfo;
use crate::platform;

/// Identity of a file as `/proc/locks` names it: device major and minor numbers and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Inode number.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `metadata` was read from.
    pub fn of(metadata: &Metadata) -> Self {
        let dev = metadata.dev();
        FileId {
            major: dev_major(dev),
            minor: dev_minor(dev),
            ino: metadata.ino(),
        }
    }
}

// glibc's gnu_dev_major/gnu_dev_minor encoding of a 64-bit dev_t.
fn dev_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)
}

fn dev_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)
}

/// The set of files on which some process holds a lock, read once from `/proc/locks`, with the
/// pid of one holder of each.
#[derive(Debug, Clone, Default)]
pub struct HeldLocks {
    held: HashMap<FileId, Option<u32>>,
}

impl HeldLocks {
    /// Reads `/proc/locks`.
    ///
    /// # Errors
    /// Any I/O error of the read (`Unsupported` where there is no `/proc`). Callers that get an
    /// error must treat every lock file as possibly held (fail closed).
    pub fn read() -> io::Result<Self> {
        Ok(Self::parse(&platform::proc_locks()?))
    }

    /// Parses the text of `/proc/locks`. Lines that do not parse are skipped (the kernel's
    /// format has been stable since Linux 2.6; an unknown line names no file we look for).
    pub fn parse(text: &str) -> Self {
        let held = text
            .lines()
            .filter_map(|line| {
                let mut cols = line.split_ascii_whitespace();
                let _ordinal = cols.next()?;
                let kind = cols.next()?;
                if kind == "->" {
                    return None;
                }
                // An open file description lock (OFDLCK) has no owning process: pid -1.
                let pid = cols.nth(2)?.parse::<u32>().ok();
                let id = cols.next()?;
                let mut parts = id.split(':');
                let major = u64::from_str_radix(parts.next()?, 16).ok()?;
                let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
                let ino = parts.next()?.parse().ok()?;
                Some((FileId { major, minor, ino }, pid))
            })
            .collect();
        HeldLocks { held }
    }

    /// Whether some process holds a lock on the file `id` names.
    pub fn is_held(&self, id: FileId) -> bool {
        self.held.contains_key(&id)
    }

    /// The pid of a process holding a lock on the file `id` names (as `/proc/locks` prints it:
    /// the process that took the lock, which may have exited while a child it shared the open
    /// file with still holds it).
    pub fn holder(&self, id: FileId) -> Option<u32> {
        self.held.get(&id).copied().flatten()
    }
}

/// Whether a lock file is held, and how that was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// Some process holds a lock on it; the pid `/proc/locks` names, when it was read there.
    Held {
        /// The holder's pid, when known.
        holder: Option<u32>,
    },
    /// No process holds a lock on it.
    Free,
}

impl LockState {
    /// Whether the lock is held.
    pub fn is_held(self) -> bool {
        matches!(self, LockState::Held { .. })
    }
}

/// Decides whether lock files are held (see the module docs): `/proc/locks` for files on a
/// device it names, a test lock for the others. Read once per command.
#[derive(Debug, Default)]
pub struct LockTable {
    held: Option<HeldLocks>,
    mounts: Option<MountInfo>,
}

impl LockTable {
    /// Reads `/proc/locks` and `/proc/self/mountinfo` (procfs backend; the portable backend
    /// gets [`LockTable::testing_only`]). Never fails: what cannot be read makes every file be
    /// tested with a lock instead.
    pub fn read() -> Self {
        if crate::backend::current() == crate::backend::Backend::Portable {
            return Self::testing_only();
        }
        let held = HeldLocks::read()
            .map_err(|err| tracing::debug!(%err, "cannot read /proc/locks: testing locks instead"))
            .ok();
        let mounts = held.as_ref().and_then(|_| {
            MountInfo::read()
                .map_err(
                    |err| tracing::debug!(%err, "cannot read mountinfo: testing locks instead"),
                )
                .ok()
        });
        LockTable { held, mounts }
    }

    /// A table that tests every lock (what the portable backend gets).
    pub fn testing_only() -> Self {
        LockTable::default()
    }

    /// Whether `file`, an open lock file, is held by any process (this one included, through
    /// another open file description). `file` may be open read-only.
    ///
    /// # Errors
    /// The `fstat` of `file`, or an `flock` error other than `EWOULDBLOCK` (`ENOLCK` on a
    /// filesystem without locks, say): callers count an error as held (fail closed).
    pub fn state(&self, file: &File) -> io::Result<LockState> {
        let meta = file.metadata()?;
        let id = FileId::of(&meta);
        if let (Some(held), Some(mounts)) = (&self.held, &self.mounts) {
            if mounts.has_device(id.major, id.minor) {
                return Ok(if held.is_held(id) {
                    LockState::Held {
                        holder: held.holder(id),
                    }
                } else {
                    LockState::Free
                });
            }
        }
        test_lock(file)
    }
}

/// Tests the lock on `file` with `flock(LOCK_EX | LOCK_NB)`, released at once. flock(2) locks
/// belong to open file descriptions: `file` is one the caller opened for this and that holds no
/// lock, so the test takes (and drops) a lock on it exactly when no other description holds one.
fn test_lock(file: &File) -> io::Result<LockState> {
    let probe = file.try_clone()?;
    match Flock::lock(probe, FlockArg::LockExclusiveNonblock) {
        Ok(flock) => {
            drop(flock);
            Ok(LockState::Free)
        }
        Err((_, Errno::EWOULDBLOCK)) => Ok(LockState::Held { holder: None }),
        Err((_, errno)) => Err(io::Error::from(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_seen_held_by_test_and_by_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.lock");
        let holder = fs_err::File::create(&path).expect("create").into_parts().0;
        let reader = || fs_err::File::open(&path).expect("open").into_parts().0;
        for table in [LockTable::testing_only(), LockTable::read()] {
            assert_eq!(table.state(&reader()).expect("state"), LockState::Free);
        }
        let guard = Flock::lock(holder, FlockArg::LockExclusiveNonblock).expect("lock");
        for table in [LockTable::testing_only(), LockTable::read()] {
            assert!(table.state(&reader()).expect("state").is_held());
        }
        drop(guard);
        assert_eq!(
            LockTable::testing_only().state(&reader()).expect("state"),
            LockState::Free,
            "the test lock was released"
        );
    }

    #[test]
    fn parses_holders_and_skips_waiters() {
        let text = "1: FLOCK  ADVISORY  WRITE 1922 fe:00:10010669 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 2011 fe:00:777 0 EOF\n\
                    2: POSIX  ADVISORY  READ 33 103:02:42 0 EOF\n\
                    3: OFDLCK ADVISORY  WRITE -1 fe:00:99 0 EOF\n\
                    garbage\n";
        let locks = HeldLocks::parse(text);
        let id = FileId {
            major: 0xfe,
            minor: 0,
            ino: 10010669,
        };
        assert!(locks.is_held(id));
        assert_eq!(locks.holder(id), Some(1922));
        assert!(locks.is_held(FileId {
            major: 0x103,
            minor: 2,
            ino: 42
        }));
        assert!(!locks.is_held(FileId {
            major: 0xfe,
            minor: 0,
            ino: 777
        }));
        // Regression: an open file description lock (pid -1) was dropped, so its file read free.
        let ofd = FileId {
            major: 0xfe,
            minor: 0,
            ino: 99,
        };
        assert!(locks.is_held(ofd));
        assert_eq!(locks.holder(ofd), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sees_a_flock_held_by_this_process() {
        use nix::fcntl::{Flock, FlockArg};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        let file = fs_err::File::create(&path).expect("create").into_parts().0;
        let id = FileId::of(&file.metadata().expect("stat"));
        assert!(!HeldLocks::read().expect("read").is_held(id));
        let guard = Flock::lock(file, FlockArg::LockExclusiveNonblock).expect("lock");
        assert!(HeldLocks::read().expect("read").is_held(id));
        drop(guard);
        assert!(!HeldLocks::read().expect("read").is_held(id));
    }
}
