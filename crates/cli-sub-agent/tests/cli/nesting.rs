//! Nested sub-agents (case 7 of the membership issue): a `csa run` from inside a session runs
//! at once as a child session under its ancestor's directory claim, never waits on its own
//! ancestor, and its processes are its own, not the parent's leftovers.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::TestEnv;
use crate::membership::{mechanisms, toml_of};

/// `PATH` with the directory of the `csa` under test first, so that agents can run `csa`.
fn path_with_csa() -> std::ffi::OsString {
    let csa = PathBuf::from(assert_cmd::cargo::cargo_bin!("csa"));
    let mut dirs = vec![csa.parent().expect("dir").to_owned()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH")
}

/// `csa ARGS…` with csa on `PATH` and `CSA_STATE_DIR` set (agents' own `csa` calls use it), run
/// with a 60 s hang guard: a nested run that waits on its own ancestor fails the test instead
/// of hanging it.
fn nested(env: &TestEnv, mech: &str, args: &[&str]) -> Output {
    let mut cmd: Command = env.csa(args);
    cmd.env("PATH", path_with_csa())
        .env("CSA_STATE_DIR", &env.state_root)
        .env("CSA_MEMBERSHIP", mech)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn csa");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("hung: {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

fn sessions(env: &TestEnv) -> Vec<(String, toml::Table)> {
    let mut found: Vec<(String, toml::Table)> = fs_err::read_dir(&env.sessions_dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 26 && !n.starts_with('.'))
        .map(|id| {
            let state = toml_of(&env.sessions_dir.join(&id).join("state.toml"));
            (id, state)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn parent_of(state: &toml::Table) -> Option<String> {
    state
        .get("genealogy")?
        .get("parent_session_id")?
        .as_str()
        .map(str::to_owned)
}

/// Regression: `csa run -- sh -c 'csa run -- echo child'` exited 75 inside (the parent held the
/// directory), and the printed hint (`--wait-for-dir`) waited forever.
#[test]
fn a_sub_agent_runs_at_once_under_its_parents_claim_and_never_waits_on_it() {
    for mech in mechanisms() {
        for inner in [
            "csa run -- echo child",
            "csa run --wait-for-dir -- echo child",
            "csa run --wait-for-dir=30s -- sh -c 'csa run -- echo grandchild'",
        ] {
            let env = TestEnv::new();
            let out = nested(&env, mech, &["run", "--", "sh", "-c", inner]);
            assert_eq!(out.status.code(), Some(0), "{mech} {inner}: {out:?}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("child"),
                "{mech} {inner}: the sub-agent's output reaches its caller: {stdout}"
            );
            let all = sessions(&env);
            let top = all
                .iter()
                .find(|(_, s)| parent_of(s).is_none())
                .expect("the top session");
            let children: Vec<_> = all
                .iter()
                .filter(|(_, s)| parent_of(s).as_deref() == Some(top.0.as_str()))
                .collect();
            assert_eq!(children.len(), 1, "{mech} {inner}: {all:?}");
            let child = &children[0];
            assert_eq!(
                child.1["genealogy"]["depth"].as_integer(),
                Some(1),
                "{mech} {inner}"
            );
            let record = toml_of(&env.sessions_dir.join(&child.0).join("membership.toml"));
            assert_eq!(record["claim"].as_str(), Some("nested"), "{record:?}");
            assert_eq!(record["nested_in"].as_str(), Some(top.0.as_str()));
            for (id, state) in &all {
                assert_eq!(state["phase"].as_str(), Some("available"), "{mech} {id}");
            }
        }
    }
}

/// A child session started from inside another owns its processes: the parent's end of turn
/// does not stop it, and the directory stays busy until it ends.
#[test]
fn a_detached_sub_agent_outlives_its_parents_turn_as_its_own_session() {
    for mech in mechanisms() {
        let env = TestEnv::new();
        let gate = env.project.join("gate");
        fs_err::write(&gate, "").expect("gate");
        // The child waits until the test removes the gate: no timing assumption.
        let inner = format!(
            "csa run --detach -- sh -c 'while [ -e {} ]; do sleep 0.05; done; echo child-done'",
            gate.display()
        );
        let out = nested(&env, mech, &["run", "--", "sh", "-c", &inner]);
        assert_eq!(out.status.code(), Some(0), "{mech}: {out:?}");
        let child_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let child_dir = env.sessions_dir.join(&child_id);
        let parent = parent_of(&toml_of(&child_dir.join("state.toml"))).expect("parent");
        let parent_result = toml_of(&env.sessions_dir.join(&parent).join("result.toml"));
        assert!(
            parent_result.get("leftover_processes_stopped").is_none(),
            "{mech}: the child session is not the parent's leftover: {parent_result:?}"
        );
        let alive = nested(&env, mech, &["session", "is-alive", &child_id]);
        assert_eq!(alive.status.code(), Some(0), "{mech}: {alive:?}");
        let busy = nested(&env, mech, &["run", "--", "true"]);
        assert_eq!(
            busy.status.code(),
            Some(75),
            "{mech}: the child still runs in the directory: {busy:?}"
        );
        fs_err::remove_file(&gate).expect("open the gate");
        let wait = nested(
            &env,
            mech,
            &["session", "wait", &child_id, "--timeout", "30s"],
        );
        assert_eq!(wait.status.code(), Some(0), "{mech}: {wait:?}");
        let log = fs_err::read_to_string(child_dir.join("output.log")).expect("log");
        assert!(log.contains("child-done"), "{log}");
    }
}

/// Killing a parent leaves its child sessions running (they are sessions of their own) and
/// says so, with the way to stop them; `kill --children` stops them and theirs, each ending
/// killed like any session.
#[test]
fn kill_children_stops_the_child_sessions_a_plain_kill_leaves_running() {
    for mech in mechanisms() {
        let env = TestEnv::new();
        // Parent -> child -> grandchild, each detached and running until killed.
        let inner =
            "csa run --detach -- sh -c 'csa run --detach -- sleep 300; sleep 300'; sleep 300";
        let out = nested(&env, mech, &["run", "--detach", "--", "sh", "-c", inner]);
        assert_eq!(out.status.code(), Some(0), "{mech}: {out:?}");
        let parent = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        crate::membership::eventually("the grandchild session runs", || {
            let all = sessions(&env);
            all.len() == 3
                && all
                    .iter()
                    .all(|(_, s)| s["phase"].as_str() == Some("active"))
                && all
                    .iter()
                    .all(|(id, _)| env.sessions_dir.join(id).join("membership.toml").exists())
        });
        let all = sessions(&env);
        let child = all
            .iter()
            .find(|(_, s)| parent_of(s).as_deref() == Some(parent.as_str()))
            .expect("the child")
            .0
            .clone();
        let grandchild = all
            .iter()
            .find(|(_, s)| parent_of(s).as_deref() == Some(child.as_str()))
            .expect("the grandchild")
            .0
            .clone();

        // A plain kill stops the parent only, and names the child that runs on.
        let kill = nested(&env, mech, &["session", "kill", &parent, "--grace", "2s"]);
        assert_eq!(kill.status.code(), Some(0), "{mech}: {kill:?}");
        let stderr = String::from_utf8_lossy(&kill.stderr);
        assert!(
            stderr.contains(&child) && stderr.contains("--children"),
            "{mech}: {stderr}"
        );
        assert!(crate::membership::marked(&parent).is_empty(), "{mech}");
        let alive = nested(&env, mech, &["session", "is-alive", &child]);
        assert_eq!(alive.status.code(), Some(0), "{mech}: {alive:?}");

        // --children: the parent has nothing left to kill; its child and grandchild are killed.
        let kill = nested(
            &env,
            mech,
            &[
                "session",
                "kill",
                &parent,
                "--children",
                "--grace",
                "2s",
                "--format",
                "json",
            ],
        );
        assert_eq!(kill.status.code(), Some(0), "{mech}: {kill:?}");
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&kill.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        let actions: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                (
                    l["session_id"].as_str().unwrap_or("").to_owned(),
                    l["action"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                (parent.clone(), "nothing_to_kill".to_owned()),
                (child.clone(), "killed".to_owned()),
                (grandchild.clone(), "killed".to_owned()),
            ],
            "{mech}"
        );
        for id in [&child, &grandchild] {
            let state = toml_of(&env.sessions_dir.join(id).join("state.toml"));
            assert_eq!(state["phase"].as_str(), Some("retired"), "{mech} {id}");
            assert_eq!(state["termination_reason"].as_str(), Some("killed"));
            assert!(crate::membership::marked(id).is_empty(), "{mech} {id}");
        }
    }
}

/// A `CSA_SESSION_ID` inherited by a process that is not the session's (a stray variable in a
/// shell) does not let it run beside the session: it is told the directory is busy.
#[test]
fn a_stray_session_id_does_not_make_a_run_nested() {
    let env = TestEnv::new();
    let gate = env.project.join("gate");
    fs_err::write(&gate, "").expect("gate");
    let out = env
        .csa(&[
            "run",
            "--detach",
            "--",
            "sh",
            "-c",
            &format!("while [ -e {} ]; do sleep 0.05; done", gate.display()),
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stray = env
        .csa(&["run", "--", "true"])
        .env("CSA_SESSION_ID", &id)
        .output()
        .expect("run");
    assert_eq!(stray.status.code(), Some(75), "{stray:?}");
    fs_err::remove_file(&gate).expect("open the gate");
    let wait = env
        .csa(&["session", "wait", &id, "--timeout", "30s"])
        .output()
        .expect("wait");
    assert_eq!(wait.status.code(), Some(0), "{wait:?}");
}
