//! A cgroup v2 per session (Linux): the kernel's own record of every process an agent started,
//! whatever descriptors it closes, whether it calls `setsid(2)` and whether its supervisor
//! lives (cgroups(7)).
//!
//! Where: a child of the cgroup the supervisor runs in, named `csa-<ULID>`, under the cgroup2
//! mount (`/sys/fs/cgroup` on a unified system, `/sys/fs/cgroup/unified` on a hybrid one). The
//! supervisor creates it, moves itself in (so every process it starts is born inside), and
//! moves itself back out to remove it at the end of its turn. No controller is enabled, so the
//! "no internal processes" rule does not apply. Creating it needs write access to the current
//! cgroup's directory and `cgroup.procs` (root; a delegated subtree such as a container's own
//! cgroup or a `systemd-run --user --scope`): where that is refused (a login session's
//! `session-N.scope`, say), [`SessionCgroup::create_and_join`] fails and csa falls back to a process
//! session ([`crate::Membership`]).
//!
//! A session started from inside another session's cgroup (a nested sub-agent) gets a child
//! cgroup of it; [`SessionCgroup::members`] skips such `csa-*` children, so a session's members
//! are its own processes, never its child sessions'.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::mountinfo::MountInfo;
use crate::platform;

/// Name prefix of a session cgroup: `csa-<ULID>`.
pub const PREFIX: &str = "csa-";

/// Why no session cgroup could be created.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The portable process backend is in use ([`crate::backend`]): it relies on no cgroup,
    /// as on a platform without them.
    #[error("the portable process backend uses no cgroup")]
    PortableBackend,
    /// No cgroup2 hierarchy is mounted (cgroup v1 only, or no `/proc`).
    #[error("no cgroup v2 hierarchy is mounted")]
    NoHierarchy,
    /// This process has no cgroup v2 path.
    #[error("this process is in no cgroup v2")]
    NoCgroup,
    /// The kernel refused (most often `EACCES`: the current cgroup is not delegated to this
    /// user).
    #[error("cannot create or join {}: {source}", path.display())]
    Refused {
        /// The cgroup directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A session's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCgroup {
    path: PathBuf,
}

