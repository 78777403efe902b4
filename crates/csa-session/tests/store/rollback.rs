//! Reconcile's rollback under injected faults, in-process (fail points need the `failpoints`
//! feature: `cargo test --all-features`).

use csa_session::paths::Project;
use csa_session::reconcile::{Action, ReconcileOptions, Reconciler};

const STATE: &str = r#"meta_session_id = "01M7YCZAQ6TZ9E7YGFW7ZMM2X7"
project_path = "/p"
created_at = "2026-11-21T06:33:50.574231058Z"
last_accessed = "2026-11-21T06:33:50.574231058Z"
phase = "active"
unknown_key = "kept"
"#;
const ID: &str = "01M7YCZAQ6TZ9E7YGFW7ZMM2X7";
const REAL: &str = r#"status = "success"
exit_code = 0
summary = "real result, written late"
tool = "codex"
started_at = "2026-01-01T00:00:00Z"
completed_at = "2026-01-01T00:00:01Z"
"#;

fn project() -> (tempfile::TempDir, Project) {
    let root = tempfile::tempdir().expect("tempdir");
    let project = Project::new(root.path(), "p");
    let dir = project.session_dir(ID);
    fs_err::create_dir_all(&dir).expect("mkdir");
    fs_err::write(dir.join("state.toml"), STATE).expect("write");
    (root, project)
}

fn reconcile(project: &Project) -> csa_session::reconcile::Report {
    let mut r = Reconciler::new(ReconcileOptions {
        dry_run: false,
        full: false,
        trigger: "session reconcile".into(),
    });
    r.session(project, ID);
    r.finish()
}

#[test]
fn late_real_result_written_between_publish_and_state_write_survives_the_rollback() {
    let scenario = fail::FailScenario::setup();
    let (_root, project) = project();
    let dir = project.session_dir(ID);
    let late_dir = dir.clone();
    // Between our publish and our state write, a late writer replaces result.toml the way
    // upstream does (write a temp file, rename over the target).
    fail::cfg_callback("reconcile::after_publish", move || {
        let tmp = late_dir.join("late.tmp");
        fs_err::write(&tmp, REAL).expect("write late");
        fs_err::rename(&tmp, late_dir.join("result.toml")).expect("rename late");
    })
    .expect("cfg");
    fail::cfg("reconcile::before_state_write", "return").expect("cfg");
    let report = reconcile(&project);
    fail::remove("reconcile::after_publish");
    fail::remove("reconcile::before_state_write");

    assert_eq!(report.sessions.len(), 1);
    assert_eq!(report.sessions[0].action, Action::Error);
    let error = report.sessions[0].error.as_deref().expect("error");
    assert!(error.contains("replaced by another writer"), "{error}");
    assert_eq!(
        fs_err::read_to_string(dir.join("result.toml")).expect("read"),
        REAL
    );
    assert_eq!(
        fs_err::read_to_string(dir.join("state.toml")).expect("read"),
        STATE
    );
    let names: Vec<_> = fs_err::read_dir(&dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with(".tmp")), "{names:?}");

    // The next reconcile retires it with the real result.
    let report = reconcile(&project);
    assert_eq!(report.sessions[0].action, Action::RetiredWithResult);
    assert!(fs_err::read_to_string(dir.join("state.toml"))
        .expect("read")
        .contains("termination_reason = \"completed\""));
    scenario.teardown();
}

#[test]
fn publish_failure_writes_nothing() {
    let scenario = fail::FailScenario::setup();
    let (_root, project) = project();
    let dir = project.session_dir(ID);
    fail::cfg("atomic::publish", "return").expect("cfg");
    let report = reconcile(&project);
    scenario.teardown();
    assert_eq!(report.sessions[0].action, Action::Error);
    assert!(!dir.join("result.toml").exists());
    assert_eq!(
        fs_err::read_to_string(dir.join("state.toml")).expect("read"),
        STATE
    );
}

#[test]
fn crash_between_publish_and_state_write_finishes_as_orphaned_process() {
    // Fail points are global: hold the scenario lock so no other test's points fire here.
    let _scenario = fail::FailScenario::setup();
    // Arranged state: what a kill -9 after step 4 leaves (synthetic result, phase active).
    let (_root, project) = project();
    let dir = project.session_dir(ID);
    let synthetic = REAL.replace(
        "real result, written late",
        "synthetic failure by session reconcile: process dead, result.toml missing (x)",
    );
    fs_err::write(dir.join("result.toml"), &synthetic).expect("write");
    let report = reconcile(&project);
    assert_eq!(report.sessions[0].action, Action::RetiredWithResult);
    let state = fs_err::read_to_string(dir.join("state.toml")).expect("read");
    assert!(
        state.contains("termination_reason = \"orphaned_process\""),
        "{state}"
    );
    assert_eq!(
        fs_err::read_to_string(dir.join("result.toml")).expect("read"),
        synthetic
    );
}

#[test]
fn crash_in_the_middle_of_a_rollback_loses_no_result() {
    let _scenario = fail::FailScenario::setup();
    // Arranged state: a rollback renamed a late real result aside and died before linking it
    // back. The next reconcile restores it and retires with it.
    let (_root, project) = project();
    let dir = project.session_dir(ID);
    fs_err::write(dir.join(".tmp-rollback-01M7YCZAQ6TZ9E7YGFW7ZMM2X8"), REAL).expect("write");
    let report = reconcile(&project);
    assert_eq!(
        report.sessions[0].action,
        Action::RetiredWithResult,
        "{report:?}"
    );
    assert_eq!(
        fs_err::read_to_string(dir.join("result.toml")).expect("read"),
        REAL
    );
    assert!(!dir
        .join(".tmp-rollback-01M7YCZAQ6TZ9E7YGFW7ZMM2X8")
        .exists());
    let state = fs_err::read_to_string(dir.join("state.toml")).expect("read");
    assert!(
        state.contains("termination_reason = \"completed\""),
        "{state}"
    );
}
