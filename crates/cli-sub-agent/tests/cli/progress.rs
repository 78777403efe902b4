//! Progress and waiting lines (issue 6): drawn on a terminal, never when stderr is not one or
//! with `--format json`. A terminal is a real pseudo-terminal from util-linux `script(1)`; the
//! tests print why they skip where it is missing.

use std::process::{Command, Output};

use crate::harness::{Agent, TestEnv};

/// Runs `csa ARGS` with stdout and stderr on a pseudo-terminal, with `extra_env`.
pub(crate) fn on_terminal(
    env: &TestEnv,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> Option<Output> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: script(1) is not available to provide a terminal");
        return None;
    }
    let csa = assert_cmd::cargo::cargo_bin!("csa");
    // The words are ours (a temp path without spaces, fixed arguments): quoting is only for
    // the shell `script` runs the command with.
    let line: Vec<String> = std::iter::once(csa.display().to_string())
        .chain(["--state-dir".into(), env.state_root.display().to_string()])
        .chain(args.iter().map(|a| (*a).to_owned()))
        .map(|w| format!("'{w}'"))
        .collect();
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line.join(" "), "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .current_dir(&env.project);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Some(cmd.output().expect("run script"))
}

#[test]
fn wait_shows_one_waiting_line_on_a_terminal_and_one_plain_line_elsewhere() {
    let env = TestEnv::new();
    let agent = Agent::spawn();
    let session = env.session();
    session.daemon_pid(agent.pid(), agent.ticks());
    let id = session.id.as_str();

    let piped = env.run(&["session", "wait", id, "--timeout", "300ms"]);
    assert_eq!(piped.status.code(), Some(124));
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert_eq!(
        stderr.matches("waiting for session").count(),
        1,
        "one plain line: {stderr}"
    );
    assert!(
        !stderr.contains('\r'),
        "no redrawing off a terminal: {stderr:?}"
    );

    let json = env.run(&[
        "session",
        "wait",
        id,
        "--timeout",
        "300ms",
        "--format",
        "json",
    ]);
    assert_eq!(json.status.code(), Some(124));
    assert!(
        !String::from_utf8_lossy(&json.stderr).contains("waiting"),
        "nothing with --format json"
    );

    let Some(tty) = on_terminal(&env, &["session", "wait", id, "--timeout", "1500ms"], &[]) else {
        return;
    };
    let out = String::from_utf8_lossy(&tty.stdout);
    assert_eq!(tty.status.code(), Some(124), "{out}");
    assert!(
        out.contains(&format!("waiting for session {id} (running)")),
        "{out:?}"
    );
    assert!(
        !out.contains("csa: waiting"),
        "the spinner line, not the plain one: {out:?}"
    );
}

/// A reconcile made slow by a fail point that sleeps (1.2 s before publishing a result) shows
/// its progress on a terminal, and nothing when piped.
#[cfg(feature = "failpoints")]
#[test]
fn a_slow_reconcile_shows_progress_on_a_terminal_only() {
    let slow = [("FAILPOINTS", "reconcile::before_publish=sleep(1200)")];
    let dead = || {
        let mut child = Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("reap");
        pid
    };

    let env = TestEnv::new();
    env.session().daemon_pid(dead(), 1);
    let mut cmd = env.csa(&["session", "reconcile"]);
    cmd.envs(slow);
    let piped = cmd.output().expect("run");
    assert_eq!(piped.status.code(), Some(0));
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("reconciling"),
        "no progress when stderr is not a terminal"
    );

    let env = TestEnv::new();
    env.session().daemon_pid(dead(), 1);
    let Some(tty) = on_terminal(&env, &["session", "reconcile"], &slow) else {
        return;
    };
    let out = String::from_utf8_lossy(&tty.stdout);
    assert_eq!(tty.status.code(), Some(0), "{out}");
    assert!(out.contains("reconciling: "), "{out:?}");
    assert!(out.contains("1 synthesized"), "the report follows: {out:?}");
}

/// `wait --format json --progress` is a stream of one JSON object per line: a progress object
/// when the wait starts and when the status changes, then the result.
#[test]
fn wait_progress_is_one_json_object_per_line() {
    use std::io::{BufRead, BufReader};
    let env = TestEnv::new();
    let mut agent = Agent::spawn();
    let session = env.session();
    session.daemon_pid(agent.pid(), agent.ticks());
    let mut wait = env
        .csa(&[
            "session",
            "wait",
            &session.id,
            "--format",
            "json",
            "--progress",
            "--timeout",
            "60s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wait");
    let mut lines = BufReader::new(wait.stdout.take().expect("stdout")).lines();
    let parse = |line: std::io::Result<String>| -> serde_json::Value {
        let line = line.expect("read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"))
    };
    let first = parse(lines.next().expect("a progress line"));
    assert_eq!(first["event"], "waiting", "{first}");
    assert_eq!(first["status"], "running", "{first}");
    assert_eq!(first["session_id"], session.id.as_str());
    assert!(first["waited_seconds"].is_number(), "{first}");
    // The owner dies: wait reconciles it and ends the stream with the synthetic result.
    agent.kill9();
    let rest: Vec<serde_json::Value> = lines.map(parse).collect();
    let last = rest.last().expect("a result line");
    assert_eq!(last["event"], "result", "{last}");
    assert_eq!(last["status"], "failure", "{last}");
    assert_eq!(last["observed"], false, "{last}");
    assert!(
        rest[..rest.len() - 1]
            .iter()
            .all(|v| v["event"] == "waiting"),
        "{rest:?}"
    );
    assert_eq!(
        wait.wait().expect("wait").code(),
        Some(5),
        "synthetic: not observed"
    );
}
