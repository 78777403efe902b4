//! Where sessions live: state roots, project keys, session directories, session ids.
//!
//! Layout (upstream `cli-sub-agent`, see docs/format.md):
//! `<root>/<project key>/sessions/<ULID>/`, where the root is resolved as upstream resolves it
//! ([`StateRoots::resolve`]: on Linux `$XDG_STATE_HOME/cli-sub-agent`, default
//! `~/.local/state/cli-sub-agent`; on macOS `~/Library/Application Support/cli-sub-agent`; the
//! legacy root of the same rule with the name `csa` is read too) and the project key is the
//! canonical project directory without its leading `/`.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use crate::dirfd::{Kind, StoreDir};
use crate::error::{Result, StoreError};

/// Name of the per-project directory holding session directories.
pub const SESSIONS_DIR: &str = "sessions";

/// The state roots csa reads, primary first.
#[derive(Debug, Clone)]
pub struct StateRoots {
    roots: Vec<PathBuf>,
}

impl StateRoots {
    /// Resolves the roots: `state_dir` alone when given (the global `--state-dir`); otherwise
    /// the two roots upstream reads (its `csa-config` `paths::state_dir_all_roots`): the
    /// `directories` crate's `ProjectDirs` state directory of the application `cli-sub-agent`,
    /// falling back to its local data directory where the platform has no state directory,
    /// then the same for the legacy name `csa` (left out when it is the primary root under
    /// another spelling, such as a symbolic link upstream's migration made). So:
    ///
    /// - Linux: `$XDG_STATE_HOME/cli-sub-agent`, with `XDG_STATE_HOME` defaulting to
    ///   `$HOME/.local/state` when unset or not absolute (the XDG Base Directory
    ///   specification); legacy `…/csa`;
    /// - macOS: `~/Library/Application Support/cli-sub-agent` (`XDG_STATE_HOME` is not read
    ///   there, as upstream does not); legacy `…/csa`.
    ///
    /// `$HOME` is the home directory, or the password database's when it is unset or empty.
    ///
    /// # Errors
    /// [`StoreError::NoStateRoot`] when no root can be determined, or it would not be an
    /// absolute path (a relative `$HOME`: csa never resolves a state root against the current
    /// directory).
    pub fn resolve(state_dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = state_dir {
            return Ok(StateRoots {
                roots: vec![absolute(dir)?],
            });
        }
        let primary = project_state_dir(APP_NAME).ok_or(StoreError::NoStateRoot)?;
        let mut roots = vec![primary];
        if let Some(legacy) = project_state_dir(LEGACY_APP_NAME) {
            if !same_directory(&roots[0], &legacy) {
                roots.push(legacy);
            }
        }
        Ok(StateRoots { roots })
    }

    /// The root new sessions are created in.
    pub fn primary(&self) -> &Path {
        &self.roots[0]
    }

    /// Every root, primary first.
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(PathBuf::as_path)
    }
}

/// Upstream's application name: the primary root's last component.
pub const APP_NAME: &str = "cli-sub-agent";
/// Upstream's legacy application name, still read.
pub const LEGACY_APP_NAME: &str = "csa";

/// Upstream's `project_state_dir`: `ProjectDirs::from("", "", app)`'s state directory, or its
/// local data directory where there is none (macOS). `None` without a home directory, or
/// when the result is not absolute.
fn project_state_dir(app: &str) -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", app)
        .map(|dirs| {
            dirs.state_dir()
                .unwrap_or_else(|| dirs.data_local_dir())
                .to_path_buf()
        })
        .filter(|p| p.is_absolute())
}

