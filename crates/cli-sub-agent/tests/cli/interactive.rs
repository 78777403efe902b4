//! Interactive agents (`csa run` on a terminal, `csa session attach`), driven as a person would:
//! the real `csa` on a real pseudo-terminal (expectrl, through csa-terminal's test support),
//! running a real full-screen program that refuses to run without a terminal, its screen read
//! from a terminal model as tmux's `capture-pane` would show it.

use std::path::Path;

use csa_terminal::testing::{curses_program, have, have_curses, Terminal};

use crate::harness::{backdate_tree, TestEnv};
use crate::membership::{eventually, recorded, sigkill, toml_of};

/// `csa --state-dir ROOT ARGS…` on a new `cols`×`rows` terminal, in the project directory.
fn csa_on_terminal(env: &TestEnv, cols: u16, rows: u16, args: &[&str]) -> Terminal {
    let csa = assert_cmd::cargo::cargo_bin!("csa");
    let root = env.state_root.to_str().expect("utf-8");
    let project = env.project.to_str().expect("utf-8");
    let mut argv = vec![project, csa.to_str().expect("utf-8"), "--state-dir", root];
    argv.extend_from_slice(args);
    Terminal::spawn(cols, rows, "cd \"$1\" && shift && exec \"$@\"", &argv)
}

fn only_session(env: &TestEnv) -> String {
    let mut ids: Vec<String> = fs_err::read_dir(&env.sessions_dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 26 && !n.starts_with('.'))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids.remove(0)
}

/// The terminal modes as `stty -g` prints them, written by the wrapper around csa.
fn modes(path: &Path) -> String {
    fs_err::read_to_string(path)
        .expect("stty -g")
        .trim()
        .to_owned()
}

