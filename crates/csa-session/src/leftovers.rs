//! Sweeping what crashed csa processes leave behind, so that "no temp files are left once a
//! later command has run" holds (docs/reliability.md):
//! - temp files of [`write_atomic`](crate::atomic::write_atomic) (`.tmp-<pid>.<ticks>-*`) in
//!   `sessions/`, `sessions/.csa-active/` and session directories;
//! - half-built sessions (`sessions/.build-<ULID>.<pid>.<ticks>/`, [`crate::create`]);
//! - half-deleted sessions (`sessions/.deleting-<ULID>/`, [`crate::delete::remove_leftovers`]).
//!
//! Temp files and builds carry their writer's pid and start ticks in their names, and are
//! removed only when that process is gone ([`crate::atomic`]'s `owner_gone`: fails closed, so
//! a write or build in progress is never disturbed); a deletion in progress holds its lock.
//! Names in any other form are never touched.
//!
//! Who sweeps: `csa session reconcile` sweeps a project whenever it rescans `sessions/` (any
//! leftover there changed the directory, which triggers the rescan) and each session directory
//! it takes the lock of; `csa session clean` sweeps every project it covers.

use std::io;
use std::path::PathBuf;

use crate::active::ACTIVE_DIR;
use crate::atomic::{owner_gone, temp_owner};
use crate::create::BUILD_PREFIX;
use crate::delete::{remove_leftovers, LeftoverAction, DELETING_PREFIX};
use crate::dirfd::{gone_is_fine, Kind, StoreDir};
use crate::lock::ReconcileLock;
use crate::paths::{is_ulid, Project};

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Leftovers removed.
    pub removed: Vec<PathBuf>,
    /// Leftovers that could not be removed, each error naming its path (retried next time).
    pub errors: Vec<String>,
}

impl Swept {
    fn absorb(&mut self, result: io::Result<Vec<PathBuf>>) {
        match result {
            Ok(paths) => self.removed.extend(paths),
            Err(e) => self.errors.push(e.to_string()),
        }
    }
}

/// Sweeps `project`'s `sessions/` (temp files, crashed builds, crashed deletions) and its
/// active record's temp files.
pub fn sweep_project(project: &Project) -> Swept {
    let (mut swept, saw_deletions) = sweep_writers_inner(project);
    if !saw_deletions {
        return swept;
    }
    match remove_leftovers(project, false) {
        Ok(leftovers) => {
            for l in leftovers {
                match l.action {
                    LeftoverAction::Removed => swept.removed.push(l.path),
                    LeftoverAction::Error => swept.errors.push(l.error.unwrap_or_default()),
                    LeftoverAction::WouldRemove | LeftoverAction::SkippedBusy => {}
                }
            }
        }
        Err(e) => swept.errors.push(e.to_string()),
    }
    swept
}

/// Sweeps what crashed writers and builders left in `project`'s `sessions/` and active record
/// ([`sweep_project`] without the crashed deletions, which `csa session clean` reports itself).
pub fn sweep_writers(project: &Project) -> Swept {
    sweep_writers_inner(project).0
}

/// [`sweep_writers`], and whether `sessions/` holds a crashed deletion's name. `sessions/` is
/// listed once (it can hold 100,000 entries; reconcile's rescan lists it anyway).
fn sweep_writers_inner(project: &Project) -> (Swept, bool) {
    let mut swept = Swept::default();
    let sessions = match project.open_sessions() {
        Ok(Some(sessions)) => sessions,
        Ok(None) => return (swept, false),
        Err(e) => {
            swept.errors.push(e.to_string());
            return (swept, false);
        }
    };
    let mut saw_deletions = false;
    let in_sessions = sweep_owned(&sessions, |name| {
        saw_deletions |= name.starts_with(DELETING_PREFIX);
        temp_owner(name)
            .map(|tag| (tag, false))
            .or_else(|| build_owner(name).map(|tag| (tag, true)))
    });
    swept.absorb(in_sessions);
    match sessions.open_private_dir_if_exists(ACTIVE_DIR) {
        Ok(Some(active)) => swept.absorb(sweep_temp_files(&active)),
        Ok(None) => {}
        Err(e) => swept.errors.push(e.to_string()),
    }
    (swept, saw_deletions)
}

