//! Drives the real `csa-bench` binary end to end against stand-ins for `csa` (`/bin/true`
//! succeeds at everything, `/bin/false` fails at everything), on tiny fixtures in a temp dir.

use std::process::{Command, Output};

fn bench(csa: &str, cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csa-bench"))
        .args(["--csa", csa, "--cache-dir"])
        .arg(cache)
        .args(["--sizes", "20,40", "--list-size", "40", "--live", "2"])
        .args(["--runs", "3", "--warmup", "1", "--rss-runs", "1"])
        .env_clear()
        .output()
        .expect("csa-bench runs")
}

#[test]
fn every_case_is_measured_with_a_working_binary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = bench("/bin/true", tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "| `csa --version` (spawn cost) | – |",
        "| `session reconcile` (no-op) | 20 + 2 |",
        "| `session reconcile --full` | 40 + 2 |",
        "| `session list --format json` | 40 + 2 |",
        "| baseline: read every `state.toml` (in-process) | 40 + 2 |",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in\n{stdout}");
    }
    assert!(!stdout.contains("not measured: "), "{stdout}");
    assert!(tmp.path().join("40/fixture.toml").exists());

    // A second run reuses the cached fixtures.
    let again = bench("/bin/true", tmp.path());
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("generating"));
}

#[test]
fn a_failing_binary_is_reported_per_row_and_exits_1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = bench("/bin/false", tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(
        "| `session reconcile` (no-op) | 20 + 2 | not measured: `/bin/false --state-dir "
    ));
    assert!(stdout.contains(
        "| no-op reconcile median at 10,000 ended sessions | ≤ 5 ms | – | not measured |"
    ));
}

#[test]
fn peak_rss_helper_does_not_count_its_own_memory() {
    // With posix_spawn (vfork), Linux folds the helper's ~3 MiB into the child's ru_maxrss at
    // exec; the helper forks instead, so /bin/true must read as about 1 MiB.
    let out = Command::new(env!("CARGO_BIN_EXE_csa-bench"))
        .args(["peak-rss", "--", "/bin/true"])
        .output()
        .expect("helper runs");
    assert!(out.status.success());
    let kib: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a number of KiB");
    assert!((1..2048).contains(&kib), "/bin/true read as {kib} KiB");
}
