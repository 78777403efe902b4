//! `csa session resume` and `csa session list --resumable` with real processes.

use std::process::{Child, Command, Stdio};

use crate::harness::TestEnv;

fn toml_of(path: &std::path::Path) -> toml::Table {
    toml::from_str(&fs_err::read_to_string(path).expect("read")).expect("toml")
}

/// A finished session of `env`'s project (phase available), via the real `csa run`.
fn finished_session(env: &TestEnv) -> String {
    let out = env.run(&["run", "--", "sh", "-c", "echo first turn"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("csa: session "))
        .expect("session line")
        .to_owned()
}

#[test]
fn resume_runs_a_new_turn_and_keeps_the_previous_result_in_history() {
    let env = TestEnv::new();
    let id = finished_session(&env);
    let dir = env.sessions_dir.join(&id);
    let first = fs_err::read(dir.join("result.toml")).expect("result");
    // Default command: the previous turn's.
    let out = env.run(&["session", "resume", &id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first turn\n");
    let state = toml_of(&dir.join("state.toml"));
    assert_eq!(state["phase"].as_str(), Some("available"));
    assert_eq!(state["turn_count"].as_integer(), Some(2));
    assert_eq!(
        fs_err::read(dir.join("output/turns/turn-000001/result.toml")).expect("history"),
        first
    );
    let run = toml_of(&dir.join("run.toml"));
    assert_eq!(run["turns"].as_array().expect("turns").len(), 2);
}

#[test]
fn eight_concurrent_resumes_start_exactly_one_turn() {
    let env = TestEnv::new();
    let id = finished_session(&env);
    let dir = env.sessions_dir.join(&id);
    let csa = assert_cmd::cargo::cargo_bin!("csa");
    let children: Vec<Child> = (0..8)
        .map(|_| {
            Command::new(csa)
                .arg("--state-dir")
                .arg(&env.state_root)
                .args(["session", "resume", &id, "--", "sh", "-c", "read x"])
                .current_dir(&env.project)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let (losers, mut winner) = crate::harness::split_losers(children);
    drop(winner.stdin.take());
    let winner = winner.wait_with_output().expect("winner");
    assert_eq!(
        winner.status.code(),
        Some(1),
        "the winner's turn ran: {winner:?}"
    );
    for loser in &losers {
        assert_eq!(loser.status.code(), Some(75), "{loser:?}");
        let stderr = String::from_utf8_lossy(&loser.stderr);
        assert!(
            stderr.contains("not resumable: session") || stderr.contains("is busy"),
            "{stderr}"
        );
    }
    let state = toml_of(&dir.join("state.toml"));
    assert_eq!(
        state["turn_count"].as_integer(),
        Some(2),
        "exactly one new turn"
    );
    assert_eq!(
        toml_of(&dir.join("run.toml"))["turns"]
            .as_array()
            .expect("turns")
            .len(),
        2
    );
    assert!(
        dir.join("output/turns/turn-000001/result.toml").exists(),
        "history kept"
    );
}

#[test]
fn a_reconciled_orphan_resumes_and_a_killed_session_is_refused_unchanged() {
    let env = TestEnv::new();
    // An orphan: active, owner dead, reconciled to retired / orphaned_process.
    let orphan = env.session();
    assert_eq!(env.run(&["session", "reconcile"]).status.code(), Some(0));
    assert_eq!(orphan.phase(), "retired");
    let out = env.run(&["session", "list", "--resumable", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed.as_array().expect("array").len(), 1);
    let out = env.run(&["session", "resume", &orphan.id, "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(orphan.phase(), "available");
    assert!(orphan.path("output/turns/turn-000001/result.toml").exists());

    // A killed session is not resumable: refused, nothing changed.
    let out = env.run(&["run", "--detach", "--", "sleep", "1000"]);
    let killed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        env.run(&["session", "kill", &killed]).status.code(),
        Some(0)
    );
    let before = env.tree_snapshot();
    let out = env.run(&["session", "resume", &killed]);
    assert_eq!(out.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "not resumable: session {killed} is retired (killed)"
        )),
        "{stderr}"
    );
    assert_eq!(env.tree_snapshot(), before);
    let out = env.run(&["session", "list", "--resumable", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<_> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["session_id"].as_str().expect("id").to_owned())
        .collect();
    assert!(
        ids.contains(&orphan.id) && !ids.contains(&killed),
        "{ids:?}"
    );
}

#[test]
fn resume_while_the_directory_is_busy_keeps_the_phase() {
    let env = TestEnv::new();
    let id = finished_session(&env);
    let dir = env.sessions_dir.join(&id);
    let out = env.run(&["run", "--detach", "--", "sleep", "1000"]);
    let busy = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let state_before = fs_err::read(dir.join("state.toml")).expect("state");
    let out = env.run(&["session", "resume", &id, "--", "true"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("is busy: session {busy}")));
    assert_eq!(
        fs_err::read(dir.join("state.toml")).expect("state"),
        state_before
    );
    assert!(
        dir.join("result.toml").exists(),
        "the previous result stays current"
    );
    assert_eq!(
        env.run(&["session", "kill", &busy, "--grace", "1s"])
            .status
            .code(),
        Some(0)
    );
}

/// Regression (a killed or failed session was a dead end): `resume` of a killed session answered
/// "not resumable" with no next step. It now points to `retry`, which runs the same command,
/// tool, directory and description as a new session whose parent is the original.
#[test]
fn a_killed_session_is_retried_as_a_new_child_session() {
    let env = TestEnv::new();
    let out = env.run(&[
        "run",
        "--detach",
        "--tool",
        "worker",
        "--description",
        "build the thing",
        "--",
        "sh",
        "-c",
        "echo attempt; sleep 100",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    crate::membership::recorded(&env, &id, "agent");
    let kill = env.run(&["session", "kill", &id, "--grace", "1s"]);
    assert_eq!(kill.status.code(), Some(0), "{kill:?}");
    let resume = env.run(&["session", "resume", &id]);
    assert_eq!(resume.status.code(), Some(75), "{resume:?}");
    let stderr = String::from_utf8_lossy(&resume.stderr);
    assert!(
        stderr.contains(&format!(
            "hint: run its command again as a new session: csa session retry {id}"
        )),
        "{stderr}"
    );
    let before = env.tree_snapshot();
    // Retry with another command (the recorded one would sleep): same tool, description,
    // directory; the original is its parent and is left as it was.
    let retry = env.run(&["session", "retry", &id, "--", "sh", "-c", "echo again"]);
    assert_eq!(retry.status.code(), Some(0), "{retry:?}");
    let new_id = String::from_utf8_lossy(&retry.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("csa: session "))
        .expect("the new session's banner")
        .to_owned();
    assert_ne!(new_id, id);
    let state = crate::membership::toml_of(&env.sessions_dir.join(&new_id).join("state.toml"));
    assert_eq!(state["description"].as_str(), Some("build the thing"));
    assert_eq!(
        state["genealogy"]["parent_session_id"].as_str(),
        Some(id.as_str())
    );
    assert!(state["tools"].get("worker").is_some(), "{state:?}");
    let original: Vec<_> = before
        .iter()
        .filter(|(p, _)| p.contains(&id))
        .cloned()
        .collect();
    let now: Vec<_> = env
        .tree_snapshot()
        .into_iter()
        .filter(|(p, _)| p.contains(&id) && !p.contains(&new_id))
        .collect();
    assert_eq!(original, now, "the original session is left as it was");
    // An active session is not retried; nor is one with no recorded command.
    let out = env.run(&["run", "--detach", "--", "sleep", "100"]);
    let active = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let refused = env.run(&["session", "retry", &active]);
    assert_eq!(refused.status.code(), Some(75), "{refused:?}");
    let kill = env.run(&["session", "kill", &active, "--grace", "1s"]);
    assert_eq!(kill.status.code(), Some(0), "{kill:?}");
    let upstream = env.session();
    let text = String::from_utf8(upstream.read("state.toml")).expect("utf8");
    upstream.write(
        "state.toml",
        text.replace("phase = \"active\"", "phase = \"retired\""),
    );
    let no_command = env.run(&["session", "retry", &upstream.id]);
    assert_eq!(no_command.status.code(), Some(2), "{no_command:?}");
}

/// Regression (issue 11, case 4): resume gave up at once when another process held the
/// session's `.reconcile.lock` for an instant, and nothing said who held it. It now waits, says
/// once for whom, and gives up with exit 75 after `--lock-timeout`, changing nothing.
#[test]
fn resume_behind_a_held_reconcile_lock_says_whom_it_waits_for_then_gives_up_with_75() {
    let env = TestEnv::new();
    let id = finished_session(&env);
    let dir = env.sessions_dir.join(&id);
    let held = crate::harness::HeldLock::take(&dir.join(".reconcile.lock"));
    let before = fs_err::read(dir.join("state.toml")).expect("state");
    let out = env.run(&[
        "session",
        "resume",
        &id,
        "--lock-timeout",
        "300ms",
        "--",
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    // The holder's pid comes from /proc/locks; the portable backend has no lock table.
    let holder = if csa_process::backend::current() == csa_process::Backend::Portable {
        "another process holds it".to_owned()
    } else {
        format!("pid {}", std::process::id())
    };
    let waiting: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("csa: waiting for"))
        .collect();
    assert_eq!(waiting.len(), 1, "{stderr}");
    assert!(
        waiting[0].contains(".reconcile.lock") && waiting[0].contains(&holder),
        "{stderr}"
    );
    assert!(stderr.contains("error: gave up waiting for"), "{stderr}");
    assert_eq!(fs_err::read(dir.join("state.toml")).expect("state"), before);
    drop(held);
    let out = env.run(&["session", "resume", &id, "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "free again: {out:?}");
}
