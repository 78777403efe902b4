//! Rows of the reliability table that `just reliability` prints (issue 5, docs/reliability.md).
//!
//! Each reliability test (crash points, faults, stress, bad-input corpus, property tests) ends by
//! calling [`record`] with what it ran and what it found. When the environment variable
//! [`REPORT_ENV`] names a directory, the row is written there as `<key>.json`; otherwise
//! nothing is written, so plain `cargo test` is unaffected. The `csa-reliability-table` binary
//! prints every row of such a directory as one markdown table.

#![warn(missing_docs)]

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The environment variable naming the directory rows are written to.
pub const REPORT_ENV: &str = "CSA_RELIABILITY_REPORT";

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// File name of the row (`<key>.json`) and its sort key, e.g. `1-crash-points`.
    pub key: String,
    /// What was exercised, e.g. "crash points (SIGKILL at each step)".
    pub area: String,
    /// How many cases ran (crash points hit, operations, corpus runs, generated inputs).
    pub cases: u64,
    /// What a failure is counted as, e.g. "invariant violations" or "panics".
    pub failure_kind: String,
    /// How many failures were found (the test asserts 0 before recording).
    pub failures: u64,
    /// A short free-form detail, e.g. "38 points over 8 paths".
    pub detail: String,
}

/// Writes `row` to `$CSA_RELIABILITY_REPORT/<key>.json` when the variable is set.
///
/// # Panics
/// When the variable is set but the row cannot be written: this is test-only code, and a
/// silently missing row would make the printed table lie.
pub fn record(row: &Row) {
    let Some(dir) = std::env::var_os(REPORT_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    fs_err::create_dir_all(dir).expect("create the reliability report directory");
    let json = serde_json::to_vec_pretty(row).expect("serialize a row");
    fs_err::write(dir.join(format!("{}.json", row.key)), json).expect("write a reliability row");
}

/// Reads every `*.json` row in `dir`, sorted by key.
///
/// # Errors
/// An I/O error naming the path, or a row that does not parse (as `InvalidData`).
pub fn read_rows(dir: &Path) -> std::io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = fs_err::read(&path)?;
            let row: Row = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(rows)
}

/// Renders rows as a markdown table.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from("| area | cases | failures | detail |\n|---|---:|---:|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} {} | {} |\n",
            r.area, r.cases, r.failures, r.failure_kind, r.detail
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_a_directory_in_key_order() {
        let dir = tempfile_dir();
        for (key, cases) in [("2-b", 5), ("1-a", 3)] {
            let row = Row {
                key: key.into(),
                area: format!("area {key}"),
                cases,
                failure_kind: "violations".into(),
                failures: 0,
                detail: String::new(),
            };
            let json = serde_json::to_vec(&row).expect("json");
            fs_err::write(dir.join(format!("{key}.json")), json).expect("write");
        }
        let rows = read_rows(&dir).expect("read");
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["1-a", "2-b"]
        );
        let table = render(&rows);
        assert!(table.contains("| area 1-a | 3 | 0 violations |"), "{table}");
        fs_err::remove_dir_all(&dir).expect("cleanup");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("csa-reliability-{}", std::process::id()));
        fs_err::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
