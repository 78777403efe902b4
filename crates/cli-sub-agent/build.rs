//! Records the git commit `csa` is built from, for `csa --version`, `csa doctor` and the man
//! pages (`src/version.rs` reads what this sets).
//!
//! Sets, for the crate's code (`env!`):
//! - `CSA_GIT_COMMIT`: `git rev-parse --short HEAD`, or `unknown` outside a git checkout (a
//!   `cargo install` from a tarball or from crates.io, or a tarball unpacked inside an unrelated
//!   repository: this crate's `Cargo.toml` must be tracked), when `git` is missing, or when it
//!   fails (another user's checkout that `safe.directory` does not allow);
//! - `CSA_GIT_DIRTY`: `true` when `git status --porcelain --untracked-files=no` lists a change to
//!   a tracked file, `false` when it lists none, `unknown` without git;
//! - `CSA_GIT_DATE`: the commit's date, `YYYY-MM-DD` (committer date), or empty without git;
//! - `CSA_VERSION_LINE`: what `csa --version` prints after `csa `: `0.1.0 (a1b2c3d 2026-11-21)`,
//!   `0.1.0 (a1b2c3d-dirty 2026-11-21)`, or `0.1.0 (unknown commit)`.
//!
//! The script runs again when `HEAD`, the branch it names or `packed-refs` changes (a commit, a
//! checkout, a fetch that moves the branch). It does not watch the working tree, which would
//! rebuild csa at every edit of any file: so `-dirty` describes the tree as it was when the
//! commit was last built, and a build after further edits (with no new commit) keeps the flag it
//! had. The commit itself is always the one checked out at the last commit or checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let info = GitInfo::read(&manifest_dir);
    println!("cargo:rustc-env=CSA_GIT_COMMIT={}", info.commit);
    println!("cargo:rustc-env=CSA_GIT_DIRTY={}", info.dirty);
    println!("cargo:rustc-env=CSA_GIT_DATE={}", info.date);
    println!("cargo:rustc-env=CSA_VERSION_LINE={}", info.version_line());
    for path in info.watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    // Without git, nothing to watch but this script: the answer is "unknown" until then.
    println!("cargo:rerun-if-changed=build.rs");
}

/// What git says about the checkout `csa` is built from.
struct GitInfo {
    commit: String,
    dirty: &'static str,
    date: String,
    /// Files whose change means another commit is checked out (only those that exist: cargo
    /// reruns a build script at every build while a watched path is missing).
    watched: Vec<PathBuf>,
}

impl GitInfo {
    fn read(dir: &Path) -> GitInfo {
        let unknown = GitInfo {
            commit: "unknown".to_owned(),
            dirty: "unknown",
            date: String::new(),
            watched: Vec::new(),
        };
        // A tarball unpacked inside some other repository (a vendor directory, a home
        // directory kept in git) is not that repository's commit: this crate must be tracked.
        if git(dir, &["ls-files", "--error-unmatch", "Cargo.toml"]).is_none() {
            return unknown;
        }
        let Some(commit) = git(dir, &["rev-parse", "--short", "HEAD"]) else {
            return unknown;
        };
        let date = git(dir, &["log", "-1", "--format=%cs", "HEAD"]).unwrap_or_default();
        let dirty = match git(dir, &["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if changes.is_empty() => "false",
            Some(_) => "true",
            None => "unknown",
        };
        let mut watched = Vec::new();
        let mut watch = |git_path: &str| {
            if let Some(path) = git(dir, &["rev-parse", "--git-path", git_path]) {
                let path = dir.join(path);
                if path.exists() {
                    watched.push(path);
                }
            }
        };
        watch("HEAD");
        watch("packed-refs");
        if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            watch(&branch);
        }
        GitInfo {
            commit,
            dirty,
            date,
            watched,
        }
    }

    /// The version with the commit, as `csa --version` prints it.
    fn version_line(&self) -> String {
        let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
        if self.commit == "unknown" {
            return format!("{version} (unknown commit)");
        }
        let dirty = if self.dirty == "true" { "-dirty" } else { "" };
        let date = if self.date.is_empty() {
            String::new()
        } else {
            format!(" {}", self.date)
        };
        format!("{version} ({}{dirty}{date})", self.commit)
    }
}

/// Runs `git ARGS` in `dir`; its trimmed stdout when it succeeds, `None` otherwise. Never takes
/// git's optional locks (`GIT_OPTIONAL_LOCKS=0`: `git status` would otherwise refresh the index,
/// racing any git command run in the checkout meanwhile).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}
