//! Who may own and write csa's directories, and how csa creates and opens them without following
//! symbolic links.
//!
//! The state root and every directory csa creates under it (project-key directories,
//! `sessions/`, session directories, `.csa-active/`, `locks/`, the turn history) must be a real
//! directory owned by the user csa runs as (its effective uid) and not writable by group or
//! others. Anyone else who can write one of them can plant a symbolic link or a forged session
//! there and have csa write, rename, delete or signal on their behalf, so csa refuses such a
//! directory with an [`InsecureDir`] error that names it and says how to fix it
//! ([`InsecureDir::hint`]). The state root's parents are not checked (they are the user's, like
//! `~/.local/state`), and the state root itself may be a symbolic link (to another disk, say):
//! its target is checked. Inside the root, a symbolic link in place of any of these directories
//! is refused, never followed.
//!
//! When csa checks (the cost is a few `stat`s, never one per session on a read-only path):
//! - once per command, [`check_root`] for each state root and [`check_project`] for each project
//!   the command covers (its key's directories, `sessions/` and `.csa-active/`): what a command
//!   reads and writes lives below these;
//! - a session directory when csa is about to mutate it: [`open_session_dir`], which the session
//!   lock ([`crate::lock`]) goes through, opens it with `O_NOFOLLOW` and checks the open
//!   directory itself (`fstat`), so the check and the lock are about the same inode;
//! - every directory of every session in `csa debug check` ([`check_session_dir`]).
//!
//! Once `sessions/` is known to be the user's and closed to others, only the user (or root) can
//! replace anything below it; the no-follow rules (lock files opened with `O_NOFOLLOW`, the
//! directories csa creates inside a session made by [`create_dirs_under`], deletion by
//! `remove_dir_all`, which removes links and never their targets) keep a link planted by the
//! user's own tools (an agent runs as the user, in its session directory) from sending a write,
//! a rename or a deletion outside the state root.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, Mode};

use crate::active::ACTIVE_DIR;
use crate::atomic::with_path;
use crate::error::{Result, StoreError};
use crate::paths::Project;

/// Permission bits that let someone other than the owner create, rename or delete entries.
const GROUP_OTHER_WRITE: u32 = 0o022;

/// What is wrong with a directory csa refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// It is a symbolic link where csa keeps a directory of its own.
    Symlink,
    /// It is something other than a directory (a file, a FIFO, …).
    NotADirectory,
    /// It is owned by another user.
    Owner {
        /// Its owner's uid.
        uid: u32,
        /// The uid csa runs as (effective).
        euid: u32,
    },
    /// Group or others may write it.
    Writable {
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Symlink => write!(f, "is a symbolic link, not a directory"),
            Problem::NotADirectory => write!(f, "is not a directory"),
            Problem::Owner { uid, euid } => {
                write!(
                    f,
                    "is owned by uid {uid}, not by the user running csa (uid {euid})"
                )
            }
            Problem::Writable { mode } => {
                write!(f, "is writable by group or others (mode {mode:04o})")
            }
        }
    }
}

/// A directory of the state root that csa refuses to use (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}: csa refuses to use it", path.display())]
pub struct InsecureDir {
    /// The directory.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

impl InsecureDir {
    /// The command that fixes it.
    pub fn hint(&self) -> String {
        let path = shell_quote(&self.path.to_string_lossy()).into_owned();
        match self.problem {
            Problem::Writable { .. } => format!("chmod 700 {path}"),
            Problem::Owner { euid, .. } => format!(
                "if it is yours: chown {euid} {path} (as root); otherwise move it aside, or use another --state-dir"
            ),
            Problem::Symlink => format!(
                "csa never writes through a symbolic link: remove the link (rm {path}) or move the real directory into its place"
            ),
            Problem::NotADirectory => {
                format!("move it aside (mv {path} {path}.bak); csa recreates the directory")
            }
        }
    }
}

fn refused(path: &Path, problem: Problem) -> StoreError {
    StoreError::Insecure(InsecureDir {
        path: path.to_owned(),
        problem,
    })
}

/// The owner and permission rule, for a directory's `uid` and `mode`.
fn owner_and_mode(path: &Path, uid: u32, mode: u32) -> Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    if uid != euid {
        return Err(refused(path, Problem::Owner { uid, euid }));
    }
    if mode & GROUP_OTHER_WRITE != 0 {
        return Err(refused(
            path,
            Problem::Writable {
                mode: mode & 0o7777,
            },
        ));
    }
    Ok(())
}