/// Sweeps the temp files of crashed writers in the session directory `lock` protects. Every
/// csa write into a session directory happens under that lock or before the session is
/// published, so none is in progress; the owner check is kept for other programs' writers.
pub fn sweep_session(lock: &ReconcileLock) -> Swept {
    let mut swept = Swept::default();
    swept.absorb(sweep_temp_files(lock.dir()));
    swept
}

/// The owner tag (`<pid>.<ticks>`) of a build directory name `.build-<ULID>.<pid>.<ticks>`.
pub(crate) fn build_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(BUILD_PREFIX)?;
    let (id, tag) = rest.split_at_checked(26)?;
    let tag = tag.strip_prefix('.')?;
    is_ulid(id).then_some(tag)
}

/// Removes the temp files of crashed writers in `dir`: every `.tmp-<pid>.<ticks>-*` regular
/// file whose writer is gone ([`owner_gone`](crate::atomic)). Temp files of live writers, and
/// `.tmp-*` names in any other form (a rollback's set-aside result, another program's), are
/// left alone. Returns the paths removed.
///
/// # Errors
/// The error of listing `dir` or of a removal (other than the file being gone already), naming
/// the path.
pub fn sweep_temp_files(dir: &StoreDir) -> io::Result<Vec<PathBuf>> {
    sweep_owned(dir, |name| temp_owner(name).map(|tag| (tag, false)))
}

/// Removes every entry of `dir` that `owned` maps to (the owner tag of a process that is gone,
/// whether the entry is a directory) and whose own type (never a symlink's target) is that:
/// a directory (removed through descriptors, [`StoreDir::remove_tree`], which follows no
/// symbolic link inside) or a regular file.
fn sweep_owned(
    dir: &StoreDir,
    mut owned: impl FnMut(&str) -> Option<(&str, bool)>,
) -> io::Result<Vec<PathBuf>> {
    let entries = match dir.entries() {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let Some((tag, dirs)) = entry.name_str().and_then(&mut owned) else {
            continue;
        };
        let kind_ok = if dirs {
            entry.kind == Kind::Dir
        } else {
            entry.kind == Kind::File
        };
        if !kind_ok || !owner_gone(tag) {
            continue;
        }
        let result = if dirs {
            dir.remove_tree(&entry.name)
        } else {
            gone_is_fine(dir.remove_file(&entry.name))
        };
        match result {
            Ok(()) => removed.push(dir.join(&entry.name)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn build_names_carry_their_owner() {
        assert_eq!(
            build_owner(".build-01M7YCZAQ6TZ9E7YGFW7ZMM2X7.123.456"),
            Some("123.456")
        );
        for bad in [
            ".build-01M7YCZAQ6TZ9E7YGFW7ZMM2X7",
            ".build-nope.1.2",
            "01M7YCZAQ6TZ9E7YGFW7ZMM2X7",
            ".build-01M7YCZAQ6TZ9E7YGFW7ZMM2X7x1.2",
        ] {
            assert_eq!(build_owner(bad), None, "{bad}");
        }
    }

    #[test]
    fn sweeps_a_crashed_build_and_keeps_a_live_one() {
        let root = tempfile::tempdir().expect("tempdir");
        let project = Project::new(root.path(), "p");
        project.create_sessions().expect("mkdir");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("reap");
        let mine = crate::atomic::owner_tag();
        let crashed = project
            .sessions_dir
            .join(format!(".build-01M7YCZAQ6TZ9E7YGFW7ZMM2X7.{dead}.1"));
        let live = project
            .sessions_dir
            .join(format!(".build-01M7YCZAQ6TZ9E7YGFW7ZMM2X8.{mine}"));
        for d in [&crashed, &live] {
            fs_err::create_dir_all(d.join("locks")).expect("mkdir");
            fs_err::write(d.join("state.toml"), "x").expect("write");
        }
        let swept = sweep_project(&project);
        assert_eq!(swept.removed, std::slice::from_ref(&crashed), "{swept:?}");
        assert!(!crashed.exists());
        assert!(live.join("state.toml").exists());
    }
}
