//! A synthetic result is unmistakable (issue 12): `observed` in `result` and `wait` JSON, the
//! text saying "synthetic (not observed)", and `wait`'s own exit code 5.

use std::time::{Duration, Instant};

use crate::harness::TestEnv;

/// Polls `done` every few milliseconds until it holds, failing after 30 s.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn pid_in(text: &str) -> i32 {
    text.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"))
}

/// Regression: an agent that printed "all good" and exited 0 while its supervisor had been
/// killed ended as `failure`, `exit_code 1` (upstream's format fixes 1 for a synthetic
/// result), and `result`/`wait` showed it exactly like an agent that really exited 1. Now the
/// synthetic one carries `"observed": false`, its text says "synthetic (not observed)", and
/// `wait` exits 5; the real exit 1 has `"observed": true` and `wait` exits 1.
#[test]
fn a_synthetic_failure_is_not_mistaken_for_an_agent_that_exited_1() {
    let env = TestEnv::new();
    // The agent says all is well, then exits 0 once the test creates `go`.
    let script = "echo all good; while [ ! -e go ]; do sleep 0.01; done; exit 0";
    let out = env.run(&["run", "--detach", "--allow-concurrent", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let dir = env.sessions_dir.join(&id);
    until("the agent's output", || {
        fs_err::read_to_string(dir.join("output.log")).is_ok_and(|l| l.contains("all good"))
    });
    let lock: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(dir.join("locks/sh.lock")).expect("lock"))
            .expect("lock body");
    let agent = u32::try_from(lock["pid"].as_u64().expect("agent pid")).expect("pid");
    let supervisor = pid_in(&fs_err::read_to_string(dir.join("daemon.pid")).expect("daemon.pid"));
    use nix::sys::signal::{kill, Signal::SIGKILL};
    kill(nix::unistd::Pid::from_raw(supervisor), SIGKILL).expect("kill the supervisor");
    until("the supervisor's end", || {
        !csa_process::probe(u32::try_from(supervisor).expect("pid")).is_running()
    });
    fs_err::write(env.project.join("go"), "").expect("let the agent exit 0");
    until("the agent's exit", || {
        !csa_process::probe(agent).is_running()
    });

    let out = env.run(&["session", "wait", &id, "--format", "json"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let waited = json(&out);
    assert_eq!(waited["observed"], false, "{waited}");
    assert_eq!(waited["status"], "failure", "{waited}");
    assert_eq!(waited["exit_code"], 1, "upstream's format: {waited}");
    let out = env.run(&["session", "result", &id, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json(&out)["observed"], false);
    let text = String::from_utf8_lossy(&env.run(&["session", "result", &id]).stdout).into_owned();
    assert!(text.contains("synthetic (not observed)"), "{text}");
    let text = String::from_utf8_lossy(&env.run(&["session", "wait", &id]).stdout).into_owned();
    assert!(
        text.starts_with(&format!(
            "session {id}: failure (exit 1), synthetic (not observed)"
        )),
        "{text}"
    );

    // An agent that really exits 1: the same status and code, observed.
    let out = env.run(&[
        "run",
        "--allow-concurrent",
        "sh",
        "-c",
        "echo all good; exit 1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let real = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("csa: session ").map(str::to_owned))
        .expect("session line");
    let out = env.run(&["session", "wait", &real, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let waited = json(&out);
    assert_eq!(
        (waited["status"].as_str(), waited["exit_code"].as_i64()),
        (Some("failure"), Some(1))
    );
    assert_eq!(waited["observed"], true, "{waited}");
    let text = String::from_utf8_lossy(&env.run(&["session", "result", &real]).stdout).into_owned();
    assert!(!text.contains("not observed"), "{text}");
}
