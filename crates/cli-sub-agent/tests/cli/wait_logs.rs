//! `csa session wait` and `csa session logs` on real processes. Waiters and followers run as
//! child processes; the tests synchronise on the files they write and on the child's own output,
//! never on sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Output, Stdio};

use crate::harness::{Agent, Session, TestEnv};

/// Publishes `body` as the session's result.toml the way writers do: a temp file, then rename.
fn publish(s: &Session, name: &str, body: &str) {
    let tmp = s.path(&format!(".tmp-test-{name}"));
    fs_err::write(&tmp, body).expect("write temp");
    fs_err::rename(&tmp, s.path(name)).expect("rename");
}

fn publish_result(s: &Session, status: &str, exit_code: i32) {
    publish(
        s,
        "result.toml",
        &format!(
            "status = \"{status}\"\nexit_code = {exit_code}\nsummary = \"did it\\nsecond line\"\n\
             tool = \"codex\"\nstarted_at = \"2026-01-01T00:00:00Z\"\n\
             completed_at = \"2026-01-01T00:00:01Z\"\n"
        ),
    );
}

/// Rewrites state.toml atomically with `phase` (a reader never sees it half-written).
fn set_phase(s: &Session, phase: &str) {
    let text = String::from_utf8(s.read("state.toml")).expect("utf8");
    assert!(text.contains("phase = \"active\"\n"), "{text}");
    publish(
        s,
        "state.toml",
        &text.replace("phase = \"active\"\n", &format!("phase = \"{phase}\"\n")),
    );
}

/// A session whose owner is a live agent.
fn live_session(env: &TestEnv) -> (Agent, Session) {
    let agent = Agent::spawn();
    let s = env.session();
    s.daemon_pid(agent.pid(), agent.ticks());
    (agent, s)
}

fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    env.csa(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn csa")
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn wait_returns_0_once_a_real_success_result_appears() {
    let env = TestEnv::new();
    let (_agent, s) = live_session(&env);
    let child = spawn(&env, &["session", "wait", &s.id]);
    // The child may see it on its first poll or a later one: either way it must end with it.
    publish_result(&s, "success", 0);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("session {}: success (exit 0)\ndid it\n", s.id)
    );
    // A result beside a live owner that never moves the phase is returned after the grace.
    assert_eq!(s.phase(), "active", "wait does not retire a live session");
}

#[test]
fn wait_on_a_failure_result_exits_1_and_json_carries_the_result() {
    let env = TestEnv::new();
    let (_agent, s) = live_session(&env);
    // A finished turn, as an owner leaves it: the result, then the phase.
    publish_result(&s, "failure", 7);
    set_phase(&s, "available");
    let out = env.run(&["session", "wait", &s.id]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!("session {}: failure (exit 7)\n", s.id)),
        "{}",
        text(&out.stdout)
    );
    assert!(
        out.stderr.is_empty(),
        "no waiting message when there is nothing to wait for: {}",
        text(&out.stderr)
    );
    let out = env.run(&["session", "wait", &s.id[..12], "--format", "json"]);
    assert_eq!(code(&out), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["session_id"], s.id.as_str());
    assert_eq!(json["status"], "failure");
    assert_eq!(json["exit_code"], 7);
    assert_eq!(json["summary"], "did it\nsecond line");
}

#[test]
fn wait_whose_owner_is_killed_finalizes_it_and_exits_5() {
    let env = TestEnv::new();
    let (mut agent, s) = live_session(&env);
    let child = spawn(&env, &["session", "wait", &s.id]);
    agent.kill9();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), Some(5), "{}", text(&out.stderr));
    let result = s.result().expect("synthetic result");
    let summary = result["summary"].as_str().expect("summary");
    assert!(
        summary.starts_with("synthetic failure by session wait: process dead, result.toml missing"),
        "{summary}"
    );
    assert!(
        text(&out.stdout).starts_with(&format!(
            "session {}: failure (exit 1), synthetic (not observed)\n",
            s.id
        )),
        "{}",
        text(&out.stdout)
    );
    let state = s.state();
    assert_eq!(state["phase"].as_str(), Some("retired"));
    assert_eq!(
        state["termination_reason"].as_str(),
        Some("orphaned_process")
    );
}

#[test]
fn wait_times_out_with_124_and_changes_nothing() {
    let env = TestEnv::new();
    let (_agent, s) = live_session(&env);
    let before = env.tree_snapshot();
    let out = env.run(&["session", "wait", &s.id, "--timeout", "1s"]);
    assert_eq!(code(&out), Some(124));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("csa: waiting for session {} (running)…\n", s.id)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("error: session {} has no result after 1s", s.id)),
        "{stderr}"
    );
    assert!(stderr.contains("\nhint: "), "{stderr}");

    let out = env.run(&[
        "session",
        "wait",
        &s.id,
        "--timeout",
        "200ms",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), Some(124));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"session_id": s.id, "timeout": true})
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("\nhint: "),
        "no waiting message with --format json: {stderr}"
    );
    assert_eq!(
        env.tree_snapshot(),
        before,
        "wait on a live session writes nothing"
    );
}

