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
//! decimal). Lines whose second column is `->` are waiters, not holders. Every lock type
//! (`FLOCK`, `POSIX`, `OFDLCK`, `LEASE`) counts: whoever holds any lock on the file is alive.

use std::collections::HashSet;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;

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

/// The set of files on which some process holds a lock, read once from `/proc/locks`.
#[derive(Debug, Clone, Default)]
pub struct HeldLocks {
    held: HashSet<FileId>,
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
                let id = cols.nth(3)?;
                let mut parts = id.split(':');
                let major = u64::from_str_radix(parts.next()?, 16).ok()?;
                let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
                let ino = parts.next()?.parse().ok()?;
                Some(FileId { major, minor, ino })
            })
            .collect();
        HeldLocks { held }
    }

    /// Whether some process holds a lock on the file `id` names.
    pub fn is_held(&self, id: FileId) -> bool {
        self.held.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_holders_and_skips_waiters() {
        let text = "1: FLOCK  ADVISORY  WRITE 1922 fe:00:10010669 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 2011 fe:00:777 0 EOF\n\
                    2: POSIX  ADVISORY  READ 33 103:02:42 0 EOF\n\
                    garbage\n";
        let locks = HeldLocks::parse(text);
        assert!(locks.is_held(FileId {
            major: 0xfe,
            minor: 0,
            ino: 10010669
        }));
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
