//! `csa session kill` with real processes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{stderr_until, Agent, HeldLock, TestEnv};

fn detach(env: &TestEnv, command: &[&str]) -> String {
    let mut args = vec!["run", "--detach", "--"];
    args.extend_from_slice(command);
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn toml_of(path: &std::path::Path) -> toml::Table {
    toml::from_str(&fs_err::read_to_string(path).expect("read")).expect("toml")
}

fn pid_in(path: &std::path::Path, key: Option<&str>) -> u32 {
    let text = fs_err::read_to_string(path).expect("read");
    match key {
        None => text
            .split_whitespace()
            .next()
            .expect("pid")
            .parse()
            .expect("int"),
        Some(key) => {
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            u32::try_from(v[key].as_u64().expect("pid")).expect("pid")
        }
    }
}

fn running(pid: u32) -> bool {
    csa_process::probe(pid).is_running()
}

fn wait_until_gone(pid: u32) {
    while running(pid) {
        std::thread::yield_now();
    }
}

#[test]
fn agent_ignoring_sigterm_is_killed_with_its_grandchild_after_the_grace() {
    let env = TestEnv::new();
    let id = detach(
        &env,
        &[
            "sh",
            "-c",
            "trap '' TERM; sleep 1000 & echo $! > grandchild.pid; wait",
        ],
    );
    let gc_file = env.project.join("grandchild.pid");
    // Synchronise on the agent's own write: the grandchild exists once its pid is in the file.
    let grandchild = loop {
        if let Ok(text) = fs_err::read_to_string(&gc_file) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                break pid;
            }
        }
        std::thread::yield_now();
    };
    let dir = env.sessions_dir.join(&id);
    let agent = pid_in(&dir.join("locks/sh.lock"), Some("pid"));
    assert!(running(agent) && running(grandchild));
    let out = env.run(&["session", "kill", &id, "--grace", "1s"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sending SIGKILL"),
        "{out:?}"
    );
    assert!(!running(agent), "agent gone when kill returns");
    assert!(!running(grandchild), "grandchild gone when kill returns");
    let state = toml_of(&dir.join("state.toml"));
    assert_eq!(state["phase"].as_str(), Some("retired"));
    assert_eq!(state["termination_reason"].as_str(), Some("killed"));
    let result = toml_of(&dir.join("result.toml"));
    assert_eq!(result["status"].as_str(), Some("signal"));
}

#[test]
fn killing_an_ended_session_is_a_byte_identical_no_op() {
    let env = TestEnv::new();
    let s = env.session();
    let text = String::from_utf8(s.read("state.toml")).expect("utf8");
    s.write(
        "state.toml",
        text.replace("phase = \"active\"", "phase = \"retired\""),
    );
    let before = env.tree_snapshot();
    let out = env.run(&["session", "kill", &s.id]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("nothing to kill: session {} is already retired\n", s.id)
    );
    assert_eq!(env.tree_snapshot(), before);
}

