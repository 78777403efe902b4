//! Which csa this is: the package version and the git commit it was built from, as `build.rs`
//! recorded them (`csa --version`, `csa doctor`, the man pages).
//!
//! Outside a git checkout (a `cargo install` from a tarball) the commit is unknown: `COMMIT`
//! is `"unknown"` and [`commit`] is `None`. The dirty flag describes the tree when the build
//! script last ran (build.rs says when that is), so it may lag behind later edits.

use serde::Serialize;

/// The package version (`Cargo.toml`), e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `git rev-parse --short HEAD` at build time, or `unknown`.
pub const COMMIT: &str = env!("CSA_GIT_COMMIT");

/// The commit's date (`YYYY-MM-DD`), or empty when unknown.
pub const COMMIT_DATE: &str = env!("CSA_GIT_DATE");

/// `true`, `false` or `unknown`: whether tracked files differed from the commit at build time.
const DIRTY: &str = env!("CSA_GIT_DIRTY");

/// What `csa --version` prints after `csa `: `0.1.0 (a1b2c3d 2026-11-21)`,
/// `0.1.0 (a1b2c3d-dirty 2026-11-21)` or `0.1.0 (unknown commit)`.
pub const VERSION_LINE: &str = env!("CSA_VERSION_LINE");

/// The commit, when known.
pub fn commit() -> Option<&'static str> {
    (COMMIT != "unknown").then_some(COMMIT)
}

/// Whether the tree had uncommitted changes to tracked files at build time; `None` when unknown.
pub fn dirty() -> Option<bool> {
    match DIRTY {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The build's identity as `csa doctor --format json` prints it (docs/json.md).
#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    /// [`VERSION`].
    pub version: &'static str,
    /// [`commit`]: the short commit hash, or `null`.
    pub commit: Option<&'static str>,
    /// [`COMMIT_DATE`], or `null`.
    pub commit_date: Option<&'static str>,
    /// [`dirty`].
    pub dirty: Option<bool>,
}

impl BuildInfo {
    /// This binary's.
    pub fn current() -> Self {
        BuildInfo {
            version: VERSION,
            commit: commit(),
            commit_date: (!COMMIT_DATE.is_empty()).then_some(COMMIT_DATE),
            dirty: dirty(),
        }
    }
}
