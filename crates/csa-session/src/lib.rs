//! The csa session store: where sessions live, their files (state.toml, result.toml, liveness
//! files, locks) in upstream `cli-sub-agent`'s format, how they are written safely, and
//! reconcile, which finalizes sessions whose owner died.
//!
//! Invariants every module keeps:
//! - every write goes through [`atomic::write_atomic`] (temp, fsync, rename or link, fsync of
//!   the directory), so a kill -9 at any instant leaves either the old or the new file;
//! - a session is only mutated while holding its [`lock::ReconcileLock`], after re-reading its
//!   state under the lock;
//! - nothing that does not parse is rewritten, renamed or deleted: it is reported with its path;
//! - a session is declared dead only when every liveness signal says so ([`liveness`]).

#![warn(missing_docs)]

#[macro_use]
mod failpoint;

pub mod active;
pub mod atomic;
pub mod cooldown;
pub mod error;
pub mod inventory;
pub mod liveness;
pub mod lock;
pub mod paths;
pub mod reconcile;
pub mod result;
pub mod state;

pub use error::{Result, StoreError};

use std::io::{self, Read};
use std::path::Path;

/// Reads a whole file of at most `max` bytes. Larger files are an `InvalidData` error naming
/// the path, so that a file that can be endless (a FIFO, `/dev/zero` behind a symlink, a
/// runaway writer) never costs more than `max` bytes of memory.
///
/// # Errors
/// Any I/O error of the open or read (naming the path), or `InvalidData` when larger than `max`.
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    fs_err::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: larger than {max} bytes", path.display()),
        ));
    }
    Ok(buf)
}
