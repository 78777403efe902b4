//! The store's one way to its files: a directory opened without following symbolic links
//! ([`StoreDir`]), and every file operation relative to that open directory.
//!
//! **Why.** A path string is resolved again by every system call that takes it, so a directory
//! of the state root that another process swaps for a symbolic link between two calls
//! (`renameat2(RENAME_EXCHANGE)`, in a loop) sends the second call wherever the link points.
//! Regression (issue 11, case 1): 300 `reconcile` runs wrote `result.toml`, `.tmp-*` and
//! `state.toml` into a directory outside the state root, and 200 `delete` runs emptied it,
//! although the session directory had been checked with `O_NOFOLLOW` when its lock was taken.
//!
//! **The discipline.** Inside the state root, a path is a directory descriptor plus a name:
//! - directories are opened one component at a time from the state root, with
//!   `openat(O_DIRECTORY | O_NOFOLLOW)` (a symbolic link in place of a directory is refused, never
//!   followed), and the open directory itself is verified where csa will write in it: owned by
//!   this user, not writable by group or others (`fstat`: [`StoreDir::verify`]), so the check
//!   and every later operation are about the same inode;
//! - every file operation is then relative to such a descriptor, naming one entry of it:
//!   `openat`, `renameat`/`renameat2`, `linkat`, `unlinkat`, `mkdirat`, `fstatat` with
//!   `AT_SYMLINK_NOFOLLOW` (rustix's calls). Files csa creates or writes are opened with
//!   `O_NOFOLLOW` (or `O_EXCL`); files csa only reads may be links (a read never changes what it
//!   reads), but never through a linked directory;
//! - deletion walks the tree it deletes through descriptors ([`StoreDir::remove_tree`]): a link
//!   is removed, never followed, and nothing outside the opened directory can be reached;
//! - a name swapped mid-command can still make one call fail (the entry is now a link, or gone),
//!   or make a rename move the link instead of the directory, which callers check
//!   ([`StoreDir::same_dir`]); it can never move a write, a rename or a deletion elsewhere.
//!
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` would resolve a multi-component path in one
//! call, but not check who owns each directory on the way, so directories are walked one
//! component at a time (a few more system calls per command, measured in docs/performance.md).
//!
//! The rest of the store cannot open a path any other way: `clippy.toml` in this crate bans the
//! path-taking calls of `std::fs`, `fs-err`, `nix` and `rustix` (and `Path::exists`, …) outside
//! the few places where a path is genuinely outside the session and project directories (the
//! state root itself, which may be a symbolic link; `/proc`), each marked with an `allow` saying
//! why.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::atomic::with_path;
use crate::error::{Result, StoreError};
use crate::secure::{refused, Problem};

/// A directory of the state root, opened without following a symbolic link: the descriptor
/// every operation on its entries goes through, and its path, for messages only.
#[derive(Debug)]
pub struct StoreDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What an entry of a directory is (its own type: a symbolic link is [`Kind::Symlink`], never
/// its target's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// Anything else (a FIFO, a socket, a device).
    Other,
}

impl Kind {
    fn of(file_type: FileType) -> Self {
        match file_type {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// One entry of a directory ([`StoreDir::entries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: OsString,
    /// Its own type.
    pub kind: Kind,
}

impl Entry {
    /// Its name as UTF-8, if it is.
    pub fn name_str(&self) -> Option<&str> {
        self.name.to_str()
    }
}

/// What `fstatat` says of an entry (or `fstat` of a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Its type (with [`StoreDir::symlink_metadata`], a link's own).
    pub kind: Kind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Size in bytes.
    pub len: u64,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Modification time.
    pub modified: SystemTime,
}

