//! The csa session store: where sessions live, their files (state.toml, result.toml, liveness
//! files, locks) in upstream `cli-sub-agent`'s format, how they are written safely, and
//! reconcile, which finalizes sessions whose owner died.
//!
//! Invariants every module keeps:
//! - every write goes through [`atomic::write_atomic`] (temp, fsync, rename or link, fsync of
//!   the directory), so a kill -9 at any instant leaves either the old or the new file;
//! - a session is only mutated while holding its [`lock::ReconcileLock`], after re-reading its
//!   state under the lock;
//! - nothing that does not parse is rewritten, renamed or deleted: it is reported with its path
//!   (the one exception, asked for with `csa session delete --force`: a dead session whose
//!   state.toml does not parse is moved whole, unchanged, to the quarantine, [`quarantine`]);
//! - a session is declared dead only when every liveness signal says so ([`liveness`]).

#![warn(missing_docs)]

pub mod active;
pub mod atomic;
pub mod check;
pub mod claim;
pub mod completion;
pub mod cooldown;
pub mod create;
pub mod delete;
pub mod dirfd;
pub mod error;
pub mod failpoint;
pub mod finalize;
pub mod inventory;
pub mod kill;
pub mod leftovers;
pub mod liveness;
pub mod lock;
pub mod membership;
pub mod paths;
pub mod quarantine;
pub mod reconcile;
pub mod result;
pub mod resume;
pub mod secure;
pub mod state;
pub mod turn_end;
pub mod turns;

pub use error::{Result, StoreError};

use std::io::{self, Read};
use std::path::Path;

/// Reads a whole file of at most `max` bytes, returning its bytes and its metadata (from the
/// open file, so both describe the same file). Larger files are an `InvalidData` error naming
/// the path, so that a runaway writer never costs more than `max` bytes of memory; a FIFO, a
/// device (`/dev/zero` behind a symlink) or a socket is an `InvalidData` error too, found
/// without reading it or waiting for a writer (the open is non-blocking). A regular file costs
/// one open, one `fstat` and one read of the size `fstat` gave.
///
/// # Errors
/// Any I/O error of the open or read (naming the path), or `InvalidData` when larger than `max`
/// or not a regular file (a directory fails the read with `EISDIR`).
pub fn read_capped(path: &Path, max: u64) -> io::Result<(Vec<u8>, std::fs::Metadata)> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let file = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?
        .into_parts()
        .0;
    read_open_file(file, path, max)
}

/// [`read_capped`] of a file already opened (`path` names it in errors).
pub(crate) fn read_open_file(
    mut file: std::fs::File,
    path: &Path,
    max: u64,
) -> io::Result<(Vec<u8>, std::fs::Metadata)> {
    let named = |e: io::Error| atomic::with_path(e, "read", path);
    let metadata = file.metadata().map_err(named)?;
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: larger than {max} bytes", path.display()),
        )
    };
    if metadata.len() > max {
        return Err(too_big());
    }
    if !metadata.is_file() && !metadata.is_dir() {
        // Regression: a FIFO in place of state.toml blocked every command that read it, and
        // /dev/zero behind a symlink was read up to `max` (tests/cli/corpus.rs).
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a regular file", path.display()),
        ));
    }
    let len = usize::try_from(metadata.len()).unwrap_or(0);
    if metadata.is_file() && len > 0 {
        // A regular file whose size fstat gave: one read of exactly that size. Writers in this
        // store replace files by rename, so the opened inode does not change size; if it shrank
        // anyway, fall through to the general read below.
        let mut buf = vec![0; len];
        match file.read_exact(&mut buf) {
            Ok(()) => return Ok((buf, metadata)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                use std::io::Seek;
                file.rewind().map_err(named)?;
            }
            Err(e) => return Err(named(e)),
        }
    }
    // /proc files and empty files report no size: the cap still bounds the read.
    let mut buf = Vec::with_capacity(len + 1);
    file.take(max + 1).read_to_end(&mut buf).map_err(named)?;
    if buf.len() as u64 > max {
        return Err(too_big());
    }
    Ok((buf, metadata))
}
