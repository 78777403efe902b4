//! The git repository a directory belongs to, for `--repo` scopes: its top level is the nearest
//! directory, from the directory itself upwards, that holds a `.git` entry (a directory, or the
//! file a worktree or a submodule has), as `git rev-parse --show-toplevel` finds it in a work
//! tree.
//!
//! Found by looking, not by running git: one `lstat` per directory level, no process, so that
//! a pre-commit hook pays nothing for it, and it works without git installed. It ignores
//! `GIT_DIR` and `GIT_WORK_TREE` (which git sets for some hooks, relative to the hook's own
//! directory): csa wants the tree its agents work in, which is where `.git` is. It fails
//! towards a smaller scope: a directory outside every work tree has no repository (an error
//! for `--repo`), and a nested repository (a submodule) is its own top level.

use std::io;
use std::path::{Path, PathBuf};

/// The top level of the git work tree holding `dir`: `dir` canonicalized, or its nearest
/// ancestor, that contains an entry named `.git` (not followed if it is a symbolic link).
/// `Ok(None)` when no ancestor up to `/` has one.
///
/// # Errors
/// The error of canonicalizing `dir` (for example `NotFound`), naming it.
pub fn top_level(dir: &Path) -> io::Result<Option<PathBuf>> {
    let dir = fs_err::canonicalize(dir)?;
    Ok(dir
        .ancestors()
        .find(|d| fs_err::symlink_metadata(d.join(".git")).is_ok())
        .map(Path::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_dot_git_upwards() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = fs_err::canonicalize(tmp.path())
            .expect("canonical")
            .join("repo");
        fs_err::create_dir_all(repo.join(".git")).expect("mkdir");
        fs_err::create_dir_all(repo.join("a/b")).expect("mkdir");
        assert_eq!(top_level(&repo).expect("top"), Some(repo.clone()));
        assert_eq!(
            top_level(&repo.join("a/b")).expect("top"),
            Some(repo.clone())
        );
        // A submodule or worktree: `.git` is a file.
        fs_err::write(repo.join("a/.git"), "gitdir: ../.git/modules/a\n").expect("write");
        assert_eq!(
            top_level(&repo.join("a/b")).expect("top"),
            Some(repo.join("a"))
        );
        assert!(top_level(&repo.join("missing")).is_err());
    }
}