impl SessionCgroup {
    /// The cgroup at `path` (as recorded in a session's membership record), if `path` names a
    /// session cgroup of session `id` (its last component is `csa-<id>`). The directory need
    /// not exist (a removed cgroup has no members).
    pub fn recorded(path: &Path, id: &str) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        (name.strip_prefix(PREFIX) == Some(id) && path.is_absolute()).then(|| SessionCgroup {
            path: path.to_owned(),
        })
    }

    /// Its directory (under the cgroup2 mount).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates `csa-<id>` under this process's cgroup and moves this process into it.
    ///
    /// # Errors
    /// [`CgroupError`]: the portable backend is in use, no cgroup2 hierarchy, no cgroup, or the
    /// kernel refused the `mkdir` or the move (then the directory is removed again).
    pub fn create_and_join(id: &str) -> Result<Self, CgroupError> {
        if crate::backend::current() == crate::backend::Backend::Portable {
            return Err(CgroupError::PortableBackend);
        }
        let mount = MountInfo::read()
            .ok()
            .and_then(|m| m.cgroup2_mount().cloned())
            .ok_or(CgroupError::NoHierarchy)?;
        let own = platform::cgroup(std::process::id())
            .ok()
            .flatten()
            .ok_or(CgroupError::NoCgroup)?;
        let parent = mount.join(own.trim_start_matches('/'));
        let path = parent.join(format!("{PREFIX}{id}"));
        let refused = |source| CgroupError::Refused {
            path: path.clone(),
            source,
        };
        let cgroup = SessionCgroup { path: path.clone() };
        match fs_err::create_dir(&path) {
            Ok(()) => {}
            // A previous turn's cgroup that its supervisor could not remove (it was killed):
            // reused when nothing runs in it any more.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !cgroup.members().map_err(refused)?.is_empty() {
                    return Err(refused(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a previous turn's cgroup still has processes",
                    )));
                }
            }
            Err(e) => return Err(refused(e)),
        }
        if let Err(err) = cgroup.join() {
            let _ = fs_err::remove_dir(&path);
            return Err(refused(err));
        }
        Ok(cgroup)
    }

    /// Moves the calling process into this cgroup (writes `0` to its `cgroup.procs`).
    ///
    /// # Errors
    /// The write's error, naming the file.
    pub fn join(&self) -> io::Result<()> {
        write_procs(&self.path, 0)
    }

    /// Moves `pid` (0: the calling process) out, into the parent cgroup.
    ///
    /// # Errors
    /// The write's error, naming the file.
    pub fn move_out(&self, pid: u32) -> io::Result<()> {
        match self.path.parent() {
            Some(parent) => write_procs(parent, pid),
            None => Ok(()),
        }
    }

    /// The live processes of the session: the pids in this cgroup's `cgroup.procs` and in its
    /// descendants', except descendants named `csa-*` (child sessions), except zombies. A cgroup
    /// that does not exist has none.
    ///
    /// # Errors
    /// Any other I/O error of the walk, naming the file.
    pub fn members(&self) -> io::Result<Vec<u32>> {
        let mut pids = Vec::new();
        let mut stack = vec![self.path.clone()];
        while let Some(dir) = stack.pop() {
            match fs_err::read_to_string(dir.join("cgroup.procs")) {
                Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            let entries = match fs_err::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir && !name.to_string_lossy().starts_with(PREFIX) {
                    stack.push(entry.path());
                }
            }
        }
        // A zombie stays in cgroup.procs until reaped; it runs nothing.
        pids.retain(|&pid| crate::probe(pid).is_running());
        Ok(pids)
    }

    /// Whether `pid` is in this cgroup or a descendant that is not a child session's.
    ///
    /// # Errors
    /// Reading `/proc/<pid>/cgroup` (`NotFound` when it has exited).
    pub fn contains(&self, pid: u32) -> io::Result<bool> {
        let Some(rel) = platform::cgroup(pid)? else {
            return Ok(false);
        };
        let mount = MountInfo::read()?
            .cgroup2_mount()
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 mount"))?;
        let path = mount.join(rel.trim_start_matches('/'));
        let Ok(below) = path.strip_prefix(&self.path) else {
            return Ok(false);
        };
        Ok(!below
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with(PREFIX)))
    }

    /// Removes the cgroup directory. Returns `false` (and changes nothing) when it still has
    /// processes or child cgroups (`EBUSY`/`ENOTEMPTY`) or is already gone.
    ///
    /// # Errors
    /// Any other error of `rmdir`, naming the path.
    pub fn remove(&self) -> io::Result<bool> {
        match fs_err::remove_dir(&self.path) {
            Ok(()) => Ok(true),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EBUSY) | Some(nix::libc::ENOTEMPTY)
                    ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

fn write_procs(dir: &Path, pid: u32) -> io::Result<()> {
    let path = dir.join("cgroup.procs");
    let mut file = fs_err::OpenOptions::new().write(true).open(&path)?;
    file.write_all(format!("{pid}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_session_cgroup_of_this_session_is_accepted_from_a_record() {
        let id = "01M7YCZAQ6TZ9E7YGFW7ZMM2X7";
        assert!(SessionCgroup::recorded(
            Path::new("/sys/fs/cgroup/csa-01M7YCZAQ6TZ9E7YGFW7ZMM2X7"),
            id
        )
        .is_some());
        assert!(SessionCgroup::recorded(
            Path::new("/sys/fs/cgroup/csa-01M7YCZAQ6TZ9E7YGFW7ZMM2X8"),
            id
        )
        .is_none());
        assert!(SessionCgroup::recorded(Path::new("/sys/fs/cgroup/user.slice"), id).is_none());
        assert!(SessionCgroup::recorded(Path::new("csa-01M7YCZAQ6TZ9E7YGFW7ZMM2X7"), id).is_none());
    }
}
