//! In-process baselines for `session list`: the least work any listing must do.
//!
//! Both baselines list `<root>/<key>/sessions/` and visit every session directory in it, as
//! `csa session list` must; they run inside `csa-bench`, so they pay no process spawn.
//! - [`read_states`]: open and read each whole `state.toml` (the I/O floor);
//! - [`parse_states`]: the same, then parse each into a `toml::Table` (a generic parse; csa's
//!   typed parse can be faster or slower).
//!
//! A session directory without a readable `state.toml` is skipped, as a listing would report it
//! rather than fail.

use std::hint::black_box;
use std::path::Path;

use crate::layout::STATE_FILE;
use crate::BenchError;

/// Reads every `state.toml` under `sessions_dir`; returns the total bytes read.
///
/// Errors: [`BenchError::Io`] naming `sessions_dir` when it cannot be listed.
pub fn read_states(sessions_dir: &Path) -> Result<usize, BenchError> {
    let mut bytes = 0;
    for entry in fs_err::read_dir(sessions_dir)? {
        let path = entry?.path().join(STATE_FILE);
        if let Ok(content) = fs_err::read(&path) {
            bytes += black_box(content).len();
        }
    }
    Ok(bytes)
}

/// Reads every `state.toml` under `sessions_dir` and parses it into a `toml::Table`; returns the
/// number of tables parsed.
///
/// Errors: [`BenchError::Io`] naming `sessions_dir` when it cannot be listed;
/// [`BenchError::Parse`] naming the first `state.toml` that is not valid TOML (generated files
/// always are).
pub fn parse_states(sessions_dir: &Path) -> Result<usize, BenchError> {
    let mut tables = 0;
    for entry in fs_err::read_dir(sessions_dir)? {
        let path = entry?.path().join(STATE_FILE);
        if let Ok(text) = fs_err::read_to_string(&path) {
            let table: toml::Table =
                toml::from_str(&text).map_err(|source| BenchError::Parse { path, source })?;
            black_box(table);
            tables += 1;
        }
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    #[test]
    fn baselines_visit_every_session() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fixture = Fixture::generate(&tmp.path().join("7"), 7, 2).expect("generate");
        assert!(read_states(&fixture.sessions_dir).expect("read") > 9 * 500);
        assert_eq!(parse_states(&fixture.sessions_dir).expect("parse"), 9);
    }
}
