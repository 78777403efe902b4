//! The one atomic-write helper of the store. Every file csa writes goes through [`write_atomic`].
//!
//! Protocol (as jj's `persist_temp_file`, and the classic write-fsync-rename of ext4 guidance):
//! 1. create a temp file `.tmp-<random>` in the *same directory* as the target (`O_EXCL`, so it
//!    never follows or reuses a symlink), with the requested mode;
//! 2. write all bytes and `fsync` the temp file;
//! 3. publish: [`Publish::Replace`] `rename(2)`s it over the target (which replaces a symlink
//!    rather than writing through it); [`Publish::CreateNew`] `link(2)`s it to the target, which
//!    fails with `EEXIST` when the target exists, so an existing file is never replaced, then
//!    unlinks the temp name;
//! 4. `fsync` the directory so the new name is durable.
//!
//! What a crash (kill -9, power loss) leaves behind at each step:
//! - during 1–2: the target is untouched; a stray `.tmp-*` file may remain (names starting with
//!   `.` are never sessions, and readers ignore them);
//! - during 3: `rename` and `link` are atomic: the target is either the old file (or absent) or
//!   the complete new one, never a mix; after a `link`, a stray `.tmp-*` hard link may remain;
//! - during 4: after a kill -9 the new name is there (the kernel has it); only a power loss
//!   before the directory fsync can lose the new name, leaving the old state, never a torn file.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How [`write_atomic`] publishes the new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Replace the target if it exists (`rename(2)`).
    Replace,
    /// Create the target only if it does not exist (`link(2)`); fails with
    /// [`io::ErrorKind::AlreadyExists`] otherwise.
    CreateNew,
}

/// Atomically writes `bytes` to `dir/name` with permission bits `mode` (e.g. `0o600`).
///
/// # Errors
/// Any I/O error of the steps above, naming the path; with [`Publish::CreateNew`], an error of
/// kind [`io::ErrorKind::AlreadyExists`] when `dir/name` exists (nothing was changed).
pub fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    publish: Publish,
) -> io::Result<()> {
    let target = dir.join(name);
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| with_path(e, "create a temp file in", dir))?;
    // The umask may have narrowed the mode at creation; set it exactly.
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(e, "set permissions of", temp.path()))?;
    temp.write_all(bytes)
        .map_err(|e| with_path(e, "write", temp.path()))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| with_path(e, "fsync", temp.path()))?;
    failpoint!("atomic::before_publish");
    match publish {
        Publish::Replace => {
            temp.persist(&target)
                .map_err(|e| with_path(e.error, "rename a temp file to", &target))?;
        }
        Publish::CreateNew => {
            // The temp file is removed when `temp` drops, whatever happens here.
            fs_err::hard_link(temp.path(), &target)?;
        }
    }
    sync_dir(dir)
}

/// `fsync`s a directory, making the names created or removed in it durable.
///
/// # Errors
/// Any I/O error of the open or the fsync, naming the path.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs_err::File::open(dir)?.sync_all()
}

/// Wraps an error from a crate that does not name paths (tempfile) so that it does.
pub(crate) fn with_path(err: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("failed to {op} `{}`: {err}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replace_writes_bytes_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_atomic(dir.path(), "f", b"one", 0o600, Publish::Replace).expect("write");
        write_atomic(dir.path(), "f", b"two", 0o444, Publish::Replace).expect("rewrite");
        let path = dir.path().join("f");
        assert_eq!(fs_err::read(&path).expect("read"), b"two");
        assert_eq!(fs_err::metadata(&path).expect("stat").mode() & 0o777, 0o444);
        assert_eq!(
            fs_err::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn create_new_never_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_atomic(dir.path(), "r", b"real", 0o600, Publish::CreateNew).expect("first");
        let err = write_atomic(dir.path(), "r", b"fake", 0o600, Publish::CreateNew)
            .expect_err("second must fail");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs_err::read(dir.path().join("r")).expect("read"), b"real");
        assert_eq!(
            fs_err::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn replace_does_not_write_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        fs_err::write(&outside, b"keep").expect("write");
        std::os::unix::fs::symlink(&outside, dir.path().join("f")).expect("symlink");
        write_atomic(dir.path(), "f", b"new", 0o600, Publish::Replace).expect("write");
        assert_eq!(fs_err::read(&outside).expect("read"), b"keep");
    }
}