#[test]
fn wait_on_an_ended_session_without_result_exits_75() {
    let env = TestEnv::new();
    let s = env.session();
    set_phase(&s, "available");
    let before = env.tree_snapshot();
    let out = env.run(&["session", "wait", &s.id]);
    assert_eq!(code(&out), Some(75));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: session {} is available and has no result\n",
            s.id
        )),
        "{stderr}"
    );
    assert_eq!(env.tree_snapshot(), before);
}

#[test]
fn wait_on_an_unparsable_result_exits_3_and_keeps_it() {
    let env = TestEnv::new();
    let (_agent, s) = live_session(&env);
    publish(&s, "result.toml", "status = [[[");
    let out = env.run(&["session", "wait", &s.id]);
    assert_eq!(code(&out), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("result.toml"), "names the file: {stderr}");
    assert_eq!(s.read("result.toml"), b"status = [[[");
}

#[test]
fn unknown_session_exits_4_for_wait_and_logs() {
    let env = TestEnv::new();
    let _other = env.session();
    for args in [
        &["session", "wait", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"][..],
        &["session", "logs", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"][..],
        &["session", "logs", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "--follow"][..],
    ] {
        let out = env.run(args);
        assert_eq!(code(&out), Some(4), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).starts_with("error: no session matches"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn logs_prints_the_log_its_tail_and_the_stderr_log() {
    let env = TestEnv::new();
    let s = env.session();
    let out = env.run(&["session", "logs", &s.id]);
    assert_eq!(code(&out), Some(0), "a missing log prints nothing");
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    // Raw bytes, not necessarily UTF-8, and an unterminated last line.
    let log: &[u8] = b"one\ntwo\n\xff\xfe three\nfour";
    s.write("output.log", log);
    s.write("stderr.log", "warn 1\nwarn 2\n");
    let before = env.tree_snapshot();
    let out = env.run(&["session", "logs", &s.id]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(out.stdout, log);
    let out = env.run(&["session", "logs", &s.id, "--tail", "2"]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(out.stdout, b"\xff\xfe three\nfour");
    let out = env.run(&["session", "logs", &s.id, "--tail", "0"]);
    assert!(out.stdout.is_empty());
    let out = env.run(&["session", "logs", &s.id, "--tail", "100"]);
    assert_eq!(out.stdout, log);
    let out = env.run(&["session", "logs", &s.id, "--stderr"]);
    assert_eq!(out.stdout, b"warn 1\nwarn 2\n");
    let out = env.run(&["session", "logs", &s.id, "--stderr", "--tail", "1"]);
    assert_eq!(out.stdout, b"warn 2\n");
    assert_eq!(env.tree_snapshot(), before, "logs is read-only");
}

#[test]
fn logs_tail_of_a_log_larger_than_one_read_chunk() {
    let env = TestEnv::new();
    let s = env.session();
    // Lines straddle the 64 KiB chunk boundaries the backwards scan reads in.
    let log: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    s.write("output.log", &log);
    let out = env.run(&["session", "logs", &s.id, "--tail", "3"]);
    assert_eq!(text(&out.stdout), "line 19997\nline 19998\nline 19999\n");
    let out = env.run(&["session", "logs", &s.id]);
    assert_eq!(out.stdout.len(), log.len());
}

#[test]
fn logs_follow_prints_every_line_exactly_once_and_stops_when_the_session_ends() {
    let env = TestEnv::new();
    let (_agent, s) = live_session(&env);
    s.write("output.log", "line 1\n");
    let before = env.tree_snapshot();
    let mut child = spawn(&env, &["session", "logs", &s.id, "--follow"]);
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = String::new();
    for next in 2..=5 {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read line");
        assert_eq!(line, format!("line {}\n", next - 1));
        seen.push_str(&line);
        // Append the next line only once the previous one has been printed.
        let mut log = fs_err::OpenOptions::new()
            .append(true)
            .open(s.path("output.log"))
            .expect("open log");
        log.write_all(format!("line {next}\n").as_bytes())
            .expect("append");
    }
    assert_eq!(
        env.tree_snapshot().len(),
        before.len(),
        "logs creates no file"
    );
    // output.log was just written, so progress says alive: ending the phase must stop it.
    set_phase(&s, "retired");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read to EOF");
    seen.push_str(&rest);
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(seen, "line 1\nline 2\nline 3\nline 4\nline 5\n");
}

#[test]
fn logs_follow_waits_for_the_log_to_appear_and_stops_when_the_owner_dies() {
    let env = TestEnv::new();
    let (mut agent, s) = live_session(&env);
    let mut child = spawn(&env, &["session", "logs", &s.id, "--follow", "--stderr"]);
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    s.write("stderr.log", "partial");
    let mut first = [0; 7];
    stdout.read_exact(&mut first).expect("read");
    assert_eq!(
        &first, b"partial",
        "an unterminated line is printed as it comes"
    );
    // The log must not count as fresh progress, so that the owner's death ends the session.
    s.backdate();
    agent.kill9();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("read to EOF");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    assert_eq!(s.phase(), "active", "logs never finalizes");
    assert!(s.result().is_none());
}