#[test]
fn a_full_screen_agent_runs_detaches_and_is_attached_again() {
    if !have_curses("a_full_screen_agent_runs_detaches_and_is_attached_again") {
        return;
    }
    let env = TestEnv::new();
    let program = curses_program(&env.project);
    let program = program.to_str().expect("utf-8");
    // A wrapper records the terminal's modes before and after csa, as a shell would see them.
    let before = env.project.join("modes.before");
    let after = env.project.join("modes.after");
    let csa = assert_cmd::cargo::cargo_bin!("csa");
    let script = "cd \"$1\" && stty -g > \"$2\" && \"$3\" --state-dir \"$4\" run -- python3 \"$5\"; code=$?; stty -g > \"$6\"; exit $code";
    let mut term = Terminal::spawn(
        80,
        24,
        script,
        &[
            env.project.to_str().expect("utf-8"),
            before.to_str().expect("utf-8"),
            csa.to_str().expect("utf-8"),
            env.state_root.to_str().expect("utf-8"),
            program,
            after.to_str().expect("utf-8"),
        ],
    );
    // Its screen appears, at the terminal's size.
    term.wait_text("READY");
    term.wait_text("SIZE 80x24");
    let id = only_session(&env);
    // Keys reach it; Ctrl-C reaches it as SIGINT through its terminal; a resize reaches it.
    term.send(b"ab");
    term.wait_text("KEYS: ab");
    term.send(b"\x03");
    term.wait_text("KEYS: ab<INT>");
    term.resize(100, 30);
    term.wait_text("SIZE 100x30");
    // Detach: Ctrl-\ then d. csa returns, the agent runs on.
    term.send(b"\x1cd");
    assert_eq!(term.wait_exit(), 0, "{}", term.output());
    assert!(term.output().contains("attach again"), "{}", term.output());
    assert_eq!(modes(&before), modes(&after), "the terminal is restored");
    let alive = env.run(&["session", "is-alive", &id]);
    assert_eq!(alive.status.code(), Some(0), "{alive:?}");
    let membership = toml_of(&env.sessions_dir.join(&id).join("membership.toml"));
    assert_eq!(membership["interactive"].as_bool(), Some(true));
    // list shows it attachable, nobody attached.
    let list = env.run(&["session", "list", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(
        json[0]["terminal"],
        serde_json::json!({"attachable": true, "writer": false, "watchers": 0}),
        "{json}"
    );
    let text = String::from_utf8_lossy(&env.run(&["session", "list"]).stdout).into_owned();
    assert!(text.contains("running, attachable"), "{text}");

    // Attach again: the current screen is shown, and typing reaches the agent.
    let mut writer = csa_on_terminal(&env, 100, 30, &["session", "attach", &id]);
    writer.wait_text("KEYS: ab<INT>");
    writer.send(b"c");
    writer.wait_text("KEYS: ab<INT>c");
    eventually("list shows the writer attached", || {
        String::from_utf8_lossy(&env.run(&["session", "list"]).stdout).contains("running, attached")
    });
    // A read-only watcher sees the screen and its keys do not reach the agent.
    let mut watcher = csa_on_terminal(&env, 100, 30, &["session", "attach", "--read-only", &id]);
    watcher.wait_text("KEYS: ab<INT>c");
    watcher.send(b"z");
    writer.send(b"e");
    writer.wait_text("KEYS: ab<INT>ce");
    watcher.wait_text("KEYS: ab<INT>ce");
    assert!(
        !writer.text().contains("KEYS: ab<INT>cz"),
        "{}",
        writer.text()
    );
    // A second writer is refused, with the way to watch or take over.
    let mut second = csa_on_terminal(&env, 100, 30, &["session", "attach", &id]);
    assert_eq!(second.wait_exit(), 75, "{}", second.output());
    assert!(
        second.output().contains("--read-only"),
        "{}",
        second.output()
    );
    // The watcher detaches; the writer quits the agent: both learn the end, csa exits 7.
    watcher.send(b"\x1cd");
    assert_eq!(watcher.wait_exit(), 0, "{}", watcher.output());
    writer.send(b"q");
    assert_eq!(writer.wait_exit(), 7, "{}", writer.output());

    // The turn is finalized like any other, and its recording replays its output.
    let out = env.run(&["session", "wait", &id, "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let dir = env.sessions_dir.join(&id);
    let result = toml_of(&dir.join("result.toml"));
    assert_eq!(result["exit_code"].as_integer(), Some(7), "{result:?}");
    // The summary quotes what the agent drew as text, and `result` prints no escape sequence.
    let summary = result["summary"].as_str().expect("summary");
    assert!(
        summary.contains("exited with code 7") && !summary.contains('\x1b'),
        "{summary:?}"
    );
    let shown = env.run(&["session", "result", &id]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("exited with code 7") && !shown.chars().any(|c| c.is_control() && c != '\n'),
        "{shown:?}"
    );
    let cast = csa_terminal::asciicast::parse(
        &fs_err::read_to_string(dir.join("output.cast")).expect("cast"),
    )
    .expect("asciicast v2 parses");
    assert_eq!(
        cast.output(),
        fs_err::read_to_string(dir.join("output.log")).expect("log"),
        "the recording's events reproduce the output"
    );
    assert!(
        cast.resizes().iter().any(|r| (r.cols, r.rows) == (100, 30)),
        "{:?}",
        cast.resizes()
    );
    // logs shows the text without escape sequences; --raw, the bytes as recorded.
    let text = env.run(&["session", "logs", &id]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    // (curses redraws only what changed, so the text comes in drawing order, not as lines.)
    assert!(
        text.contains("SIZE 100x30") && text.contains("KEYS:") && !text.contains('\x1b'),
        "{text:?}"
    );
    let raw = env.run(&["session", "logs", &id, "--raw"]);
    assert_eq!(
        raw.stdout,
        fs_err::read(dir.join("output.log")).expect("log")
    );
}

#[test]
fn vim_and_less_run_under_csa_like_on_a_terminal() {
    for (program, args, quit) in [
        (
            "vim",
            vec!["-u", "NONE", "-N", "notes.txt"],
            &b"ihello from vim\x1b:wq\r"[..],
        ),
        ("less", vec!["notes.txt"], &b"q"[..]),
    ] {
        if !have(program, "vim_and_less_run_under_csa_like_on_a_terminal") {
            continue;
        }
        let env = TestEnv::new();
        fs_err::write(env.project.join("notes.txt"), "line one\n").expect("write");
        let mut argv = vec!["run", "--", program];
        argv.extend(args.iter().copied());
        let mut term = csa_on_terminal(&env, 80, 24, &argv);
        term.wait_text("line one");
        term.send(quit);
        assert_eq!(term.wait_exit(), 0, "{program}: {}", term.output());
        if program == "vim" {
            let text = fs_err::read_to_string(env.project.join("notes.txt")).expect("read");
            assert!(text.contains("hello from vim"), "{text}");
        }
    }
}

/// The supervisor of an interactive session killed with SIGKILL: the agent loses its terminal
/// (SIGHUP) as in a closed terminal window, and the session is reconciled like any other.
#[test]
fn a_killed_interactive_supervisor_is_reconciled_like_any_other() {
    let env = TestEnv::new();
    let out = env.run(&[
        "run",
        "--detach",
        "--tty",
        "--",
        "sh",
        "-c",
        "echo started; sleep 300",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let supervisor = recorded(&env, &id, "supervisor");
    let agent = recorded(&env, &id, "agent");
    eventually("the agent has written", || {
        fs_err::read_to_string(env.sessions_dir.join(&id).join("output.log"))
            .is_ok_and(|t| t.contains("started"))
    });
    sigkill(supervisor);
    eventually("the agent got SIGHUP with its terminal", || {
        !csa_process::probe(agent).is_running()
    });
    for pid in crate::membership::marked(&id) {
        sigkill(pid);
    }
    backdate_tree(&env.sessions_dir.join(&id), 120);
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        crate::harness::actions(&json),
        [(id.clone(), "synthesized_failure".to_owned())]
    );
    let attach = env.run(&["session", "attach", &id]);
    assert_ne!(attach.status.code(), Some(0), "{attach:?}");
}

/// An interactive session is killed like any other: every process of it, one end state.
#[test]
fn an_interactive_session_is_killed_like_any_other() {
    let env = TestEnv::new();
    let out = env.run(&[
        "run",
        "--detach",
        "--tty",
        "--",
        "sh",
        "-c",
        "sleep 300 & echo started; wait",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let agent = recorded(&env, &id, "agent");
    eventually("the agent has written", || {
        fs_err::read_to_string(env.sessions_dir.join(&id).join("output.log"))
            .is_ok_and(|t| t.contains("started"))
    });
    let kill = env.run(&["session", "kill", &id, "--grace", "2s"]);
    assert_eq!(kill.status.code(), Some(0), "{kill:?}");
    assert!(!csa_process::probe(agent).is_running());
    assert!(
        crate::membership::marked(&id).is_empty(),
        "every process stopped"
    );
    let state = toml_of(&env.sessions_dir.join(&id).join("state.toml"));
    assert_eq!(state["phase"].as_str(), Some("retired"));
    assert_eq!(state["termination_reason"].as_str(), Some("killed"));
    let result = toml_of(&env.sessions_dir.join(&id).join("result.toml"));
    assert_eq!(result["status"].as_str(), Some("signal"), "{result:?}");
}

/// `csa session resume` on a terminal gives the new turn a pseudo-terminal of the terminal's
/// size, as `csa run` does: a full-screen agent resumed in a terminal runs, takes keys, and its
/// turn is finalized; `--no-tty` keeps pipes (the program then refuses to run).
#[test]
fn resuming_on_a_terminal_gives_the_new_turn_a_terminal() {
    if !have_curses("resuming_on_a_terminal_gives_the_new_turn_a_terminal") {
        return;
    }
    let env = TestEnv::new();
    let program = curses_program(&env.project);
    let program = program.to_str().expect("utf-8");
    let mut first = csa_on_terminal(&env, 80, 24, &["run", "--", "python3", program]);
    first.wait_text("SIZE 80x24");
    first.send(b"q");
    assert_eq!(first.wait_exit(), 7, "{}", first.output());
    let id = only_session(&env);

    // Resumed in a terminal of another size: the agent gets a terminal of that size.
    let mut second = csa_on_terminal(&env, 90, 20, &["session", "resume", &id]);
    second.wait_text("SIZE 90x20");
    second.send(b"x");
    second.wait_text("KEYS: x");
    second.send(b"q");
    assert_eq!(second.wait_exit(), 7, "{}", second.output());
    let dir = env.sessions_dir.join(&id);
    let state = toml_of(&dir.join("state.toml"));
    assert_eq!(state["phase"].as_str(), Some("available"), "{state:?}");
    let run = toml_of(&dir.join("run.toml"));
    assert_eq!(run["turns"].as_array().map(Vec::len), Some(2), "{run:?}");
    let result = toml_of(&dir.join("result.toml"));
    assert_eq!(result["exit_code"].as_integer(), Some(7), "{result:?}");

    // --no-tty: pipes, so the program refuses to run (exit 2), as it would under a pipe.
    let mut third = csa_on_terminal(&env, 90, 20, &["session", "resume", "--no-tty", &id]);
    assert_eq!(third.wait_exit(), 2, "{}", third.output());
    third.wait_text("refusing to run without a terminal");
}