impl Meta {
    // The fields of `struct stat` have other integer types on other platforms.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    fn of(st: &rustix::fs::Stat) -> Self {
        let raw_mode = st.st_mode as u32;
        let secs = i64::from(st.st_mtime);
        let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
        let modified = match u64::try_from(secs) {
            Ok(secs) => UNIX_EPOCH + Duration::new(secs, nanos),
            Err(_) => UNIX_EPOCH,
        };
        Meta {
            kind: Kind::of(FileType::from_raw_mode(st.st_mode)),
            mode: raw_mode & 0o7777,
            uid: st.st_uid as u32,
            len: u64::try_from(st.st_size).unwrap_or(0),
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            modified,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    /// Whether both describe the same inode.
    pub fn same_inode(&self, other: &Meta) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

/// An errno as an I/O error naming `op` and `path`.
fn named(errno: Errno, op: &str, path: &Path) -> io::Error {
    with_path(io::Error::from(errno), op, path)
}

/// Refuses a name that is not one plain entry of a directory (empty, `.`, `..`, or with a `/`):
/// every operation here names exactly one entry.
fn entry_name(name: &OsStr) -> io::Result<&OsStr> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?}: not a plain file name"),
        ));
    }
    Ok(name)
}

/// The plain components of a relative path (`a/b/c`); anything else is refused.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    rel.components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain relative path", rel.display()),
            )),
        })
        .collect()
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Flags of a read: never blocked by a FIFO (`O_NONBLOCK`), never a controlling terminal.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Mode of the files csa creates (the umask may narrow it; [`StoreDir::write_atomic`] sets it
/// exactly).
const FILE_MODE: u32 = 0o600;
/// Mode of the directories csa creates.
const DIR_MODE: u32 = 0o700;

/// `bits` as a [`Mode`] (`mode_t` is a `u16` on macOS, a `u32` on Linux).
#[allow(clippy::unnecessary_cast)]
fn mode_of(bits: u32) -> Mode {
    Mode::from_raw_mode(bits as rustix::fs::RawMode)
}

impl StoreDir {
    /// Opens the state root `root`, which may be a symbolic link (to another disk, say): its
    /// target is opened and must be a directory owned by this user and not writable by group or
    /// others ([`crate::secure`]). `Ok(None)` when it does not exist. Its parents are the user's
    /// and are not checked.
    ///
    /// # Errors
    /// [`StoreError::Insecure`] naming the root; [`StoreError::Io`] for any other failure of
    /// the open, naming it.
    // The state root is the one directory opened by path: it is where the descriptors start.
    #[allow(clippy::disallowed_methods)]
    pub fn open_root(root: &Path) -> Result<Option<Self>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(root, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::NOTDIR) => return Err(refused(root, Problem::NotADirectory)),
            Err(errno) => return Err(named(errno, "open directory", root).into()),
        };
        let dir = StoreDir {
            fd,
            path: root.to_owned(),
        };
        dir.verify()?;
        Ok(Some(dir))
    }

    /// Creates the state root `root` (and its missing parents, each 0700) if missing, then
    /// opens it as [`StoreDir::open_root`] does.
    ///
    /// # Errors
    /// As [`StoreDir::open_root`], plus the error of `mkdir`, naming the path.
    // The state root and its parents are outside it: created by path.
    #[allow(clippy::disallowed_methods)]
    pub fn create_root(root: &Path) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(root)
            .map_err(|e| with_path(e, "create", root))?;
        Self::open_root(root)?.ok_or_else(|| {
            StoreError::Io(with_path(
                io::ErrorKind::NotFound.into(),
                "open directory",
                root,
            ))
        })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<path>/<name>`, for messages.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Another descriptor of the same open directory (`F_DUPFD_CLOEXEC`).
    ///
    /// # Errors
    /// The `fcntl`'s error, naming the directory.
    pub fn try_clone(&self) -> io::Result<Self> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map_err(|e| named(e, "duplicate the descriptor of", &self.path))?;
        Ok(StoreDir {
            fd,
            path: self.path.clone(),
        })
    }

    /// This directory, renamed: the same descriptor under the path `path` (after a rename that
    /// moved it).
    pub(crate) fn renamed(self, path: PathBuf) -> Self {
        StoreDir { fd: self.fd, path }
    }

    /// `fstat` of the directory itself.
    ///
    /// # Errors
    /// The `fstat`'s error, naming the directory.
    pub fn meta(&self) -> io::Result<Meta> {
        rustix::fs::fstat(&self.fd)
            .map(|st| Meta::of(&st))
            .map_err(|e| named(e, "stat", &self.path))
    }

    /// Checks the open directory (`fstat`): owned by this user (effective uid), not writable by
    /// group or others. Every directory csa writes in passes this check first.
    ///
    /// # Errors
    /// [`StoreError::Insecure`] naming it; [`StoreError::Io`] when the `fstat` fails.
    pub fn verify(&self) -> Result<()> {
        let meta = self.meta()?;
        crate::secure::owner_and_mode(&self.path, meta.uid, meta.mode)
    }

    fn open_dir_fd(&self, name: &OsStr) -> std::result::Result<OwnedFd, Errno> {
        rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())
    }

    /// Opens the directory `name` of this one without following a symbolic link, not verified
    /// (for reading; [`StoreDir::open_private_dir`] for a directory csa writes in).
    ///
    /// # Errors
    /// The open's error naming `<path>/<name>`: `NotFound` when it does not exist; an error
    /// saying so when it is a symbolic link or not a directory.
    pub fn open_dir(&self, name: impl AsRef<OsStr>) -> io::Result<StoreDir> {
        let name = entry_name(name.as_ref())?;
        let path = self.path.join(name);
        match self.open_dir_fd(name) {
            Ok(fd) => Ok(StoreDir { fd, path }),
            Err(errno) => Err(match self.problem(name, errno) {
                Some(problem) => io::Error::new(
                    if problem == Problem::Symlink {
                        io::ErrorKind::InvalidInput
                    } else {
                        io::ErrorKind::NotADirectory
                    },
                    format!("{}: {problem}", path.display()),
                ),
                None => named(errno, "open directory", &path),
            }),
        }
    }

    /// Opens the directory `name` of this one *following* a symbolic link in its place, for
    /// reading only: liveness reads the tool locks of a `locks/` that is a link (upstream's
    /// `create_dir_all` writes through one, so a live agent's lock may be there). Nothing is
    /// ever written, renamed or removed through the result. `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// The open's error naming `<path>/<name>` (`ENOTDIR` when it is not a directory).
    pub fn open_dir_for_reading(&self, name: impl AsRef<OsStr>) -> io::Result<Option<StoreDir>> {
        let name = entry_name(name.as_ref())?;
        let path = self.path.join(name);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(StoreDir { fd, path })),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(named(errno, "open directory", &path)),
        }
    }

    /// [`StoreDir::open_dir`], `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// As [`StoreDir::open_dir`], other than `NotFound`.
    pub fn open_dir_if_exists(&self, name: impl AsRef<OsStr>) -> io::Result<Option<StoreDir>> {
        match self.open_dir(name) {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the directory at the relative path `rel` below this one, one component at a time,
    /// never following a link ([`StoreDir::open_dir`] for each); `Ok(None)` when a component
    /// does not exist.
    ///
    /// # Errors
    /// As [`StoreDir::open_dir`], naming the component that failed.
    pub fn open_dir_path(&self, rel: &Path) -> io::Result<Option<StoreDir>> {
        let mut names = components(rel)?.into_iter();
        let Some(first) = names.next() else {
            return self.try_clone().map(Some);
        };
        let Some(mut dir) = self.open_dir_if_exists(first)? else {
            return Ok(None);
        };
        for name in names {
            match dir.open_dir_if_exists(name)? {
                Some(next) => dir = next,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// Opens the directory `name` of this one without following a symbolic link and verifies
    /// it ([`StoreDir::verify`]): for a directory csa writes in.
    ///
    /// # Errors
    /// [`StoreError::Insecure`] when it is a symbolic link, not a directory, another user's or
    /// writable by group or others; [`StoreError::Io`] naming it for any other failure
    /// (`NotFound` when it does not exist).
    pub fn open_private_dir(&self, name: impl AsRef<OsStr>) -> Result<StoreDir> {
        let name = entry_name(name.as_ref())?;
        let path = self.path.join(name);
        let fd = match self.open_dir_fd(name) {
            Ok(fd) => fd,
            Err(errno) => {
                return Err(match self.problem(name, errno) {
                    Some(problem) => refused(&path, problem),
                    None => named(errno, "open directory", &path).into(),
                })
            }
        };
        let dir = StoreDir { fd, path };
        dir.verify()?;
        Ok(dir)
    }

    /// [`StoreDir::open_private_dir`], `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// As [`StoreDir::open_private_dir`], other than `NotFound`.
    pub fn open_private_dir_if_exists(&self, name: impl AsRef<OsStr>) -> Result<Option<StoreDir>> {
        match self.open_private_dir(name) {
            Ok(dir) => Ok(Some(dir)),
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the directory `name` (0700) if missing, then opens and verifies it
    /// ([`StoreDir::open_private_dir`]): a link or a file in its place is refused.
    ///
    /// # Errors
    /// The error of `mkdir` (other than `EEXIST`), naming it; then as
    /// [`StoreDir::open_private_dir`].
    pub fn create_private_dir(&self, name: impl AsRef<OsStr>) -> Result<StoreDir> {
        let name = name.as_ref();
        self.mkdir(name)?;
        self.open_private_dir(name)
    }

    /// [`StoreDir::create_private_dir`] for each component of the relative path `rel`:
    /// creates what is missing (each 0700), never through a link, and returns the last.
    ///
    /// # Errors
    /// As [`StoreDir::create_private_dir`], for the first component that fails.
    pub fn create_private_path(&self, rel: &Path) -> Result<StoreDir> {
        let mut dir: Option<StoreDir> = None;
        for name in components(rel)? {
            let next = dir.as_ref().unwrap_or(self).create_private_dir(name)?;
            dir = Some(next);
        }
        match dir {
            Some(dir) => Ok(dir),
            None => Ok(self.try_clone()?),
        }
    }

    /// `mkdirat(name, 0700)`; returns whether it was created (`false`: something was there).
    ///
    /// # Errors
    /// The `mkdirat`'s error other than `EEXIST`, naming it.
    pub fn mkdir(&self, name: impl AsRef<OsStr>) -> io::Result<bool> {
        let name = entry_name(name.as_ref())?;
        match rustix::fs::mkdirat(&self.fd, name, mode_of(DIR_MODE)) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(errno) => Err(named(errno, "create", &self.path.join(name))),
        }
    }

    /// Why `name` could not be opened as a directory (`errno` from the open), when it is a
    /// symbolic link or not a directory.
    fn problem(&self, name: &OsStr, errno: Errno) -> Option<Problem> {
        match errno {
            Errno::LOOP => Some(Problem::Symlink),
            Errno::NOTDIR => {
                // A non-directory, or (on some systems) a link to one: tell which.
                let link = self
                    .symlink_metadata(name)
                    .is_ok_and(|m| m.kind == Kind::Symlink);
                Some(if link {
                    Problem::Symlink
                } else {
                    Problem::NotADirectory
                })
            }
            _ => None,
        }
    }

    /// The entries of this directory (without `.` and `..`), each with its own type (a link
    /// is [`Kind::Symlink`]). Unsorted.
    ///
    /// # Errors
    /// The error of reading the directory, naming it.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let failed = |e| named(e, "read directory", &self.path);
        let dir = rustix::fs::Dir::read_from(&self.fd).map_err(failed)?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(failed)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name).to_owned();
            let kind = match entry.file_type() {
                FileType::Unknown => match self.symlink_metadata(&name) {
                    Ok(meta) => meta.kind,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
                known => Kind::of(known),
            };
            out.push(Entry { name, kind });
        }
        Ok(out)
    }

    /// `fstatat(name, AT_SYMLINK_NOFOLLOW)`: the entry itself (a link's own metadata).
    ///
    /// # Errors
    /// The error naming `<path>/<name>` (`NotFound` when absent).
    pub fn symlink_metadata(&self, name: impl AsRef<OsStr>) -> io::Result<Meta> {
        let name = entry_name(name.as_ref())?;
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| Meta::of(&st))
            .map_err(|e| named(e, "stat", &self.path.join(name)))
    }

    /// `fstatat(rel)`, following a final symbolic link (for a file csa only reads: the size and
    /// age of a log). `rel` is one name, or a relative path whose directories are opened
    /// without following links.
    ///
    /// # Errors
    /// The error naming the path (`NotFound` when absent).
    pub fn metadata(&self, rel: impl AsRef<Path>) -> io::Result<Meta> {
        let rel = rel.as_ref();
        let (dir, last) = self.parent_of(rel)?;
        rustix::fs::statat(&dir.as_ref().unwrap_or(self).fd, last, AtFlags::empty())
            .map(|st| Meta::of(&st))
            .map_err(|e| named(e, "stat", &self.path.join(rel)))
    }

    /// The directory holding the last component of `rel` (`None`: this one) and that
    /// component, the directories opened without following links.
    fn parent_of<'a>(&self, rel: &'a Path) -> io::Result<(Option<StoreDir>, &'a OsStr)> {
        let names = components(rel)?;
        let Some((last, dirs)) = names.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
        };
        if dirs.is_empty() {
            return Ok((None, last));
        }
        let dir = self
            .open_dir_path(&dirs.iter().collect::<PathBuf>())?
            .ok_or_else(|| with_path(io::ErrorKind::NotFound.into(), "open", &self.join(rel)))?;
        Ok((Some(dir), last))
    }

    /// Whether an entry `name` exists (of any type, a link included).
    pub fn exists(&self, name: impl AsRef<OsStr>) -> bool {
        self.symlink_metadata(name).is_ok()
    }

    /// Whether the entry `name` of this directory is `dir` (the same inode, not a link to it):
    /// after a rename of a directory by name, whether what moved is the directory that was
    /// opened and locked, or something swapped in its place.
    ///
    /// # Errors
    /// The `fstatat` or `fstat` error, naming the path (`NotFound` when `name` is absent).
    pub fn same_dir(&self, name: impl AsRef<OsStr>, dir: &StoreDir) -> io::Result<bool> {
        let entry = self.symlink_metadata(name)?;
        Ok(entry.is_dir() && entry.same_inode(&dir.meta()?))
    }

    /// Opens the file at `rel` (one name, or a relative path whose directories are opened
    /// without following links) for reading: `O_NONBLOCK` (a FIFO never blocks the open),
    /// `O_NOCTTY`. A final symbolic link is followed: csa only reads what it opens here.
    ///
    /// # Errors
    /// The open's error, naming the path.
    pub fn open_read(&self, rel: impl AsRef<Path>) -> io::Result<File> {
        let rel = rel.as_ref();
        let (dir, last) = self.parent_of(rel)?;
        rustix::fs::openat(
            &dir.as_ref().unwrap_or(self).fd,
            last,
            READ_FLAGS,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|e| named(e, "open", &self.path.join(rel)))
    }

    /// Reads the whole file at `rel` (as [`StoreDir::open_read`] opens it), at most `max` bytes,
    /// returning its bytes and its metadata (from the open file, so both describe the same
    /// file). Larger files are an `InvalidData` error naming the path, so that a runaway writer
    /// never costs more than `max` bytes of memory; a FIFO, a device (`/dev/zero` behind a
    /// link) or a socket is an `InvalidData` error too, found without reading it. A regular file
    /// costs one open, one `fstat` and one read of the size `fstat` gave.
    ///
    /// # Errors
    /// Any I/O error of the open or read (naming the path), or `InvalidData` when larger than
    /// `max` or not a regular file (a directory fails the read with `EISDIR`).
    pub fn read_capped(
        &self,
        rel: impl AsRef<Path>,
        max: u64,
    ) -> io::Result<(Vec<u8>, std::fs::Metadata)> {
        let rel = rel.as_ref();
        let file = self.open_read(rel)?;
        read_open_file(file, &self.path.join(rel), max)
    }

    /// Opens (creating it 0600 if missing) the lock file `name`, read-write, with `O_NOFOLLOW`:
    /// a symbolic link in its place is an error (`ELOOP`), never followed.
    ///
    /// # Errors
    /// The open's error, naming the path.
    pub fn open_lock(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        self.open_with(name.as_ref(), flags, "open")
    }

    /// Opens the existing lock file `name` for reading, without creating it, following no link
    /// and waiting for no FIFO's writer (`O_NONBLOCK`).
    ///
    /// # Errors
    /// The open's error, naming the path (`NotFound`; `ELOOP` for a link).
    pub(crate) fn open_existing_nofollow(
        &self,
        name: impl AsRef<OsStr>,
    ) -> std::result::Result<File, (Errno, io::Error)> {
        let name = entry_name(name.as_ref()).map_err(|e| (Errno::INVAL, e))?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, flags, Mode::empty())
            .map(File::from)
            .map_err(|e| (e, named(e, "open", &self.path.join(name))))
    }

    /// Opens the file `name` for appending, creating it (0600) if missing, with `O_NOFOLLOW`.
    ///
    /// # Errors
    /// The open's error, naming the path (`ELOOP` for a link).
    pub fn open_append(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW;
        self.open_with(name.as_ref(), flags | OFlags::CLOEXEC, "open")
    }

    /// Opens the file `name` for writing, created (0600) or truncated, with `O_NOFOLLOW`.
    ///
    /// # Errors
    /// The open's error, naming the path (`ELOOP` for a link).
    pub fn create_truncated(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW;
        self.open_with(name.as_ref(), flags | OFlags::CLOEXEC, "create")
    }

    /// Creates the file `name` (0600) if missing, leaving an existing one as it is, with
    /// `O_NOFOLLOW`.
    ///
    /// # Errors
    /// The open's error, naming the path (`ELOOP` for a link).
    pub fn touch(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        self.open_with(name.as_ref(), flags, "create").map(drop)
    }

    /// Creates the new file `name` with `mode` (`O_CREAT | O_EXCL`, so never through a link
    /// nor over anything), for writing.
    ///
    /// # Errors
    /// The open's error, naming the path (`AlreadyExists` when there is something).
    pub(crate) fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let name = entry_name(name)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, flags, mode_of(mode))
            .map(File::from)
            .map_err(|e| named(e, "create", &self.path.join(name)))
    }

    fn open_with(&self, name: &OsStr, flags: OFlags, op: &str) -> io::Result<File> {
        let name = entry_name(name)?;
        rustix::fs::openat(&self.fd, name, flags, mode_of(FILE_MODE))
            .map(File::from)
            .map_err(|e| named(e, op, &self.path.join(name)))
    }

    /// Atomically writes `bytes` to the file `name` of this directory, as
    /// [`crate::atomic::write_atomic`] does (the store's one atomic writer).
    ///
    /// # Errors
    /// As [`crate::atomic::write_atomic`].
    pub fn write_atomic(
        &self,
        name: &str,
        bytes: &[u8],
        mode: u32,
        publish: crate::atomic::Publish,
    ) -> io::Result<()> {
        crate::atomic::write_atomic(self, name, bytes, mode, publish)
    }

    /// `renameat(self/from, to_dir/to)`: moves the entry itself (a link is moved, never
    /// followed), replacing `to` if it is a file or an empty directory.
    ///
    /// # Errors
    /// The rename's error, naming both paths.
    pub fn rename(
        &self,
        from: impl AsRef<OsStr>,
        to_dir: &StoreDir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        self.rename_with(from.as_ref(), to_dir, to.as_ref(), RenameFlags::empty())
    }

    /// [`StoreDir::rename`] that never replaces anything (`renameat2(RENAME_NOREPLACE)`):
    /// `AlreadyExists` when `to` exists.
    ///
    /// # Errors
    /// The rename's error, naming both paths.
    pub fn rename_noreplace(
        &self,
        from: impl AsRef<OsStr>,
        to_dir: &StoreDir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        self.rename_with(from.as_ref(), to_dir, to.as_ref(), RenameFlags::NOREPLACE)
    }

    fn rename_with(
        &self,
        from: &OsStr,
        to_dir: &StoreDir,
        to: &OsStr,
        flags: RenameFlags,
    ) -> io::Result<()> {
        let (from, to) = (entry_name(from)?, entry_name(to)?);
        let renamed = if flags.is_empty() {
            rustix::fs::renameat(&self.fd, from, &to_dir.fd, to)
        } else {
            rustix::fs::renameat_with(&self.fd, from, &to_dir.fd, to, flags)
        };
        renamed.map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "failed to rename `{}` to `{}`: {}",
                    self.path.join(from).display(),
                    to_dir.path.join(to).display(),
                    io::Error::from(e)
                ),
            )
        })
    }

    /// `linkat(self/from, to_dir/to)` without following a link at `from`: `AlreadyExists` when
    /// `to` exists (nothing is replaced).
    ///
    /// # Errors
    /// The link's error, naming both paths.
    pub fn hard_link(
        &self,
        from: impl AsRef<OsStr>,
        to_dir: &StoreDir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        let (from, to) = (entry_name(from.as_ref())?, entry_name(to.as_ref())?);
        rustix::fs::linkat(&self.fd, from, &to_dir.fd, to, AtFlags::empty()).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "failed to link `{}` to `{}`: {}",
                    self.path.join(from).display(),
                    to_dir.path.join(to).display(),
                    io::Error::from(e)
                ),
            )
        })
    }

    /// `unlinkat(name)`: removes a file or a link (never its target).
    ///
    /// # Errors
    /// The unlink's error, naming the path (`NotFound` when absent).
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = entry_name(name.as_ref())?;
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())
            .map_err(|e| named(e, "remove", &self.path.join(name)))
    }

    /// `unlinkat(name, AT_REMOVEDIR)`: removes an empty directory (a link in its place is an
    /// error, `ENOTDIR`, never followed).
    ///
    /// # Errors
    /// The unlink's error, naming the path (`NotFound` when absent; `DirectoryNotEmpty`).
    pub fn remove_dir(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = entry_name(name.as_ref())?;
        rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)
            .map_err(|e| named(e, "remove directory", &self.path.join(name)))
    }

    /// Removes the entry `name` and, when it is a directory, everything below it, through
    /// descriptors: the directory is opened without following a link, each entry is removed
    /// relative to it (a subdirectory the same way, a link or a file with `unlinkat`), then the
    /// directory itself (`unlinkat(AT_REMOVEDIR)`, which fails on a link swapped into its
    /// place). A link, wherever it is in the tree, is removed, never followed, so nothing
    /// outside the tree is reached. Something already gone counts as removed.
    ///
    /// # Errors
    /// The first error of a removal (other than absence), naming its path.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = entry_name(name.as_ref())?;
        match self.open_dir_fd(name) {
            Ok(fd) => {
                let dir = StoreDir {
                    fd,
                    path: self.path.join(name),
                };
                dir.remove_contents(&[])?;
                gone_is_fine(self.remove_dir(name))
            }
            // A link (ELOOP), or anything but a directory: the entry itself goes.
            Err(Errno::LOOP | Errno::NOTDIR) => gone_is_fine(self.remove_file(name)),
            Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(named(errno, "open directory", &self.path.join(name))),
        }
    }

    /// Removes every entry of this directory but those named in `keep`, each as
    /// [`StoreDir::remove_tree`] does.
    ///
    /// # Errors
    /// The first error of a removal (other than absence), naming its path.
    pub fn remove_contents(&self, keep: &[&str]) -> io::Result<()> {
        for entry in self.entries()? {
            if keep.iter().any(|k| entry.name == OsStr::new(k)) {
                continue;
            }
            if entry.kind == Kind::Dir {
                self.remove_tree(&entry.name)?;
            } else {
                gone_is_fine(self.remove_file(&entry.name))?;
            }
        }
        Ok(())
    }

    /// `fsync`s the directory, making the names created, renamed or removed in it durable.
    ///
    /// # Errors
    /// The fsync's error, naming the directory.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(|e| named(e, "fsync", &self.path))
    }
}