/// Whether `a` and `b` name one directory (equal, or both exist and resolve to the same
/// path), as upstream de-duplicates its roots.
// State roots themselves, not paths inside one: a root may be a symbolic link (docs/format.md).
#[allow(clippy::disallowed_methods)]
fn same_directory(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (fs_err::canonicalize(a), fs_err::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

fn absolute(path: &Path) -> io::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

/// A project directory: its canonical path and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectDir {
    /// `fs::canonicalize` of the directory given.
    pub path: PathBuf,
    /// The project key: [`ProjectDir::path`] without its leading `/`.
    pub key: String,
}

/// Why a directory cannot name a project ([`project_dir`]).
#[derive(Debug, thiserror::Error)]
pub enum ProjectDirError {
    /// It does not exist, or cannot be resolved (the error names the path).
    #[error("no such directory")]
    Missing(#[source] io::Error),
    /// It exists but is not a directory (a regular file, a device, …).
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// Its canonical path is not valid UTF-8. Project paths are stored in state.toml, and a
    /// TOML string holds only UTF-8, so two such directories (`n\xff`, `n\xfe`) would share one
    /// key; csa refuses them. Printed with escapes (`"/tmp/n\xFF"`), so the message names it
    /// exactly.
    #[error("{0:?}: the path is not valid UTF-8, which state.toml cannot hold exactly: csa refuses it as a project directory")]
    NotUtf8(PathBuf),
}

/// The project directory `dir` names: its canonical path (`fs::canonicalize`), which must be a
/// directory whose path is valid UTF-8, and its key (the path without its leading `/`), so that
/// every spelling of one directory (relative, trailing slash, through a symlink) has one key,
/// and two directories never share one.
///
/// # Errors
/// [`ProjectDirError::Missing`] when `canonicalize` fails (its error names the path);
/// [`ProjectDirError::NotADirectory`]; [`ProjectDirError::NotUtf8`]. Regression: the key was
/// made with `to_string_lossy`, so `n\xff` and `n\xfe` both had the key `n\u{FFFD}`, and a
/// `run --cd` in one reported the other busy.
// The project directory is the user's, outside the state root: resolved by path.
#[allow(clippy::disallowed_methods)]
pub fn project_dir(dir: &Path) -> Result<ProjectDir, ProjectDirError> {
    let path = fs_err::canonicalize(dir).map_err(ProjectDirError::Missing)?;
    let meta = fs_err::metadata(&path).map_err(ProjectDirError::Missing)?;
    if !meta.is_dir() {
        return Err(ProjectDirError::NotADirectory(path));
    }
    let Some(text) = path.to_str() else {
        return Err(ProjectDirError::NotUtf8(path));
    };
    let key = text.trim_start_matches('/').to_owned();
    Ok(ProjectDir { path, key })
}

/// The project key of `dir` ([`project_dir`]).
///
/// # Errors
/// As [`project_dir`].
pub fn project_key(dir: &Path) -> Result<String, ProjectDirError> {
    project_dir(dir).map(|p| p.key)
}

/// One project's session directory under one state root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The project key (`home/user/project`).
    pub key: String,
    /// The state root it is under.
    pub root: PathBuf,
    /// `<root>/<key>/sessions`: for messages (files are reached through
    /// [`Project::open_sessions`]).
    pub sessions_dir: PathBuf,
}

impl Project {
    /// The project with key `key` under `root` (whether or not it exists).
    pub fn new(root: &Path, key: &str) -> Self {
        Project {
            key: key.to_owned(),
            root: root.to_owned(),
            sessions_dir: root.join(key).join(SESSIONS_DIR),
        }
    }

    /// The session directory of `id` in this project, for messages.
    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.sessions_dir.join(id)
    }

    /// The key's directories, in order (`home`, `user`, `project`).
    fn key_components(&self) -> impl Iterator<Item = &str> {
        self.key.split('/').filter(|c| !c.is_empty())
    }

    /// Opens `<root>/<key>/sessions` from the state root, one directory at a time, never
    /// following a symbolic link, and verifies each ([`StoreDir::open_private_dir`]): the
    /// descriptor every file of the project is reached through. `Ok(None)` when a directory on
    /// the way does not exist (the project has no sessions).
    ///
    /// # Errors
    /// [`StoreError::Insecure`] for the first directory that is a link, not a directory,
    /// another user's or writable by group or others; [`StoreError::Io`] naming it otherwise.
    pub fn open_sessions(&self) -> Result<Option<StoreDir>> {
        let Some(mut dir) = StoreDir::open_root(&self.root)? else {
            return Ok(None);
        };
        for name in self.key_components() {
            match dir.open_private_dir_if_exists(name)? {
                Some(next) => dir = next,
                None => return Ok(None),
            }
        }
        dir.open_private_dir_if_exists(SESSIONS_DIR)
    }

    /// [`Project::open_sessions`], creating what is missing (the state root and its parents,
    /// each directory of the key and `sessions/`, 0700).
    ///
    /// # Errors
    /// As [`Project::open_sessions`], plus the error of a `mkdir`, naming it.
    pub fn create_sessions(&self) -> Result<StoreDir> {
        let mut dir = StoreDir::create_root(&self.root)?;
        for name in self.key_components() {
            dir = dir.create_private_dir(name)?;
        }
        dir.create_private_dir(SESSIONS_DIR)
    }

    /// Opens the session directory of `id` ([`Project::open_sessions`], then `<ULID>` without
    /// following a link). Not verified: reading needs no more, and the session's lock verifies
    /// the directory before anything is written in it ([`crate::lock::ReconcileLock`]).
    ///
    /// # Errors
    /// As [`Project::open_sessions`]; [`StoreError::Io`] `NotFound` naming the session
    /// directory when it (or the project) does not exist; [`StoreError::Insecure`] when it is a
    /// symbolic link or not a directory.
    pub fn open_session(&self, id: &str) -> Result<StoreDir> {
        let Some(sessions) = self.open_sessions()? else {
            return Err(StoreError::Io(crate::atomic::with_path(
                io::ErrorKind::NotFound.into(),
                "open directory",
                &self.session_dir(id),
            )));
        };
        open_session_in(&sessions, id)
    }

    /// The projects in the directories below this project's (`<root>/<key>/…/sessions`, not
    /// this project's own `sessions/`), found as [`all_projects`] finds them, from this
    /// project's key directory opened as [`Project::open_sessions`] opens it. Sorted by key.
    ///
    /// # Errors
    /// As [`Project::open_sessions`] for the key's directories; then as [`all_projects`].
    pub fn nested(&self) -> Result<Vec<Project>> {
        let Some(mut dir) = StoreDir::open_root(&self.root)? else {
            return Ok(Vec::new());
        };
        for name in self.key_components() {
            match dir.open_private_dir_if_exists(name)? {
                Some(next) => dir = next,
                None => return Ok(Vec::new()),
            }
        }
        let mut below = Vec::new();
        walk_projects(&self.root, &dir, Path::new(&self.key), &mut below)?;
        below.retain(|p| p.key != self.key);
        below.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(below)
    }

    /// Opens the session `id`: its project's `sessions/` ([`Project::open_sessions`]) and its
    /// directory ([`open_session_in`]).
    ///
    /// # Errors
    /// As [`Project::open_session`].
    pub fn open(&self, id: &str) -> Result<OpenSession> {
        let Some(sessions) = self.open_sessions()? else {
            return Err(StoreError::Io(crate::atomic::with_path(
                io::ErrorKind::NotFound.into(),
                "open directory",
                &self.session_dir(id),
            )));
        };
        let dir = open_session_in(&sessions, id)?;
        Ok(OpenSession {
            id: id.to_owned(),
            sessions,
            dir,
        })
    }

    /// The ids of this project's sessions: the entries of `sessions/` that are directories
    /// named by a ULID. Entries starting with `.` (csa's own records, temp files) and anything
    /// else are not sessions. A missing `sessions/` has no sessions.
    ///
    /// # Errors
    /// [`Project::open_sessions`]'s errors, and any I/O error reading the directory.
    pub fn session_ids(&self) -> Result<Vec<String>> {
        match self.open_sessions()? {
            Some(sessions) => Ok(session_ids_in(&sessions)?),
            None => Ok(Vec::new()),
        }
    }
}