#[test]
fn four_concurrent_kills_all_succeed_with_one_transition() {
    let env = TestEnv::new();
    let id = detach(&env, &["sleep", "1000"]);
    let dir = env.sessions_dir.join(&id);
    let kills: Vec<_> = (0..4)
        .map(|_| {
            env.csa(&["session", "kill", &id])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for k in kills {
        let out = k.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let state = toml_of(&dir.join("state.toml"));
    assert_eq!(state["phase"].as_str(), Some("retired"));
    assert_eq!(state["termination_reason"].as_str(), Some("killed"));
    assert_eq!(
        toml_of(&dir.join("result.toml"))["status"].as_str(),
        Some("signal")
    );
    assert!(!dir.join(".kill-requested").exists());
}

#[test]
fn kill_racing_the_agents_own_exit_always_ends_consistently_and_never_changes() {
    let env = TestEnv::new();
    for i in 0..50 {
        // Agents that end on their own after 0–4 ms, racing the kill.
        let delay = format!("0.00{}", i % 5);
        let id = detach(&env, &["sleep", &delay]);
        let dir = env.sessions_dir.join(&id);
        let supervisor = pid_in(&dir.join("daemon.pid"), None);
        let out = env.run(&["session", "kill", &id]);
        assert_eq!(out.status.code(), Some(0), "iteration {i}: {out:?}");
        wait_until_gone(supervisor);
        let state = toml_of(&dir.join("state.toml"));
        let result_bytes = fs_err::read(dir.join("result.toml")).expect("one final result");
        let result: toml::Table =
            toml::from_str(std::str::from_utf8(&result_bytes).expect("utf8")).expect("toml");
        match (
            state["phase"].as_str(),
            state.get("termination_reason").and_then(|v| v.as_str()),
        ) {
            (Some("retired"), Some("killed")) => {
                assert_eq!(result["status"].as_str(), Some("signal"), "iteration {i}")
            }
            (Some("available"), _) => {
                assert_eq!(
                    result["status"].as_str(),
                    Some("success"),
                    "iteration {i}: exited on its own"
                );
            }
            other => panic!("iteration {i}: inconsistent end {other:?} with {result:?}"),
        }
        assert!(!dir.join(".kill-requested").exists(), "iteration {i}");
        // Never changed afterwards: another kill and a reconcile leave it alone.
        assert_eq!(env.run(&["session", "kill", &id]).status.code(), Some(0));
        assert_eq!(env.run(&["session", "reconcile"]).status.code(), Some(0));
        assert_eq!(
            fs_err::read(dir.join("result.toml")).expect("result"),
            result_bytes,
            "iteration {i}"
        );
    }
}

#[test]
fn a_pid_reused_by_an_unrelated_process_is_never_signalled_and_the_session_is_reconciled() {
    let env = TestEnv::new();
    let unrelated = Agent::spawn();
    let s = env.session();
    let ticks = unrelated.reused_ticks();
    s.write("daemon.pid", format!("{} {ticks}\n", unrelated.pid()));
    s.write(
        "locks/codex.lock",
        format!(
            "{{\"pid\": {}, \"pid_start_time_ticks\": {ticks}}}",
            unrelated.pid()
        ),
    );
    s.backdate();
    let out = env.run(&["session", "kill", &s.id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already dead"),
        "{out:?}"
    );
    assert!(running(unrelated.pid()), "the unrelated process survives");
    assert_eq!(s.phase(), "retired");
    let result = s.result().expect("result");
    assert!(result["summary"]
        .as_str()
        .expect("summary")
        .starts_with("synthetic failure by session kill"));
}

/// Regression (issue 11, case 4): with another process holding the session's
/// `.reconcile.lock` (an upstream reconciler, a stuck process), `csa session kill` blocked
/// silently, with no output and no bound.
#[test]
fn kill_behind_a_held_reconcile_lock_says_whom_it_waits_for_then_gives_up_with_75() {
    let env = TestEnv::new();
    let id = detach(&env, &["sleep", "1000"]);
    let dir = env.sessions_dir.join(&id);
    let agent = pid_in(&dir.join("locks/sleep.lock"), Some("pid"));
    let lock_path = dir.join(".reconcile.lock");
    let held = HeldLock::take(&lock_path);
    let started = Instant::now();
    let out = env.run(&[
        "session",
        "kill",
        &id,
        "--grace",
        "1s",
        "--lock-timeout",
        "1s",
    ]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let waiting: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("csa: waiting for"))
        .collect();
    assert_eq!(waiting.len(), 1, "says it once: {stderr}");
    let holder = lock_holder_words();
    assert!(
        waiting[0].contains(&lock_path.display().to_string()) && waiting[0].contains(&holder),
        "names the lock and its holder: {stderr}"
    );
    assert!(
        stderr.contains("error: gave up waiting for") && stderr.contains(&holder),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    // Within the bound (1 s), plus the time to start csa and look the session up.
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    assert!(running(agent), "nothing was signalled");
    assert_eq!(
        toml_of(&dir.join("state.toml"))["phase"].as_str(),
        Some("active")
    );
    drop(held);
    // Free again: the agent is stopped (and no process outlives the test).
    let out = env.run(&["session", "kill", &id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!running(agent));
}

/// The same wait, with the lock released while kill waits: it proceeds and kills.
#[test]
fn kill_behind_a_held_reconcile_lock_proceeds_once_it_is_released() {
    let env = TestEnv::new();
    let id = detach(&env, &["sleep", "1000"]);
    let dir = env.sessions_dir.join(&id);
    let agent = pid_in(&dir.join("locks/sleep.lock"), Some("pid"));
    let held = HeldLock::take(&dir.join(".reconcile.lock"));
    // A bound no test machine reaches: the release, not the bound, ends the wait.
    let mut kill = env
        .csa(&["session", "kill", &id, "--lock-timeout", "10m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kill");
    let (lines, mut rest) = stderr_until(&mut kill, "csa: waiting for");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains(&lock_holder_words())),
        "{lines:?}"
    );
    drop(held);
    let mut tail = String::new();
    std::io::Read::read_to_string(&mut rest, &mut tail).expect("stderr");
    let out = kill.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{out:?} {tail}");
    assert!(!running(agent), "killed once the lock was free");
    let state = toml_of(&dir.join("state.toml"));
    assert_eq!(state["phase"].as_str(), Some("retired"));
    assert_eq!(state["termination_reason"].as_str(), Some("killed"));
    // Killing ends the turn: the time of last use is its end (issue 11, case 2).
    let time = |v: &toml::Value| {
        v.as_str()
            .expect("a time")
            .parse::<chrono::DateTime<chrono::Utc>>()
            .expect("RFC 3339")
    };
    let result = toml_of(&dir.join("result.toml"));
    assert_eq!(time(&state["last_accessed"]), time(&result["completed_at"]));
}

/// How the waiting line names this test process as the lock's holder: its pid, read from
/// `/proc/locks` (procfs backend); the portable backend has no lock table and says only that
/// another process holds it.
fn lock_holder_words() -> String {
    if csa_process::backend::current() == csa_process::Backend::Portable {
        "another process holds it".to_owned()
    } else {
        format!("pid {}", std::process::id())
    }
}
