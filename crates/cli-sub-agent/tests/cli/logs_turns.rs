//! `csa session logs` and turns (issue 12): a hint when stdout is empty and stderr is not,
//! turn boundaries (markers on a terminal, `turn` in JSON), and `--turn N`.

use std::process::Output;

use crate::harness::TestEnv;
use crate::progress::on_terminal;

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `csa run ARGS…` in the foreground; returns the session id.
fn run(env: &TestEnv, args: &[&str]) -> String {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    let o = env.run(&full);
    err(&o)
        .lines()
        .find_map(|l| l.strip_prefix("csa: session ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no session line: {o:?}"))
}

fn resume(env: &TestEnv, id: &str, script: &str) {
    let o = env.run(&["session", "resume", id, "sh", "-c", script]);
    assert!(o.status.code().is_some(), "{o:?}");
}

/// Regression: gemini-cli and codex write their errors to stderr only, and `csa session logs
/// ID` printed nothing (exit 0) with no hint about `--stderr`. Now a hint on stderr says how
/// many bytes stderr has and the command that shows them; stdout stays empty.
#[test]
fn logs_says_when_stdout_is_empty_and_stderr_is_not() {
    let env = TestEnv::new();
    let id = run(&env, &["sh", "-c", "echo 'API key not valid' >&2; exit 41"]);
    let o = env.run(&["session", "logs", &id]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(out(&o), "", "stdout is the log: empty");
    assert_eq!(
        err(&o),
        format!(
            "hint: session {id} wrote nothing on stdout but 18 bytes on stderr: csa session logs {id} --stderr\n"
        )
    );
    let o = env.run(&["session", "logs", &id, "--stderr"]);
    assert_eq!(out(&o), "API key not valid\n");
    assert_eq!(err(&o), "", "no hint for the stream asked for");
    // -q: only the data.
    let o = env.run(&["-q", "session", "logs", &id]);
    assert_eq!((out(&o), err(&o)), (String::new(), String::new()));
    // An agent that wrote on stdout gets no hint.
    let id = run(&env, &["sh", "-c", "echo fine; echo noise >&2"]);
    let o = env.run(&["session", "logs", &id]);
    assert_eq!((out(&o), err(&o)), ("fine\n".to_owned(), String::new()));
}

/// Regression: after `resume`, `logs` printed every turn's output run together, with no turn
/// boundaries and no way to ask for one turn. Now run.toml records where each turn starts;
/// `--turn N` prints that turn's bytes only, JSON lines carry their `turn` (a line is cut where
/// a turn starts in its middle), and on a terminal a marker line on stderr precedes each turn.
#[test]
fn logs_marks_turn_boundaries_and_takes_turn() {
    let env = TestEnv::new();
    let id = run(&env, &["sh", "-c", "echo one; printf 'partial'"]);
    resume(&env, &id, "echo two");
    resume(&env, &id, "echo oops >&2; exit 3");

    // Piped: the bytes exactly, no marker.
    let o = env.run(&["session", "logs", &id]);
    assert_eq!(out(&o), "one\npartialtwo\n");
    // The last turn wrote only on stderr: said so, for that turn.
    assert_eq!(
        err(&o),
        format!(
            "hint: turn 3 of session {id} wrote nothing on stdout but 5 bytes on stderr: csa session logs {id} --stderr --turn 3\n"
        )
    );

    for (n, stdout, stderr) in [(1, "one\npartial", ""), (2, "two\n", ""), (3, "", "oops\n")] {
        let n = n.to_string();
        let o = env.run(&["session", "logs", &id, "--turn", &n]);
        assert_eq!(
            (o.status.code(), out(&o)),
            (Some(0), stdout.to_owned()),
            "turn {n}: {o:?}"
        );
        let o = env.run(&["session", "logs", &id, "--turn", &n, "--stderr"]);
        assert_eq!(out(&o), stderr, "turn {n} --stderr");
    }
    let o = env.run(&["session", "logs", &id, "--turn", "2", "--tail", "1"]);
    assert_eq!(out(&o), "two\n");
    let o = env.run(&["session", "logs", &id, "--turn", "4"]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert!(err(&o).contains("no turn 4 (turns recorded: 1-3)"), "{o:?}");

    // JSON: each line's turn; "partial" (turn 1) and "two" (turn 2) are separate pieces.
    let o = env.run(&["session", "logs", &id, "--format", "json"]);
    let lines: Vec<(String, bool, u64)> = out(&o)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            (
                v["text"].as_str().expect("text").to_owned(),
                v["eol"].as_bool().expect("eol"),
                v["turn"].as_u64().expect("turn"),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("one".to_owned(), true, 1),
            ("partial".to_owned(), false, 1),
            ("two".to_owned(), true, 2),
        ]
    );

    // On a terminal: a marker before each turn, on a line of its own, the bytes unchanged.
    let Some(tty) = on_terminal(&env, &["session", "logs", &id], &[]) else {
        return;
    };
    let text = String::from_utf8_lossy(&tty.stdout).replace('\r', "");
    let markers: Vec<&str> = text.lines().filter(|l| l.starts_with("── turn ")).collect();
    assert_eq!(markers.len(), 3, "{text}");
    let body: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("── turn "))
        .collect();
    assert_eq!(body[..3], ["one", "partial", "two"], "{text}");
    assert!(markers[1].starts_with("── turn 2 (started 20"), "{text}");
}

/// A run.toml written before csa recorded offsets: the log is printed as before, but no line
/// is given a turn it cannot be proved to belong to, and `--turn` says why it cannot answer.
#[test]
fn logs_of_a_run_toml_without_offsets_guess_nothing() {
    let env = TestEnv::new();
    let id = run(&env, &["echo", "one"]);
    resume(&env, &id, "echo two");
    let run_toml = env.sessions_dir.join(&id).join("run.toml");
    let text = fs_err::read_to_string(&run_toml).expect("run.toml");
    let old: String = text
        .lines()
        .filter(|l| !l.starts_with("stdout_offset") && !l.starts_with("stderr_offset"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(old, text, "the offsets were recorded");
    fs_err::write(&run_toml, old).expect("write");
    let o = env.run(&["session", "logs", &id]);
    assert_eq!(out(&o), "one\ntwo\n");
    let o = env.run(&["session", "logs", &id, "--format", "json"]);
    for l in out(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("json line");
        assert!(v["turn"].is_null(), "{l}");
    }
    let o = env.run(&["session", "logs", &id, "--turn", "2"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(err(&o).contains("written by an older csa"), "{o:?}");
}
