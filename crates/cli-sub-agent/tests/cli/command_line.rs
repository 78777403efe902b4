//! How csa reads its command line (issue 12): `csa run COMMAND…` without `--`.

use crate::harness::TestEnv;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Regression: `csa run echo hi` failed with "unexpected argument 'echo' found" (exit 2): the
/// command had to follow `--`, unlike `timeout`, `nice` or `nohup`.
#[test]
fn run_takes_the_command_without_a_double_dash() {
    let env = TestEnv::new();
    let out = env.run(&["run", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "hi\n");

    // Everything from the command on is the command's, options included.
    let out = env.run(&["run", "sh", "-c", "echo -v"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "-v\n");
    let out = env.run(&["run", "echo", "--detach", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "--detach -q\n", "not taken as csa's options");

    // `--` keeps working, and options before the command stay csa's.
    let out = env.run(&["run", "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "hi\n");
    let out = env.run(&["run", "--detach", "--format", "json", "echo", "detached"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("launch answer");
    let id = json["session_id"].as_str().expect("detached: session id");
    let wait = env.run(&["session", "wait", id]);
    assert_eq!(wait.status.code(), Some(0), "{wait:?}");
    let logs = env.run(&["session", "logs", id]);
    assert_eq!(stdout(&logs), "detached\n");

    // A misspelt option before the command is still a usage error, with clap's suggestion.
    let out = env.run(&["run", "--detatch", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--detach"),
        "{out:?}"
    );

    // `session resume SESSION COMMAND…` likewise.
    let resume = env.run(&["session", "resume", id, "sh", "-c", "echo -n again"]);
    assert_eq!(resume.status.code(), Some(0), "{resume:?}");
    assert_eq!(stdout(&resume), "again");
}