/// A session opened for reading or (under its lock) writing: its project's `sessions/` and its
/// own directory, both opened from the state root without following a link.
#[derive(Debug)]
pub struct OpenSession {
    /// The session's ULID.
    pub id: String,
    /// Its project's `sessions/` (verified).
    pub sessions: StoreDir,
    /// Its directory (not verified until its lock is taken).
    pub dir: StoreDir,
}

impl OpenSession {
    /// Another descriptor of each directory ([`StoreDir::try_clone`]).
    ///
    /// # Errors
    /// As [`StoreDir::try_clone`].
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(OpenSession {
            id: self.id.clone(),
            sessions: self.sessions.try_clone()?,
            dir: self.dir.try_clone()?,
        })
    }

    /// Whether the directory opened is still the one at `sessions/<ULID>`: not renamed away
    /// (deleted, quarantined) or swapped for something else since it was opened.
    ///
    /// # Errors
    /// The `fstatat`'s error other than absence, naming the path.
    pub fn in_place(&self) -> io::Result<bool> {
        match self.sessions.same_dir(&self.id, &self.dir) {
            Ok(same) => Ok(same),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Opens the session directory `id` of the open `sessions/` directory without following a link
/// (not verified: see [`Project::open_session`]).
///
/// # Errors
/// [`StoreError::Insecure`] when it is a symbolic link or not a directory; [`StoreError::Io`]
/// naming it otherwise (`NotFound` when absent).
pub fn open_session_in(sessions: &StoreDir, id: &str) -> Result<StoreDir> {
    match sessions.open_dir(id) {
        Ok(dir) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e.into()),
        Err(e) => match sessions.symlink_metadata(id) {
            Ok(meta) if meta.kind == Kind::Symlink => Err(crate::secure::refused(
                &sessions.join(id),
                crate::secure::Problem::Symlink,
            )),
            Ok(meta) if !meta.is_dir() => Err(crate::secure::refused(
                &sessions.join(id),
                crate::secure::Problem::NotADirectory,
            )),
            _ => Err(e.into()),
        },
    }
}

/// The session ids in the open `sessions/` directory (see [`Project::session_ids`]).
///
/// # Errors
/// Any I/O error reading the directory.
pub fn session_ids_in(sessions: &StoreDir) -> io::Result<Vec<String>> {
    let mut ids = Vec::new();
    for entry in sessions.entries()? {
        // The entry's own type: a symlink in sessions/ is not a session.
        if entry.kind != Kind::Dir {
            continue;
        }
        if let Some(name) = entry.name_str().filter(|n| is_ulid(n)) {
            ids.push(name.to_owned());
        }
    }
    Ok(ids)
}

/// Every project under `root`: each directory that contains a `sessions/` directory, found by
/// a walk through directory descriptors that does not follow symlinks and does not descend
/// into `sessions/` itself. Sorted by key.
///
/// # Errors
/// [`StoreError::Insecure`] when the root is refused; any I/O error reading a directory of the
/// walk, other than the root's absence or a directory that vanished meanwhile.
pub fn all_projects(root: &Path) -> Result<Vec<Project>> {
    let Some(dir) = StoreDir::open_root(root)? else {
        return Ok(Vec::new());
    };
    let mut projects = Vec::new();
    walk_projects(root, &dir, &PathBuf::new(), &mut projects)?;
    projects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(projects)
}

/// The projects below `dir` (at `rel` under `root`), depth first: one open directory per level.
fn walk_projects(
    root: &Path,
    dir: &StoreDir,
    rel: &Path,
    out: &mut Vec<Project>,
) -> io::Result<()> {
    for entry in dir.entries()? {
        if entry.kind != Kind::Dir {
            continue;
        }
        if entry.name == OsStr::new(SESSIONS_DIR) {
            if !rel.as_os_str().is_empty() {
                out.push(Project {
                    key: rel.to_string_lossy().into_owned(),
                    root: root.to_owned(),
                    sessions_dir: dir.join(SESSIONS_DIR),
                });
            }
            continue;
        }
        // Dot-directories are walked too: projects live in them (`~/.config/x`).
        let sub = match dir.open_dir(&entry.name) {
            Ok(sub) => sub,
            // Gone, or replaced by a link, since it was listed: nothing to walk.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if matches!(dir.symlink_metadata(&entry.name), Ok(m) if !m.is_dir()) => {
                tracing::debug!(%e, "skipped: no longer a directory");
                continue;
            }
            Err(e) => return Err(e),
        };
        walk_projects(root, &sub, &rel.join(&entry.name), out)?;
    }
    Ok(())
}

