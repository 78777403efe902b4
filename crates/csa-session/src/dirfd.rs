//! An open directory that files are read relative to (`openat(2)`), for reading many sessions of
//! one project: each open then walks two path components (`<ULID>/state.toml`) instead of the
//! whole absolute path, which measured about a third of `csa session list`'s time at 10,000
//! sessions (docs/performance.md). Errors still name full paths.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

use crate::atomic::with_path;

/// A directory opened for reading files relative to it.
#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
    path: PathBuf,
}

impl DirFd {
    /// Opens `path` as a directory (`O_DIRECTORY`, so anything else is an error).
    ///
    /// # Errors
    /// The open's error, naming the path (`NotFound`, `NotADirectory`, …).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| with_path(e.into(), "open directory", path))?;
        Ok(DirFd {
            fd,
            path: path.to_owned(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`crate::read_capped`] of `rel`, a path relative to this directory.
    ///
    /// # Errors
    /// As [`crate::read_capped`], naming `<dir>/<rel>`.
    pub fn read_capped(&self, rel: &str, max: u64) -> io::Result<(Vec<u8>, std::fs::Metadata)> {
        let path = self.path.join(rel);
        let fd = openat(
            &self.fd,
            rel,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| with_path(e.into(), "open", &path))?;
        crate::read_open_file(std::fs::File::from(fd), &path, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_relative_and_names_full_paths_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs_err::create_dir(dir.path().join("a")).expect("mkdir");
        fs_err::write(dir.path().join("a/f"), "hello").expect("write");
        let d = DirFd::open(dir.path()).expect("open");
        assert_eq!(d.read_capped("a/f", 100).expect("read").0, b"hello");
        let err = d.read_capped("a/missing", 100).expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err
            .to_string()
            .contains(&dir.path().join("a/missing").display().to_string()));
        let err = d.read_capped("a/f", 2).expect_err("too big");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