/// Checks a state root: when it exists, it (or, if it is a symbolic link, its target) must be a
/// directory owned by this user and not writable by group or others. Its parents are not
/// checked. One `stat`. Returns whether it exists.
///
/// # Errors
/// [`StoreError::Insecure`] naming the root; [`StoreError::Io`] when it cannot be examined
/// (other than not existing).
pub fn check_root(root: &Path) -> Result<bool> {
    let meta = match fs_err::metadata(root) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_dir() {
        return Err(refused(root, Problem::NotADirectory));
    }
    owner_and_mode(root, meta.uid(), meta.mode())?;
    Ok(true)
}

/// Checks one directory inside a state root without following a symbolic link (`lstat`): when
/// it exists, it must be a real directory owned by this user and not writable by group or
/// others. Returns whether it exists.
///
/// # Errors
/// [`StoreError::Insecure`] naming it; [`StoreError::Io`] when it cannot be examined (other
/// than not existing).
pub fn check_dir(path: &Path) -> Result<bool> {
    let meta = match fs_err::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if meta.file_type().is_symlink() {
        return Err(refused(path, Problem::Symlink));
    }
    if !meta.is_dir() {
        return Err(refused(path, Problem::NotADirectory));
    }
    owner_and_mode(path, meta.uid(), meta.mode())?;
    Ok(true)
}

/// Checks the directories of `project` under `root` (which the caller has checked with
/// [`check_root`]): each directory of its key, then `sessions/`, then `sessions/.csa-active/`,
/// with [`check_dir`], stopping at the first that does not exist (nothing below it does). One
/// `lstat` per key component plus two.
///
/// # Errors
/// As [`check_dir`], for the first directory that fails.
pub fn check_project(root: &Path, project: &Project) -> Result<()> {
    let rel = project
        .sessions_dir
        .strip_prefix(root)
        .unwrap_or(&project.sessions_dir);
    let mut path = root.to_owned();
    for component in rel.components() {
        match component {
            Component::Normal(name) => path.push(name),
            // Project keys are relative paths of plain names; anything else is not below the root.
            _ => continue,
        }
        if !check_dir(&path)? {
            return Ok(());
        }
    }
    check_dir(&project.sessions_dir.join(ACTIVE_DIR))?;
    Ok(())
}

/// Checks a session directory with [`check_dir`] (for `csa debug check`; commands that mutate a
/// session check it through [`open_session_dir`]).
///
/// # Errors
/// As [`check_dir`].
pub fn check_session_dir(dir: &Path) -> Result<bool> {
    check_dir(dir)
}

/// Opens a session directory for a mutation: `O_DIRECTORY | O_NOFOLLOW` (a symbolic link in its
/// place is refused, never followed), then checks the open directory (`fstat`): owned by this
/// user, not writable by group or others. Files are then opened relative to the returned
/// descriptor ([`open_lock_in`]), so they are in the directory that was checked.
///
/// # Errors
/// [`StoreError::Insecure`] naming the directory; [`StoreError::Io`] naming it for any other
/// failure (`NotFound` when it does not exist).
pub fn open_session_dir(dir: &Path) -> Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match open(dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => return Err(refused(dir, Problem::Symlink)),
        Err(Errno::ENOTDIR) => {
            // Either a non-directory, or a symlink to one: tell which.
            let is_link = fs_err::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
            let problem = if is_link {
                Problem::Symlink
            } else {
                Problem::NotADirectory
            };
            return Err(refused(dir, problem));
        }
        Err(errno) => return Err(with_path(errno.into(), "open directory", dir).into()),
    };
    let stat = fstat(&fd).map_err(|e| with_path(e.into(), "stat", dir))?;
    // `st_mode` is a `u16` on macOS, a `u32` on Linux.
    #[allow(clippy::useless_conversion)]
    let mode = u32::from(stat.st_mode);
    owner_and_mode(dir, stat.st_uid, mode)?;
    Ok(fd)
}

/// Opens (creating it 0600 if missing) the lock file `name` in the directory `dir_fd` (opened
/// by [`open_session_dir`]; `path` names the file in errors), with `O_NOFOLLOW`: a symbolic link
/// in its place is an error, never followed.
///
/// # Errors
/// The open's error, naming `path` (`ELOOP` for a symbolic link).
pub fn open_lock_in(dir_fd: &OwnedFd, name: &str, path: &Path) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir_fd, name, flags, Mode::from_bits_truncate(0o600))
        .map_err(|e| with_path(e.into(), "open", path))?;
    Ok(File::from(fd))
}

