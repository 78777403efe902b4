//! Who may own and write csa's directories, and the checks that refuse the others.
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
//! The checks are made on open directories ([`crate::dirfd::StoreDir`]: opened with
//! `O_NOFOLLOW`, then `fstat`), so a check and the operations after it are about the same
//! inode, whatever is renamed meanwhile. When csa checks (a few `openat`/`fstat`s, never one
//! per session on a read-only path):
//! - once per command, [`check_root`] for each state root and [`check_project`] for each project
//!   the command covers (its key's directories, `sessions/` and `.csa-active/`): what a command
//!   reads and writes lives below these, reached through the same walk
//!   ([`crate::paths::Project::open_sessions`]);
//! - a session directory when csa is about to mutate it: its lock ([`crate::lock`]) verifies
//!   the open directory before creating anything in it, and every mutation goes through the
//!   descriptor the lock holds;
//! - every directory of every session in `csa debug check` ([`check_session_dir`]).
//!
//! Once `sessions/` is known to be the user's and closed to others, only the user (or root) can
//! replace anything below it; the descriptor discipline ([`crate::dirfd`]) keeps a link planted
//! or swapped in by the user's own tools (an agent runs as the user, in its session directory)
//! from sending a write, a rename or a deletion outside the state root.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::dirfd::StoreDir;
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

pub(crate) fn refused(path: &Path, problem: Problem) -> StoreError {
    StoreError::Insecure(InsecureDir {
        path: path.to_owned(),
        problem,
    })
}

/// The owner and permission rule, for a directory's `uid` and `mode`.
pub(crate) fn owner_and_mode(path: &Path, uid: u32, mode: u32) -> Result<()> {
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
/// directory owned by this user and not writable by group or others (the check
/// [`StoreDir::open_root`] repeats on the open root). Its parents are not checked. One `stat`,
/// and nothing opened: commands check their roots before they validate their arguments.
/// Returns whether it exists.
///
/// # Errors
/// [`StoreError::Insecure`] naming the root; [`StoreError::Io`] when it cannot be examined
/// (other than not existing).
// The state root itself, which may be a symbolic link: where the descriptors start.
#[allow(clippy::disallowed_methods)]
pub fn check_root(root: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = match fs_err::metadata(root) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_dir() {
        return Err(refused(root, Problem::NotADirectory));
    }
    owner_and_mode(root, meta.uid(), meta.mode())?;
    Ok(true)
}

/// Checks the directories of `project`: each directory of its key, then `sessions/`, then
/// `sessions/.csa-active/`, opened from the state root one at a time without following a
/// link and verified, stopping at the first that does not exist (nothing below it does).
///
/// # Errors
/// [`StoreError::Insecure`] for the first directory that fails; [`StoreError::Io`] when one
/// cannot be opened (other than not existing).
pub fn check_project(project: &Project) -> Result<()> {
    if let Some(sessions) = project.open_sessions()? {
        sessions.open_private_dir_if_exists(crate::active::ACTIVE_DIR)?;
    }
    Ok(())
}

/// Checks the session directory `id` of the open `sessions/` (for `csa debug check` and
/// `csa doctor`; commands that mutate a session check it through its lock): it must be a real
/// directory of this user, not writable by group or others. Returns whether it exists.
///
/// # Errors
/// [`StoreError::Insecure`] naming it; [`StoreError::Io`] when it cannot be examined (other
/// than not existing).
pub fn check_session_dir(sessions: &StoreDir, id: &str) -> Result<bool> {
    Ok(sessions.open_private_dir_if_exists(id)?.is_some())
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
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn chmod(path: &Path, mode: u32) {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn problem(result: Result<bool>) -> Option<Problem> {
        match result {
            Err(StoreError::Insecure(i)) => Some(i.problem),
            _ => None,
        }
    }

    #[test]
    fn private_directories_pass_and_writable_ones_are_refused_with_the_fix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sessions = crate::dirfd::test_dir(tmp.path());
        let dir = tmp.path().join("d");
        fs_err::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o755);
        assert!(check_session_dir(&sessions, "d").expect("0755 is not writable by others"));
        for mode in [0o775, 0o757, 0o777, 0o1777] {
            chmod(&dir, mode);
            let err = check_session_dir(&sessions, "d").expect_err("writable");
            let StoreError::Insecure(insecure) = err else {
                panic!("{err}");
            };
            assert_eq!(insecure.problem, Problem::Writable { mode });
            assert_eq!(insecure.hint(), format!("chmod 700 {}", dir.display()));
        }
        assert!(!check_session_dir(&sessions, "missing").expect("absent is fine"));
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
        let parent = crate::dirfd::test_dir(tmp.path());
        assert_eq!(
            problem(check_session_dir(&parent, "link")),
            Some(Problem::Symlink),
            "inside the root, a link is refused"
        );
        assert!(check_session_dir(&parent, "real").expect("real"));
    }

    #[test]
    fn project_check_walks_the_key_and_stops_at_what_is_missing() {
        let root = tempfile::tempdir().expect("tempdir");
        let project = Project::new(root.path(), "home/u/p");
        assert!(check_project(&project).is_ok(), "nothing yet");
        project.create_sessions().expect("mkdir");
        assert!(check_project(&project).is_ok());
        let middle = root.path().join("home/u");
        chmod(&middle, 0o777);
        let err = check_project(&project).expect_err("writable key directory");
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
        let err = check_project(&project).expect_err(".csa-active is a link");
        assert!(
            matches!(&err, StoreError::Insecure(i) if i.problem == Problem::Symlink),
            "{err}"
        );
    }

    #[test]
    fn created_directories_refuse_a_planted_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let session = tmp.path().join("s");
        let outside = tmp.path().join("outside");
        fs_err::create_dir(&session).expect("mkdir");
        fs_err::create_dir(&outside).expect("mkdir");
        let dir = crate::dirfd::test_dir(&session);
        let made = dir
            .create_private_path(Path::new("output/turns/turn-000001"))
            .expect("mkdir");
        assert!(made.path().is_dir());
        assert_eq!(
            fs_err::metadata(made.path()).expect("stat").mode() & 0o777,
            0o700
        );
        fs_err::remove_dir_all(session.join("output")).expect("rm");
        std::os::unix::fs::symlink(&outside, session.join("output")).expect("symlink");
        let err = dir
            .create_private_path(Path::new("output/turns/turn-000001"))
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
