//! `csa run` with real processes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use crate::harness::TestEnv;

fn project_sessions(env: &TestEnv) -> Vec<String> {
    let mut ids: Vec<String> = fs_err::read_dir(&env.sessions_dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n.len() == 26)
        .collect();
    ids.sort();
    ids
}

fn state(env: &TestEnv, id: &str) -> toml::Table {
    let text = fs_err::read_to_string(env.sessions_dir.join(id).join("state.toml")).expect("state");
    toml::from_str(&text).expect("toml")
}

fn result(env: &TestEnv, id: &str) -> toml::Table {
    let text =
        fs_err::read_to_string(env.sessions_dir.join(id).join("result.toml")).expect("result");
    toml::from_str(&text).expect("toml")
}

fn session_id_from_stderr(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .find_map(|l| l.strip_prefix("csa: session "))
        .unwrap_or_else(|| panic!("no session line in {text:?}"))
        .to_owned()
}

#[test]
fn foreground_exit_codes_and_files() {
    let env = TestEnv::new();
    for (script, code, status) in [
        ("exit 0", 0, "success"),
        ("echo out; echo err >&2; exit 3", 3, "failure"),
    ] {
        let out = env.run(&["run", "--", "sh", "-c", script]);
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        let id = session_id_from_stderr(&out.stderr);
        let st = state(&env, &id);
        assert_eq!(st["phase"].as_str(), Some("available"));
        assert_eq!(st["turn_count"].as_integer(), Some(1));
        assert_eq!(
            st["tools"]["sh"]["last_exit_code"].as_integer(),
            Some(code.into())
        );
        let r = result(&env, &id);
        assert_eq!(r["status"].as_str(), Some(status));
        assert_eq!(r["exit_code"].as_integer(), Some(code.into()));
        assert_eq!(r["tool"].as_str(), Some("sh"));
        if code == 3 {
            assert_eq!(out.stdout, b"out\n", "streamed to the terminal");
            let dir = env.sessions_dir.join(&id);
            assert_eq!(
                fs_err::read_to_string(dir.join("output.log")).expect("log"),
                "out\n"
            );
            assert_eq!(
                fs_err::read_to_string(dir.join("stderr.log")).expect("log"),
                "err\n"
            );
            assert!(r["summary"]
                .as_str()
                .expect("summary")
                .contains("exited with code 3"));
        }
    }
}

#[test]
fn sigterm_to_csa_reaches_the_agent_and_csa_exits_143() {
    let env = TestEnv::new();
    let mut child = env
        .csa(&["run", "--", "sh", "-c", "echo ready; exec sleep 1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Synchronise on the agent's own output: it runs, so csa forwards signals now.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "ready\n");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(143));
    let id = session_id_from_stderr(&out.stderr);
    let r = result(&env, &id);
    assert_eq!(r["status"].as_str(), Some("signal"));
    assert_eq!(r["exit_code"].as_integer(), Some(143));
}

#[test]
fn output_streams_live_before_the_agent_ends() {
    let env = TestEnv::new();
    let mut child = env
        .csa(&["run", "--", "sh", "-c", "echo one; read x; echo \"got $x\""])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    // The agent is blocked reading stdin: "one" must already have reached us.
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "one\n");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"two\n")
        .expect("write");
    line.clear();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "got two\n");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}

