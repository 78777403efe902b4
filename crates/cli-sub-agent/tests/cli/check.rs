//! The invariant checker (`csa debug check`): silent on state that real commands left, loud on
//! each arranged breakage.

use crate::harness::{Agent, TestEnv};

fn violations(env: &TestEnv) -> (i32, Vec<(String, String)>) {
    let out = env.run(&["debug", "check", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let list = json
        .as_array()
        .expect("array")
        .iter()
        .map(|v| {
            (
                v["path"].as_str().expect("path").to_owned(),
                v["problem"].as_str().expect("problem").to_owned(),
            )
        })
        .collect();
    (out.status.code().expect("code"), list)
}

#[test]
fn what_real_commands_leave_has_no_violations() {
    let env = TestEnv::new();
    assert_eq!(
        env.run(&["run", "--", "sh", "-c", "exit 3"]).status.code(),
        Some(3)
    );
    assert_eq!(
        env.run(&["run", "--", "/nonexistent"]).status.code(),
        Some(127)
    );
    let out = env.run(&["run", "--detach", "--", "sleep", "1000"]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(violations(&env), (0, vec![]), "a live run is consistent");
    assert_eq!(
        env.run(&["session", "kill", &id, "--grace", "1s"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        env.run(&["session", "resume", &id]).status.code(),
        Some(75),
        "killed: not resumable"
    );
    let orphan = env.session();
    assert_eq!(env.run(&["session", "reconcile"]).status.code(), Some(0));
    assert_eq!(
        env.run(&["session", "resume", &orphan.id, "--", "true"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(violations(&env), (0, vec![]));
}

#[test]
fn each_arranged_breakage_is_reported_with_its_path() {
    let env = TestEnv::new();
    // A csa session that ended without a result.
    let out = env.run(&["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    let (code, found) = violations(&env);
    assert_eq!((code, found.len()), (0, 0));
    let id = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("csa: session ").map(str::to_owned))
        .expect("id");
    let dir = env.sessions_dir.join(&id);
    fs_err::remove_file(dir.join("result.toml")).expect("rm");
    // A temp file, a half-built and a half-deleted directory.
    fs_err::write(dir.join(".tmp-x"), "").expect("write");
    fs_err::create_dir(env.sessions_dir.join(".build-01M7YCZAQ6TZ9E7YGFW7ZMM2X7")).expect("mkdir");
    fs_err::create_dir(
        env.sessions_dir
            .join(".deleting-01M7YCZAQ6TZ9E7YGFW7ZMM2X8"),
    )
    .expect("mkdir");
    // An Active session with a result while its owner lives.
    let agent = Agent::spawn();
    let live = env.session();
    live.daemon_pid(agent.pid(), agent.ticks());
    live.write(
        "result.toml",
        "status = \"success\"\nexit_code = 0\nsummary = \"\"\ntool = \"x\"\nstarted_at = \"2026-01-01T00:00:00Z\"\ncompleted_at = \"2026-01-01T00:00:00Z\"\n",
    );
    // A state.toml that does not parse.
    let broken = env.session();
    broken.write("state.toml", "not toml [[[");
    let (code, found) = violations(&env);
    assert_eq!(code, 1);
    let has = |path: &std::path::Path, problem: &str| {
        found
            .iter()
            .any(|(p, m)| p == &path.display().to_string() && m.contains(problem))
    };
    assert!(has(&dir, "available without a result"), "{found:?}");
    assert!(has(&dir.join(".tmp-x"), "temporary file"), "{found:?}");
    assert!(
        has(
            &env.sessions_dir.join(".build-01M7YCZAQ6TZ9E7YGFW7ZMM2X7"),
            "half-built"
        ),
        "{found:?}"
    );
    assert!(
        has(
            &env.sessions_dir
                .join(".deleting-01M7YCZAQ6TZ9E7YGFW7ZMM2X8"),
            "half-deleted"
        ),
        "{found:?}"
    );
    assert!(
        has(&live.dir, "active with a result while its owner lives"),
        "{found:?}"
    );
    assert!(has(&broken.dir, "state.toml"), "{found:?}");
    assert_eq!(found.len(), 6, "{found:?}");
}

#[test]
fn the_window_a_reconcile_resolves_is_not_a_violation() {
    // A kill -9 between publishing a result and moving the phase leaves an Active session with
    // a result and a dead owner: reconcile retires it, so the checker accepts it.
    let env = TestEnv::new();
    let s = env.session();
    s.write(
        "result.toml",
        "status = \"success\"\nexit_code = 0\nsummary = \"\"\ntool = \"x\"\nstarted_at = \"2026-01-01T00:00:00Z\"\ncompleted_at = \"2026-01-01T00:00:00Z\"\n",
    );
    s.backdate();
    assert_eq!(violations(&env), (0, vec![]));
}