/// Creates `base/rel` and its missing parents below `base`, each 0700, without following a
/// symbolic link: every component that already exists must be a real directory (`lstat`), so a
/// link planted in a session (`output -> /elsewhere`) is refused instead of receiving csa's
/// files. `base` itself is not checked (the caller has). Returns `base/rel`.
///
/// # Errors
/// [`StoreError::Insecure`] naming a component that is a symbolic link or not a directory;
/// [`StoreError::Io`] for a failed `mkdir`, naming the path.
pub fn create_dirs_under(base: &Path, rel: &Path) -> Result<PathBuf> {
    let mut path = base.to_owned();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain relative path", rel.display()),
            )
            .into());
        };
        path.push(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = fs_err::symlink_metadata(&path)?;
                if meta.file_type().is_symlink() {
                    return Err(refused(&path, Problem::Symlink));
                }
                if !meta.is_dir() {
                    return Err(refused(&path, Problem::NotADirectory));
                }
            }
            Err(e) => return Err(with_path(e, "create", &path).into()),
        }
    }
    Ok(path)
}

/// `s` quoted for a POSIX shell, for the commands csa prints in hints: unchanged when it is
/// made only of characters no shell treats specially, otherwise in single quotes (each `'`
/// written `'\''`). So a path or an argument copied from a hint into a shell is one word, taken
/// literally.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    if plain {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn private_directories_pass_and_writable_ones_are_refused_with_the_fix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("d");
        fs_err::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o755);
        assert!(check_dir(&dir).expect("0755 is not writable by others"));
        for mode in [0o775, 0o757, 0o777, 0o1777] {
            chmod(&dir, mode);
            let err = check_dir(&dir).expect_err("writable");
            let StoreError::Insecure(insecure) = err else {
                panic!("{err}");
            };
            assert_eq!(insecure.problem, Problem::Writable { mode });
            assert_eq!(insecure.hint(), format!("chmod 700 {}", dir.display()));
        }
        assert!(!check_dir(&tmp.path().join("missing")).expect("absent is fine"));
    }

    #[test]
    fn links_are_refused_inside_the_root_but_the_root_may_be_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = tmp.path().join("real");
        fs_err::create_dir(&real).expect("mkdir");
        chmod(&real, 0o700);
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(check_root(&link).expect("a root may be a link to a private dir"));
        let err = check_dir(&link).expect_err("inside the root, a link is refused");
        assert!(
            matches!(&err, StoreError::Insecure(i) if i.problem == Problem::Symlink),
            "{err}"
        );
        let err = open_session_dir(&link).expect_err("never opened through a link");
        assert!(
            matches!(&err, StoreError::Insecure(i) if i.problem == Problem::Symlink),
            "{err}"
        );
        assert!(open_session_dir(&real).is_ok());
    }

    #[test]
    fn project_check_walks_the_key_and_stops_at_what_is_missing() {
        let root = tempfile::tempdir().expect("tempdir");
        let project = Project::new(root.path(), "home/u/p");
        assert!(check_project(root.path(), &project).is_ok(), "nothing yet");
        crate::create::create_private_dirs(&project.sessions_dir).expect("mkdir");
        assert!(check_project(root.path(), &project).is_ok());
        let middle = root.path().join("home/u");
        chmod(&middle, 0o777);
        let err = check_project(root.path(), &project).expect_err("writable key directory");
        assert!(
            matches!(&err, StoreError::Insecure(i) if i.path == middle),
            "{err}"
        );
        chmod(&middle, 0o700);
        std::os::unix::fs::symlink(
            root.path(),
            project.sessions_dir.join(crate::active::ACTIVE_DIR),
        )
        .expect("symlink");
        let err = check_project(root.path(), &project).expect_err(".csa-active is a link");
        assert!(
            matches!(&err, StoreError::Insecure(i) if i.problem == Problem::Symlink),
            "{err}"
        );
    }

    #[test]
    fn create_dirs_under_refuses_a_planted_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let session = tmp.path().join("s");
        let outside = tmp.path().join("outside");
        fs_err::create_dir(&session).expect("mkdir");
        fs_err::create_dir(&outside).expect("mkdir");
        let made =
            create_dirs_under(&session, Path::new("output/turns/turn-000001")).expect("mkdir");
        assert!(made.is_dir());
        assert_eq!(fs_err::metadata(&made).expect("stat").mode() & 0o777, 0o700);
        fs_err::remove_dir_all(session.join("output")).expect("rm");
        std::os::unix::fs::symlink(&outside, session.join("output")).expect("symlink");
        let err = create_dirs_under(&session, Path::new("output/turns/turn-000001"))
            .expect_err("through a link");
        assert!(
            matches!(&err, StoreError::Insecure(i) if i.problem == Problem::Symlink),
            "{err}"
        );
        assert_eq!(fs_err::read_dir(&outside).expect("ls").count(), 0);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("$(x);|*"), "'$(x);|*'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