/// Whether `s` is a ULID as upstream writes it: 26 characters of upper-case Crockford base32.
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26 && is_ulid_prefix(s) && ulid::Ulid::from_string(s).is_ok()
}

/// Whether `s` can begin a ULID: 1 to 26 Crockford base32 characters (case-insensitive).
pub fn is_ulid_prefix(s: &str) -> bool {
    (1..=26).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_alphabetic() && !b"ILOUilou".contains(&b)))
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn ulid_checks() {
        assert!(is_ulid("01M7YCZAQ6TZ9E7YGFW7ZMM2X7"));
        assert!(!is_ulid("01M7YCZAQ6TZ9E7YGFW7ZMM2X"));
        assert!(!is_ulid("cooldown-marker.toml"));
        assert!(is_ulid_prefix("01m7"));
        assert!(!is_ulid_prefix("../x"));
        assert!(!is_ulid_prefix(""));
        assert!(!is_ulid_prefix("01I"));
    }

    #[test]
    fn key_drops_leading_slash_and_resolves_spellings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("p");
        fs_err::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, dir.path().join("link")).expect("symlink");
        let key = project_key(&real).expect("key");
        assert!(!key.starts_with('/'));
        assert_eq!(project_key(&dir.path().join("link/")).expect("key"), key);
        assert_eq!(project_key(&real.join(".")).expect("key"), key);
    }

    /// The roots upstream resolves on this platform, from the environment of a child process
    /// (the environment of this test process is shared with the tests running beside it).
    #[test]
    fn roots_follow_upstream_with_and_without_xdg_state_home() {
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        if std::env::var_os("CSA_PATHS_CHILD").is_some() {
            let roots = StateRoots::resolve(None).map(|r| {
                r.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            println!("ROOTS[{}]", roots.unwrap_or_else(|e| format!("error: {e}")));
            return;
        }
        let roots = |home: &str, xdg: Option<&str>| {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args([
                "--exact",
                "paths::tests::roots_follow_upstream_with_and_without_xdg_state_home",
                "--nocapture",
            ])
            .env("CSA_PATHS_CHILD", "1")
            .env("HOME", home)
            .env_remove("XDG_STATE_HOME");
            if let Some(xdg) = xdg {
                cmd.env("XDG_STATE_HOME", xdg);
            }
            let out = cmd.output().expect("run the child");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let start = text.find("ROOTS[").expect("roots printed") + 6;
            let end = text[start..].find(']').expect("end") + start;
            text[start..end].to_owned()
        };
        if cfg!(target_os = "macos") {
            let base = "/h/Library/Application Support";
            let want = format!("{base}/cli-sub-agent\n{base}/csa");
            assert_eq!(roots("/h", None), want);
            assert_eq!(roots("/h", Some("/x")), want, "not read on macOS");
        } else if cfg!(target_os = "linux") {
            assert_eq!(
                roots("/h", None),
                "/h/.local/state/cli-sub-agent\n/h/.local/state/csa"
            );
            assert_eq!(roots("/h", Some("/x")), "/x/cli-sub-agent\n/x/csa");
            assert_eq!(
                roots("/h", Some("relative")),
                "/h/.local/state/cli-sub-agent\n/h/.local/state/csa",
                "a relative XDG_STATE_HOME is ignored"
            );
        } else {
            eprintln!("skipped: no expected roots recorded for this platform");
            return;
        }
        assert!(
            roots("relative-home", None).starts_with("error:"),
            "never a root relative to the current directory"
        );
    }

    #[test]
    fn keys_are_exact_or_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        fs_err::write(&file, "").expect("write");
        assert!(matches!(
            project_key(&file),
            Err(ProjectDirError::NotADirectory(_))
        ));
        assert!(matches!(
            project_key(&dir.path().join("missing")),
            Err(ProjectDirError::Missing(_))
        ));
        for name in [&b"n\xff"[..], b"n\xfe"] {
            let bad = dir.path().join(std::ffi::OsStr::from_bytes(name));
            fs_err::create_dir(&bad).expect("mkdir");
            let err = project_key(&bad).expect_err("not UTF-8");
            assert!(matches!(err, ProjectDirError::NotUtf8(_)), "{err}");
            let shown = format!("{:?}", std::ffi::OsStr::from_bytes(name));
            let shown = shown.trim_matches('"');
            assert!(err.to_string().contains(shown), "{err} names {shown}");
        }
    }

    #[test]
    fn walk_finds_nested_projects() {
        let root = tempfile::tempdir().expect("tempdir");
        // Regression: the walk once skipped dot-directories, missing projects inside them.
        for p in [
            "home/u/sessions",
            "home/u/proj/sessions/01M7YCZAQ6TZ9E7YGFW7ZMM2X7",
            "home/u/.config/x/sessions",
        ] {
            fs_err::create_dir_all(root.path().join(p)).expect("mkdir");
        }
        let keys: Vec<_> = all_projects(root.path())
            .expect("walk")
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["home/u", "home/u/.config/x", "home/u/proj"]);
    }
}
