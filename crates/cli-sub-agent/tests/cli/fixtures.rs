//! Every session directory written by upstream's own code (`tests/fixtures/upstream-sessions`
//! and `tests/fixtures/upstream-completion`, copied into this repository from the project's
//! shared fixtures, so a fresh clone has them) ends exactly as its expect.toml says after
//! `csa session reconcile --all-projects`.

use std::path::{Path, PathBuf};

use crate::harness::backdate_tree;

fn fixtures_dir(folder: &str) -> PathBuf {
    // Inside this crate (copied to a temp dir before use). Regression: the fixtures were read
    // from `../shared`, outside the repository, and the README's test command failed in a
    // fresh clone.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder)
}

fn copy_tree(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).expect("mkdir");
    for entry in fs_err::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs_err::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            out.extend(files_of(&entry.path()));
        } else {
            out.push((entry.path(), fs_err::read(entry.path()).expect("read")));
        }
    }
    out.sort();
    out
}

fn cases_in(folder: &str) -> Vec<PathBuf> {
    let root = fixtures_dir(folder);
    let mut cases: Vec<_> = fs_err::read_dir(&root)
        .unwrap_or_else(|e| panic!("fixtures missing at {}: {e}", root.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("expect.toml").exists())
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_upstream_fixture_ends_as_its_expectation_says() {
    let cases = cases_in("upstream-sessions");
    assert!(cases.len() >= 14, "found only {} fixtures", cases.len());
    for case in cases {
        check_case(&case);
    }
}

/// Regression (issue 11, case 5): upstream's completion records were ignored, and a session
/// whose upstream daemon recorded `failure`, exit code 2, `reason = "tool exited 2"` was
/// finalized as a synthetic `orphaned_process` failure with exit code 1, losing the recorded
/// exit status; a legacy `.complete` of 137 gave `failure` where upstream gives `signal`.
#[test]
fn upstream_completion_records_are_honoured_as_upstream_honours_them() {
    let cases = cases_in("upstream-completion");
    assert_eq!(cases.len(), 3, "{cases:?}");
    for case in cases {
        check_case(&case);
    }
}

fn check_case(case: &Path) {
    let name = case
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let expect: toml::Table =
        toml::from_str(&fs_err::read_to_string(case.join("expect.toml")).expect("read"))
            .expect("toml");
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&case.join("state"), tmp.path());
    backdate_tree(tmp.path(), 120);
    let root = tmp.path().join("cli-sub-agent");
    let id = expect["session_id"].as_str().expect("session_id");
    let session = root.join("home/user/project/sessions").join(id);
    let before = files_of(&session);
    let state_before = fs_err::read(session.join("state.toml")).expect("state");
    let result_before = fs_err::read(session.join("result.toml")).ok();

    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin!("csa"))
        .env_clear()
        .arg("--state-dir")
        .arg(&root)
        .args(["session", "reconcile", "--all-projects"])
        .output()
        .expect("run csa");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!("fixture {name}: stdout {stdout:?} stderr {stderr:?}");

    // After reconcile, the invariant checker finds nothing but an unparsable state.toml.
    let check = std::process::Command::new(assert_cmd::cargo::cargo_bin!("csa"))
        .env_clear()
        .arg("--state-dir")
        .arg(&root)
        .args(["debug", "check", "--format", "json"])
        .output()
        .expect("run csa debug check");
    let found: serde_json::Value = serde_json::from_slice(&check.stdout).expect("json");
    // Files csa cannot parse are reported (never repaired): one violation for each.
    let unparsable_result = result_before.as_ref().is_some_and(|bytes| {
        std::str::from_utf8(bytes).map_or(true, |t| t.parse::<toml::Table>().is_err())
    });
    let expected_violations =
        usize::from(expect["phase"].as_str() == Some("?")) + usize::from(unparsable_result);
    assert_eq!(
        found.as_array().map(Vec::len),
        Some(expected_violations),
        "{ctx}: {found}"
    );

    let phase = expect["phase"].as_str().expect("phase");
    if phase == "?" {
        // Unparsable state: reported with its path, every file byte-identical, exit 3.
        assert_eq!(out.status.code(), Some(3), "{ctx}");
        assert!(
            stdout.contains(&format!("{}", session.join("state.toml").display())),
            "{ctx}"
        );
        assert_eq!(files_of(&session), before, "{ctx}: files must be untouched");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let state: toml::Table =
        toml::from_str(&fs_err::read_to_string(session.join("state.toml")).expect("read"))
            .expect("toml");
    assert_eq!(
        state
            .get("phase")
            .and_then(|v| v.as_str())
            .unwrap_or("active"),
        phase,
        "{ctx}"
    );
    match expect.get("termination_reason").and_then(|v| v.as_str()) {
        Some(reason) => assert_eq!(state["termination_reason"].as_str(), Some(reason), "{ctx}"),
        None => assert_eq!(
            fs_err::read(session.join("state.toml")).expect("read"),
            state_before,
            "{ctx}: state.toml byte-identical"
        ),
    }
    let result_after = fs_err::read(session.join("result.toml")).ok();
    match expect["result"].as_str().expect("result") {
        "none" => assert!(result_after.is_none(), "{ctx}"),
        "unchanged" => assert_eq!(result_after, result_before, "{ctx}"),
        "synthetic" => {
            assert!(result_before.is_none(), "{ctx}");
            let text = String::from_utf8(result_after.expect("result")).expect("utf8");
            // `synthetic failure by …`, or `synthetic result by …` for a completion record
            // that gives another status than a failure.
            assert!(
                text.contains("synthetic failure by session reconcile")
                    || text.contains("synthetic result by session reconcile"),
                "{ctx}: {text}"
            );
            if name == "stale-output" {
                assert!(
                    text.contains("last words"),
                    "{ctx}: summary quotes output.log: {text}"
                );
            }
        }
        other => panic!("{ctx}: unknown expectation {other}"),
    }
    let result = || -> toml::Table {
        toml::from_str(&fs_err::read_to_string(session.join("result.toml")).expect("read"))
            .expect("toml")
    };
    if let Some(status) = expect.get("result_status").and_then(|v| v.as_str()) {
        assert_eq!(result()["status"].as_str(), Some(status), "{ctx}");
    }
    // The two keys the completion fixtures add (their README): result.toml's `exit_code`, and
    // upstream's `raw_process_exit_code`, which keeps a recorded exit code the status overrides.
    for key in ["exit_code", "raw_process_exit_code"] {
        if let Some(want) = expect.get(key) {
            assert_eq!(result().get(key), Some(want), "{ctx}: result.toml's {key}");
        }
    }
    if phase == "retired" && expect.get("termination_reason").is_some() {
        // Every other key of state.toml keeps its value.
        let mut before: toml::Table =
            toml::from_str(std::str::from_utf8(&state_before).expect("utf8")).expect("toml");
        let mut after = state.clone();
        // last_accessed becomes the end of the turn: the time of last use.
        for key in ["phase", "termination_reason", "last_accessed"] {
            before.remove(key);
            after.remove(key);
        }
        assert_eq!(before, after, "{ctx}: unknown keys survive");
    }
}