impl AsFd for StoreDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `Ok(())` for an error saying the thing is gone already.
pub(crate) fn gone_is_fine(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// [`StoreDir::read_capped`] of a file already opened (`path` names it in errors).
pub(crate) fn read_open_file(
    mut file: File,
    path: &Path,
    max: u64,
) -> io::Result<(Vec<u8>, std::fs::Metadata)> {
    let named = |e: io::Error| with_path(e, "read", path);
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
    // Empty files (and files that report no size) still have the cap bound the read.
    let mut buf = Vec::with_capacity(len + 1);
    file.take(max + 1).read_to_end(&mut buf).map_err(named)?;
    if buf.len() as u64 > max {
        return Err(too_big());
    }
    Ok((buf, metadata))
}

/// The directory at `path` (which the test made, 0700), for unit tests.
#[cfg(test)]
pub(crate) fn test_dir(path: &Path) -> StoreDir {
    StoreDir::open_root(path)
        .expect("open the test directory")
        .expect("the test directory exists")
}

#[cfg(test)]
// Tests lay out their files by path, as another program would.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private_tmp() -> (tempfile::TempDir, StoreDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs_err::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let dir = StoreDir::open_root(tmp.path())
            .expect("open")
            .expect("exists");
        (tmp, dir)
    }

    #[test]
    fn reads_relative_and_names_full_paths_in_errors() {
        let (tmp, d) = private_tmp();
        fs_err::create_dir(tmp.path().join("a")).expect("mkdir");
        fs_err::write(tmp.path().join("a/f"), "hello").expect("write");
        assert_eq!(d.read_capped("a/f", 100).expect("read").0, b"hello");
        let err = d.read_capped("a/missing", 100).expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err
            .to_string()
            .contains(&tmp.path().join("a/missing").display().to_string()));
        let err = d.read_capped("a/f", 2).expect_err("too big");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            d.read_capped("../x", 2).is_err(),
            "never above the directory"
        );
    }

    #[test]
    fn never_through_a_linked_directory_and_links_are_removed_not_followed() {
        let (tmp, d) = private_tmp();
        let outside = tempfile::tempdir().expect("tempdir");
        fs_err::write(outside.path().join("keep"), "keep").expect("write");
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("link")).expect("symlink");
        assert!(d.open_dir("link").is_err());
        assert!(matches!(
            d.open_private_dir("link"),
            Err(StoreError::Insecure(i)) if i.problem == Problem::Symlink
        ));
        assert!(
            d.read_capped("link/keep", 100).is_err(),
            "no read through it"
        );
        assert!(d.open_append("link").is_err());
        // A tree full of links is removed without touching what they point to.
        fs_err::create_dir_all(tmp.path().join("t/a/b")).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("t/a/b/l")).expect("ln");
        std::os::unix::fs::symlink(outside.path().join("keep"), tmp.path().join("t/f"))
            .expect("ln");
        d.remove_tree("t").expect("remove");
        d.remove_tree("link").expect("remove the link");
        assert!(!tmp.path().join("t").exists() && !tmp.path().join("link").exists());
        assert_eq!(
            fs_err::read(outside.path().join("keep")).expect("read"),
            b"keep"
        );
    }

    #[test]
    fn a_directory_renamed_away_is_still_the_one_written_to() {
        let (tmp, d) = private_tmp();
        let sub = d.create_private_dir("s").expect("mkdir");
        let other = d.create_private_dir("o").expect("mkdir");
        assert!(d.same_dir("s", &sub).expect("stat"));
        assert!(!d.same_dir("o", &sub).expect("stat"));
        d.rename("s", &d, "moved").expect("rename");
        sub.write_atomic("f", b"x", 0o600, crate::atomic::Publish::Replace)
            .expect("write");
        assert_eq!(
            fs_err::read(tmp.path().join("moved/f")).expect("read"),
            b"x"
        );
        drop(other);
        let err = d
            .rename_noreplace("moved", &d, "o")
            .expect_err("never replaces");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }
}
