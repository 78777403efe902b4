//! `-q`, `-v`, `-vv` and `RUST_LOG` on the real binary (issue 12).

use std::process::Output;

use crate::harness::{Agent, TestEnv};

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Regression: `csa -q run …` still printed the `csa: session …` banner, and warnings were
/// printed under `-q`. `-q` keeps errors and the data asked for, nothing else.
#[test]
fn quiet_prints_only_errors_and_data() {
    let env = TestEnv::new();
    let o = env.run(&["-q", "run", "echo", "hi"]);
    assert_eq!(
        (o.status.code(), out(&o), err(&o)),
        (Some(0), "hi\n".into(), String::new())
    );
    let o = env.run(&["run", "echo", "hi"]);
    assert!(err(&o).starts_with("csa: session "), "without -q: {o:?}");
    let id = err(&o)
        .trim()
        .trim_start_matches("csa: session ")
        .to_owned();
    let o = env.run(&["-q", "session", "resume", &id, "echo", "again"]);
    assert_eq!((out(&o), err(&o)), ("again\n".into(), String::new()));

    // A warning (an unparsable daemon.pid) is printed without -q, not with it.
    let s = env.session();
    s.write("daemon.pid", "not a pid\n");
    s.backdate();
    let o = env.run(&["session", "reconcile", "--dry-run"]);
    assert!(err(&o).contains("warning: "), "{o:?}");
    let o = env.run(&["-q", "session", "reconcile", "--dry-run"]);
    assert_eq!(err(&o), "", "{o:?}");
    assert!(
        out(&o).contains("would be synthesized"),
        "the data stays: {o:?}"
    );
    // Errors stay.
    let o = env.run(&["-q", "session", "result", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"]);
    assert!(err(&o).starts_with("error: "), "{o:?}");
}

/// Regression: `-v`, `-vv` and `RUST_LOG=trace` printed nothing for `run`, `list` or
/// `reconcile`. `-v` (or `RUST_LOG=info`) shows each decision: per session, what liveness
/// found; `-vv` (or `RUST_LOG=debug`) also each file written and lock taken.
#[test]
fn verbose_shows_each_decision_and_very_verbose_the_file_operations() {
    let env = TestEnv::new();
    let agent = Agent::spawn();
    let live = env.session();
    live.daemon_pid(agent.pid(), agent.ticks());
    let mut gone = Agent::spawn();
    let dead = env.session();
    dead.daemon_pid(gone.pid(), gone.ticks());
    gone.kill9();

    let alive_line = format!(
        "session {}: active: alive: daemon.pid: pid {}",
        live.id,
        agent.pid()
    );
    let dead_line = format!("session {}: active: dead: ", dead.id);
    for (flags, vars) in [(&["-v"][..], &[][..]), (&[], &[("RUST_LOG", "info")])] {
        let mut args = flags.to_vec();
        args.extend(["session", "list"]);
        let mut cmd = env.csa(&args);
        cmd.envs(vars.iter().copied());
        let o = cmd.output().expect("csa");
        assert!(
            err(&o).contains(&alive_line),
            "{flags:?} {vars:?}: {}",
            err(&o)
        );
        assert!(
            err(&o).contains(&dead_line),
            "{flags:?} {vars:?}: {}",
            err(&o)
        );
    }
    let o = env.run(&["session", "list"]);
    assert_eq!(err(&o), "", "silent by default: {o:?}");

    // reconcile -v: the lock-free check and the re-check under the lock.
    let o = env.run(&["-v", "session", "reconcile", "--dry-run"]);
    assert!(
        err(&o).contains(&format!(
            "session {}: checked without the lock: dead (",
            dead.id
        )),
        "{}",
        err(&o)
    );
    assert!(!err(&o).contains("DEBUG"), "-v is not -vv: {}", err(&o));
    // reconcile -vv: the decision under the lock, the lock, and the files written.
    let o = env.run(&["-vv", "session", "reconcile"]);
    let e = err(&o);
    assert!(out(&o).contains("synthesized_failure"), "{o:?}");
    assert!(
        e.contains(&format!(
            "session {}: re-checked under .reconcile.lock: dead (",
            dead.id
        )),
        "{e}"
    );
    assert!(
        e.contains("locked (flock, exclusive)") && e.contains("unlocked"),
        "{e}"
    );
    assert!(e.contains(&format!("{}/result.toml", dead.id)), "{e}");
    assert_eq!(dead.phase(), "retired");
    // RUST_LOG=trace: the same events.
    let mut cmd = env.csa(&["session", "reconcile", "--full"]);
    cmd.env("RUST_LOG", "trace");
    let e = err(&cmd.output().expect("csa"));
    assert!(
        e.contains(&format!(
            "session {}: checked without the lock: alive",
            live.id
        )),
        "{e}"
    );
    assert!(e.contains("DEBUG") && e.contains(".csa-active"), "{e}");

    // run -vv: the session's files as they are written.
    let o = env.run(&["-vv", "run", "true"]);
    let e = err(&o);
    assert!(
        e.contains("wrote") && e.contains("state.toml") && e.contains("result.toml"),
        "{e}"
    );
    let o = env.run(&["run", "true"]);
    assert!(!err(&o).contains("wrote"), "{o:?}");
}