#[test]
fn agent_gets_the_session_environment_and_children_record_their_parent() {
    let env = TestEnv::new();
    let script = "echo \"$CSA_SESSION_ID|$CSA_DEPTH|${CSA_PARENT_SESSION-unset}|$CSA_PROJECT_ROOT|$CSA_SESSION_DIR\"";
    let out = env.run(&["run", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(0));
    let id = session_id_from_stderr(&out.stderr);
    let project = fs_err::canonicalize(&env.project).expect("canonical");
    let expected = format!(
        "{id}|0|unset|{}|{}\n",
        project.display(),
        env.sessions_dir.join(&id).display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    // A run started from inside that session is its child, one level deeper.
    let out = env
        .csa(&[
            "run",
            "--allow-concurrent",
            "--",
            "sh",
            "-c",
            "echo $CSA_DEPTH $CSA_PARENT_SESSION",
        ])
        .env("CSA_SESSION_ID", &id)
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("1 {id}\n"));
    let child = session_id_from_stderr(&out.stderr);
    let st = state(&env, &child);
    assert_eq!(st["genealogy"]["depth"].as_integer(), Some(1));
    assert_eq!(
        st["genealogy"]["parent_session_id"].as_str(),
        Some(id.as_str())
    );
}

#[test]
fn launch_failure_retires_the_session_and_frees_the_directory() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let id = session_id_from_stderr(&out.stderr);
    let st = state(&env, &id);
    assert_eq!(st["phase"].as_str(), Some("retired"));
    assert_eq!(st["termination_reason"].as_str(), Some("spawn_failed"));
    let r = result(&env, &id);
    assert_eq!(r["status"].as_str(), Some("error"));
    assert_eq!(r["exit_code"].as_integer(), Some(127));
    assert!(r["summary"]
        .as_str()
        .expect("summary")
        .contains("/nonexistent"));
    // The next run starts at once.
    let out = env.run(&["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    // Not executable: 126.
    let script = env.project.join("script.sh");
    fs_err::write(&script, "#!/bin/sh\n").expect("write");
    let out = env.run(&["run", "--", "./script.sh"]);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
}

/// A barrier for processes: the test holds an exclusive flock on a file; each wrapper blocks
/// taking a shared one, and the test releases it only once the kernel lists all of them as
/// waiting (in /proc/locks), so they all proceed at once.
struct Barrier {
    path: std::path::PathBuf,
    held: Option<nix::fcntl::Flock<std::fs::File>>,
    ino: u64,
}

impl Barrier {
    fn new(dir: &std::path::Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let path = dir.join("barrier");
        let file = fs_err::File::create(&path).expect("create").into_parts().0;
        let ino = file.metadata().expect("stat").ino();
        let held =
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).expect("lock");
        Barrier {
            path,
            held: Some(held),
            ino,
        }
    }

    fn waiters(&self) -> usize {
        let locks = fs_err::read_to_string("/proc/locks").expect("locks");
        let suffix = format!(":{}", self.ino);
        locks
            .lines()
            .filter(|l| l.contains(" -> "))
            .filter(|l| l.split_whitespace().any(|f| f.ends_with(&suffix)))
            .count()
    }

    fn release_when(&mut self, n: usize) {
        while self.waiters() < n {
            std::thread::yield_now();
        }
        self.held = None;
    }
}

#[test]
fn eight_runs_released_together_one_runs_seven_exit_75_naming_it() {
    let env = TestEnv::new();
    let csa = assert_cmd::cargo::cargo_bin!("csa");
    for rep in 0..50 {
        let mut barrier = Barrier::new(&env.project.join(".."));
        let before = project_sessions(&env);
        let children: Vec<Child> = (0..8)
            .map(|_| {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg("flock -s \"$0\" true; exec \"$@\"")
                    .arg(&barrier.path)
                    .arg(csa)
                    .arg("--state-dir")
                    .arg(&env.state_root)
                    .args(["run", "--", "sh", "-c", "read x"])
                    .current_dir(&env.project)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                cmd.spawn().expect("spawn")
            })
            .collect();
        barrier.release_when(8);
        // Losers exit on their own; the winner's agent waits for its stdin to close.
        let (losers, mut winner) = crate::harness::split_losers(children);
        drop(winner.stdin.take());
        let winner = winner.wait_with_output().expect("winner");
        assert_eq!(
            winner.status.code(),
            Some(1),
            "rep {rep}: the winner's agent saw EOF"
        );
        let winner_id = session_id_from_stderr(&winner.stderr);
        for loser in &losers {
            assert_eq!(loser.status.code(), Some(75), "rep {rep}: {loser:?}");
            let stderr = String::from_utf8_lossy(&loser.stderr);
            assert!(
                stderr.contains(&format!("is busy: session {winner_id}")),
                "rep {rep}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("session wait {winner_id}")),
                "{stderr}"
            );
        }
        let after = project_sessions(&env);
        assert_eq!(
            after.len(),
            before.len() + 1,
            "rep {rep}: losers created no session"
        );
    }
}

#[test]
fn detach_returns_the_id_and_the_supervisor_finalizes() {
    let env = TestEnv::new();
    let out = env.run(&[
        "run", "--detach", "--format", "json", "--", "sh", "-c", "read x",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = json["session_id"].as_str().expect("id").to_owned();
    assert!(env.sessions_dir.join(&id).join("state.toml").exists());
    // The detached agent's stdin is /dev/null: `read` ends at once and the supervisor
    // finalizes; wait for it through the real command, which returns only once the turn has
    // ended (result published and phase moved), not merely when the result appears.
    let out = env.run(&["session", "wait", &id, "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(result(&env, &id)["exit_code"].as_integer(), Some(1));
    assert_eq!(state(&env, &id)["phase"].as_str(), Some("available"));
}

#[test]
fn supervisor_killed_agent_lives_on_session_alive_and_directory_still_claimed() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--detach", "--", "sleep", "1000"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let dir = env.sessions_dir.join(&id);
    let daemon = fs_err::read_to_string(dir.join("daemon.pid")).expect("daemon.pid");
    let supervisor: i32 = daemon
        .split_whitespace()
        .next()
        .expect("pid")
        .parse()
        .expect("int");
    let body: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(dir.join("locks/sleep.lock")).expect("lock"))
            .expect("json");
    let agent = i32::try_from(body["pid"].as_u64().expect("agent pid")).expect("pid");
    assert_ne!(agent, supervisor);
    use nix::sys::signal::{kill, Signal::SIGKILL};
    use nix::unistd::Pid;
    kill(Pid::from_raw(supervisor), SIGKILL).expect("kill supervisor");
    while csa_process::probe(u32::try_from(supervisor).expect("pid")).is_running() {
        std::thread::yield_now();
    }
    // The agent still holds the session's tool lock and the directory claim.
    let out = env.run(&["session", "is-alive", &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = env.run(&["run", "--", "true"]);
    assert_eq!(
        out.status.code(),
        Some(75),
        "documented: the claim survives with the agent"
    );
    // Once the agent dies, the session is dead and the directory free.
    kill(Pid::from_raw(agent), SIGKILL).expect("kill agent");
    while csa_process::probe(u32::try_from(agent).expect("pid")).is_running() {
        std::thread::yield_now();
    }
    let out = env.run(&["session", "is-alive", &id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(
        crate::harness::actions(&json),
        [(id.clone(), "synthesized_failure".to_owned())]
    );
    assert_eq!(env.run(&["run", "--", "true"]).status.code(), Some(0));
}

#[test]
fn wait_for_dir_gives_up_after_its_duration_with_75() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--detach", "--", "sleep", "1000"]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = env.run(&["run", "--wait-for-dir=1s", "--", "true"]);
    assert_eq!(out.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("csa: waiting for").count(),
        1,
        "says once that it waits: {stderr}"
    );
    // Clean up: kill the agent's whole session (its pid is in the lock body).
    let body: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(env.sessions_dir.join(&id).join("locks/sleep.lock")).expect("lock"),
    )
    .expect("json");
    let agent = i32::try_from(body["pid"].as_u64().expect("pid")).expect("pid");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// The agent's pid, from its session's lock body.
fn agent_pid(env: &TestEnv, id: &str, tool: &str) -> i32 {
    let body: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(env.sessions_dir.join(id).join(format!("locks/{tool}.lock")))
            .expect("lock"),
    )
    .expect("json");
    i32::try_from(body["pid"].as_u64().expect("pid")).expect("pid")
}

#[test]
fn wait_whose_owner_is_killed_returns_5_with_a_synthetic_result() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--detach", "--", "sleep", "1000"]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let daemon =
        fs_err::read_to_string(env.sessions_dir.join(&id).join("daemon.pid")).expect("pid");
    let supervisor: i32 = daemon
        .split_whitespace()
        .next()
        .expect("pid")
        .parse()
        .expect("int");
    let agent = agent_pid(&env, &id, "sleep");
    let waiter = env
        .csa(&["session", "wait", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wait");
    use nix::sys::signal::{kill, Signal::SIGKILL};
    use nix::unistd::Pid;
    kill(Pid::from_raw(supervisor), SIGKILL).expect("kill supervisor");
    kill(Pid::from_raw(agent), SIGKILL).expect("kill agent");
    let out = waiter.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = result(&env, &id);
    assert_eq!(r["status"].as_str(), Some("failure"));
    assert!(r["summary"]
        .as_str()
        .expect("summary")
        .starts_with("synthetic failure by session wait"));
    let st = state(&env, &id);
    assert_eq!(st["phase"].as_str(), Some("retired"));
    assert_eq!(st["termination_reason"].as_str(), Some("orphaned_process"));
}

#[test]
fn every_spelling_of_a_directory_is_the_same_claim() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--detach", "--", "sleep", "1000"]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let link = env.project.join("../link-to-project");
    std::os::unix::fs::symlink(&env.project, &link).expect("symlink");
    let spellings = [
        format!("{}/", env.project.display()),
        format!("{}/.", env.project.display()),
        link.display().to_string(),
        "../project".to_owned(),
    ];
    for cd in &spellings {
        let out = env.run(&["run", "--cd", cd, "--", "true"]);
        assert_eq!(out.status.code(), Some(75), "{cd}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&id), "{cd}");
    }
    let agent = agent_pid(&env, &id, "sleep");
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(agent),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Regression: a script's `csa session wait X && csa run …` sometimes exited 75, because `wait`
/// returns once the result is published and the supervisor releases the directory just after.
/// A run now waits (bounded) for a holder that is only finishing its turn. The fail point
/// widens that window to 300 ms so that the race is certain, not rare.
#[cfg(feature = "failpoints")]
#[test]
fn a_run_right_after_waiting_for_the_previous_turn_is_never_busy() {
    let env = TestEnv::new();
    let mut previous: Option<String> = None;
    for _ in 0..3 {
        if let Some(id) = &previous {
            let out = env.run(&["session", "wait", id, "--timeout", "30s"]);
            assert_eq!(out.status.code(), Some(0), "{out:?}");
        }
        let out = env
            .csa(&["run", "--detach", "--", "true"])
            .env("FAILPOINTS", "run::release_claim=sleep(300)")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        previous = Some(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
}

/// Regression (issue 11, case 8): `csa run --cd <a regular file>` created a session, failed to
/// spawn the agent there and exited 1; it is a usage error before anything is created.
#[test]
fn run_cd_a_regular_file_is_a_usage_error_before_any_session_exists() {
    let env = TestEnv::new();
    let file = env.project.join("notes.txt");
    fs_err::write(&file, "not a directory").expect("write");
    let before = env.tree_snapshot();
    let out = env.run(&["run", "--cd", &file.display().to_string(), "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--cd: {} is not a directory", file.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("csa: session"), "{stderr}");
    assert_eq!(env.tree_snapshot(), before, "nothing created");
}

/// Regression (issue 11, case 6): project keys were made with `to_string_lossy`, so the
/// directories `n\xff` and `n\xfe` both had the key `n\u{FFFD}`: `run --cd` in one reported
/// the other busy, and `resume` of the first retired it as `spawn_failed` forever. A project
/// directory whose path is not UTF-8 is now a usage error naming it, for every command.
#[test]
fn project_directories_whose_path_is_not_utf8_are_refused_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let base = env.project.parent().expect("temp dir").to_owned();
    let dirs: Vec<std::path::PathBuf> = [&b"n\xff"[..], b"n\xfe"]
        .into_iter()
        .map(|name| base.join(std::ffi::OsStr::from_bytes(name)))
        .collect();
    for dir in &dirs {
        fs_err::create_dir(dir).expect("mkdir");
    }
    let before = env.tree_snapshot();
    for dir in &dirs {
        // Printed with escapes, so the two are told apart.
        let shown = format!("{:?}", dir.as_os_str());
        for args in [
            &["run", "--cd"][..],
            &["session", "list", "--cd"],
            &["session", "reconcile", "--cd"],
        ] {
            let mut cmd = env.csa(args);
            cmd.arg(dir);
            if args[0] == "run" {
                cmd.args(["--", "true"]);
            }
            let out = cmd.output().expect("run csa");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {shown}: {stderr}");
            assert!(
                stderr.contains(&shown) && stderr.contains("not valid UTF-8"),
                "{args:?}: names {shown}: {stderr}"
            );
        }
    }
    assert_eq!(env.tree_snapshot(), before, "nothing created");
}
