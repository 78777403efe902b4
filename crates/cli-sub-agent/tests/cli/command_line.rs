//! How csa reads its command line (issue 12): `csa run COMMAND…` without `--`.

use std::process::{Command, Output};

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

/// `csa ARGS…` with a cleared environment (plus `vars`), in `cwd`, without the harness's
/// `--state-dir`.
fn bare(cwd: &std::path::Path, args: &[&str], vars: &[(&str, &std::path::Path)]) -> Output {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("csa"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(cwd)
        .args(args)
        .stdin(std::process::Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run csa")
}

/// Regression: `csa --state-dir /tmp/nope session list` printed an empty table, `reconcile`
/// reported 0 and `doctor` "no problems", all exit 0, so a typo in `CSA_STATE_DIR` made every
/// hook pass. An explicit state directory that does not exist is now exit 3, naming it, for
/// every command but `run` (which creates it); the default root missing stays exit 0.
#[test]
fn a_mistyped_state_dir_is_an_error_not_an_empty_listing() {
    let env = TestEnv::new();
    let nope = env.project.join("nope");
    let nope_arg = nope.to_str().expect("utf8 path");
    let id = "01M90XTCEET4PBPD2FJ7MV21JP";
    let commands: &[&[&str]] = &[
        &["session", "list"],
        &["session", "list", "--running", "--check"],
        &["session", "reconcile"],
        &["session", "reconcile", "--all-projects"],
        &["session", "result", id],
        &["session", "is-alive", id],
        &["session", "wait", id],
        &["session", "logs", id],
        &["session", "kill", id],
        &["session", "resume", id],
        &["session", "delete", id],
        &["session", "clean", "--older-than", "1d"],
        &["doctor"],
        &["debug", "check"],
    ];
    for args in commands {
        // From the command line, and from the environment.
        let mut with_flag = vec!["--state-dir", nope_arg];
        with_flag.extend_from_slice(args);
        for (out, source) in [
            (bare(&env.project, &with_flag, &[]), "--state-dir"),
            (
                bare(&env.project, args, &[("CSA_STATE_DIR", &nope)]),
                "CSA_STATE_DIR",
            ),
        ] {
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{args:?} ({source}): {out:?}");
            let named = format!("the state directory {nope_arg} ({source}) does not exist");
            if args[0] == "doctor" {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains(&named), "{args:?}: {text}");
            } else {
                assert!(err.contains(&format!("error: {named}")), "{args:?}: {err}");
                assert!(err.contains("hint: correct"), "{args:?}: {err}");
            }
            assert!(!nope.exists(), "{args:?} created it");
        }
    }

    // `csa run` creates it.
    let out = bare(&env.project, &["--state-dir", nope_arg, "run", "true"], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(nope.is_dir());
    let out = bare(
        &env.project,
        &["session", "list"],
        &[("CSA_STATE_DIR", &nope)],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The default root missing on a fresh machine: nothing to do, exit 0.
    let home = env.project.join("fresh-home");
    fs_err::create_dir(&home).expect("mkdir");
    for args in [
        &["session", "list"][..],
        &["session", "list", "--running", "--check"],
        &["session", "reconcile", "--all-projects"],
        &["doctor"],
    ] {
        let out = bare(&env.project, args, &[("HOME", &home)]);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    assert!(!home.join(".local").exists(), "nothing created");
}
