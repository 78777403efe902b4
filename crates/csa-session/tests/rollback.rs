//! Reconcile's rollback under injected faults, in-process (fail points need the `failpoints`
//! feature: `cargo test --all-features`).
#![cfg(feature = "failpoints")]

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
    scenario.teardown();

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
}

#[test]
fn publish_failure_writes_nothing() {
    let scenario = fail::FailScenario::setup();
    let (_root, project) = project();
    let dir = project.session_dir(ID);
    fail::cfg("atomic::before_publish", "return").expect("cfg");
    let report = reconcile(&project);
    scenario.teardown();
    assert_eq!(report.sessions[0].action, Action::Error);
    assert!(!dir.join("result.toml").exists());
    assert_eq!(
        fs_err::read_to_string(dir.join("state.toml")).expect("read"),
        STATE
    );
}
