//! `csa session reconcile` on real processes.

use std::process::Command;

use crate::harness::{actions, Agent, TestEnv};

#[test]
fn agent_killed_with_sigkill_is_reconciled_exactly_once() {
    let env = TestEnv::new();
    let mut agent = Agent::spawn();
    let s = env.session();
    s.daemon_pid(agent.pid(), agent.ticks());

    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(actions(&json), [(s.id.clone(), "skipped_alive".to_owned())]);
    assert_eq!(s.phase(), "active");
    assert!(s.result().is_none());

    agent.kill9();
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        actions(&json),
        [(s.id.clone(), "synthesized_failure".to_owned())]
    );
    assert_eq!(json["counts"]["synthesized"], 1);
    let result = s.result().expect("synthetic result");
    assert_eq!(result["status"].as_str(), Some("failure"));
    assert_eq!(result["exit_code"].as_integer(), Some(1));
    assert_eq!(result["tool"].as_str(), Some("codex"));
    let summary = result["summary"].as_str().expect("summary");
    assert!(
        summary.starts_with(
            "synthetic failure by session reconcile: process dead, result.toml missing"
        ),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("pid {} is not running", agent.pid())),
        "{summary}"
    );
    let state = s.state();
    assert_eq!(state["phase"].as_str(), Some("retired"));
    assert_eq!(
        state["termination_reason"].as_str(),
        Some("orphaned_process")
    );
    // The time of last use is the end of the turn: the synthetic result's completed_at.
    let time = |v: &toml::Value| {
        v.as_str()
            .expect("a time")
            .parse::<chrono::DateTime<chrono::Utc>>()
            .expect("RFC 3339")
    };
    assert_eq!(
        time(&state["last_accessed"]),
        time(&result["completed_at"]),
        "last_accessed is the end of the turn"
    );
    let result_bytes = s.read("result.toml");

    // Exactly once: later runs (incremental and full) leave it alone.
    for args in [&[][..], &["--full"][..]] {
        let (code, json) = env.reconcile_json(args);
        assert_eq!(code, 0);
        assert!(actions(&json).is_empty(), "{json}");
        assert_eq!(s.read("result.toml"), result_bytes);
    }
    let marker =
        fs_err::read_to_string(env.sessions_dir.join("cooldown-marker.toml")).expect("marker");
    assert!(marker.contains(&s.id), "{marker}");
}

#[test]
fn live_agent_is_never_reconciled() {
    let env = TestEnv::new();
    let agent = Agent::spawn();
    let s = env.session();
    s.daemon_pid(agent.pid(), agent.ticks());
    let state_before = s.read("state.toml");
    for args in [
        &[][..],
        &["--full"][..],
        &[&s.id[..8]][..],
        &["--all-projects"][..],
    ] {
        let (code, json) = env.reconcile_json(args);
        assert_eq!(code, 0, "{json}");
        assert_eq!(
            actions(&json),
            [(s.id.clone(), "skipped_alive".to_owned())],
            "{args:?}"
        );
    }
    let out = env.run(&["session", "reconcile", "--check"]);
    assert_eq!(out.status.code(), Some(0), "nothing to do");
    assert_eq!(s.read("state.toml"), state_before);
    assert!(s.result().is_none());
}

#[test]
fn unreaped_zombie_agent_counts_as_dead() {
    let env = TestEnv::new();
    // A child that exits at once and is not reaped stays a zombie while we hold it.
    let mut zombie = Command::new("true").spawn().expect("spawn");
    let pid = zombie.id();
    let ticks = loop {
        // Read the ticks before it exits or after: the zombie keeps its stat.
        // Upstream's ticks, read from /proc whatever backend csa uses.
        if let Ok(stat) = csa_process::platform::stat(pid) {
            break stat.start_ticks;
        }
    };
    while !matches!(
        csa_process::probe(pid),
        csa_process::Probe::Exited { zombie: true }
    ) {
        std::thread::yield_now();
    }
    let s = env.session();
    s.daemon_pid(pid, ticks);
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(
        actions(&json),
        [(s.id.clone(), "synthesized_failure".to_owned())]
    );
    zombie.wait().expect("reap");
}

#[test]
fn daemon_pid_reused_by_an_unrelated_live_process_is_reconciled() {
    let env = TestEnv::new();
    let unrelated = Agent::spawn();
    let s = env.session();
    // The recorded start ticks differ from the live process's: the PID was reused.
    s.daemon_pid(unrelated.pid(), unrelated.reused_ticks());
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(
        actions(&json),
        [(s.id.clone(), "synthesized_failure".to_owned())]
    );
    let reason = json["sessions"][0]["reason"].as_str().expect("reason");
    assert!(reason.contains("reused"), "{reason}");
    assert!(
        unrelated.child.id() > 0 && csa_process::probe(unrelated.pid()).is_running(),
        "not signalled"
    );
}

#[test]
fn lock_with_unrelated_live_pid_is_reconciled_when_older_than_60s_but_not_when_fresh() {
    let env = TestEnv::new();
    let unrelated = Agent::spawn();
    let old = env.session();
    old.write(
        "locks/codex.lock",
        format!("{{\"pid\": {}, \"tool_name\": \"codex\"}}", unrelated.pid()),
    );
    old.backdate();
    let fresh = env.session();
    fresh.write(
        "locks/codex.lock",
        format!("{{\"pid\": {}, \"tool_name\": \"codex\"}}", unrelated.pid()),
    );
    fresh.backdate();
    // Only the lock file is fresh (no progress file is).
    let now = filetime::FileTime::now();
    filetime::set_file_mtime(fresh.path("locks/codex.lock"), now).expect("touch");

    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0);
    let mut got = actions(&json);
    got.sort();
    let mut want = vec![
        (old.id.clone(), "synthesized_failure".to_owned()),
        (fresh.id.clone(), "skipped_alive".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want, "{json}");
}

#[test]
fn held_flock_on_a_lock_file_is_alive_whatever_its_body_says() {
    use nix::fcntl::{Flock, FlockArg};
    let env = TestEnv::new();
    let s = env.session();
    s.write("locks/codex.lock", "{not json");
    s.backdate();
    // This test process holds the flock; csa must see it from /proc/locks without taking it.
    let file = fs_err::File::open(s.path("locks/codex.lock"))
        .expect("open")
        .into_parts()
        .0;
    let held = Flock::lock(file, FlockArg::LockExclusiveNonblock).expect("flock");
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(
        actions(&json),
        [(s.id.clone(), "skipped_alive".to_owned())],
        "{json}"
    );
    assert!(json["sessions"][0]["reason"]
        .as_str()
        .expect("reason")
        .contains("flock"));
    drop(held);
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(
        actions(&json),
        [(s.id.clone(), "synthesized_failure".to_owned())],
        "{json}"
    );
    let warnings = json["warnings"].as_array().expect("warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("locks/codex.lock"))),
        "an unparsable lock body is warned about with its path: {json}"
    );
}

#[test]
fn fresh_output_log_blocks_reconcile() {
    let env = TestEnv::new();
    let s = env.session();
    s.write("output.log", "still working\n");
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(actions(&json), [(s.id.clone(), "skipped_alive".to_owned())]);
    assert!(json["sessions"][0]["reason"]
        .as_str()
        .expect("reason")
        .contains("output.log"));
    s.backdate();
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(
        actions(&json),
        [(s.id.clone(), "synthesized_failure".to_owned())]
    );
    let summary = s.result().expect("result")["summary"]
        .as_str()
        .expect("summary")
        .to_owned();
    assert!(
        summary.ends_with("last output:\nstill working"),
        "{summary}"
    );
}

#[test]
fn sixteen_concurrent_reconcilers_over_200_dead_sessions_finalize_each_exactly_once() {
    let env = TestEnv::new();
    let sessions: Vec<_> = (0..200).map(|_| env.session()).collect();
    let children: Vec<_> = (0..16)
        .map(|_| {
            env.csa(&["session", "reconcile", "--format", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn csa")
        })
        .collect();
    let mut synthesized = 0;
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["counts"]["errors"], 0, "{json}");
        synthesized += json["counts"]["synthesized"].as_u64().expect("count");
    }
    assert_eq!(
        synthesized, 200,
        "each session synthesized by exactly one process"
    );
    for s in &sessions {
        assert_eq!(s.phase(), "retired");
        assert_eq!(
            s.result().expect("result")["status"].as_str(),
            Some("failure")
        );
        let leftovers: Vec<_> = fs_err::read_dir(&s.dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn check_exits_1_when_work_is_found_and_writes_nothing() {
    let env = TestEnv::new();
    let s = env.session();
    let before = s.read("state.toml");
    let out = env.run(&["session", "reconcile", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{}  would_synthesize", s.id)),
        "{stdout}"
    );
    assert_eq!(s.read("state.toml"), before);
    assert!(s.result().is_none());
    assert!(
        !env.sessions_dir.join(".csa-active").exists(),
        "dry run writes nothing"
    );
    let (code, json) = env.reconcile_json(&["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(
        actions(&json),
        [(s.id.clone(), "would_synthesize".to_owned())]
    );
}

#[test]
fn nothing_to_do_prints_only_the_summary_line() {
    let env = TestEnv::new();
    let agent = Agent::spawn();
    let s = env.session();
    s.daemon_pid(agent.pid(), agent.ticks());
    let out = env.run(&["session", "reconcile"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("reconcile: 0 synthesized"), "{stdout}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn session_created_by_another_writer_after_the_record_was_built_is_found() {
    // Upstream keeps no active record: a new session directory must trigger a scan.
    let env = TestEnv::new();
    let first = env.session();
    crate::harness::backdate_tree(&env.sessions_dir, 120);
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(
        actions(&json),
        [(first.id.clone(), "synthesized_failure".to_owned())]
    );
    crate::harness::backdate_tree(&env.sessions_dir, 120);
    // A no-op run trusts the settled fingerprint.
    let (_, json) = env.reconcile_json(&[]);
    assert!(actions(&json).is_empty());
    let second = env.session();
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(
        actions(&json),
        [(second.id.clone(), "synthesized_failure".to_owned())]
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn state_write_failure_leaves_no_synthetic_result_and_state_byte_identical() {
    let env = TestEnv::new();
    let failing = env.session();
    let other = env.session();
    let before = failing.read("state.toml");
    let mut cmd = env.csa(&["session", "reconcile", "--format", "json", &failing.id]);
    cmd.env("FAILPOINTS", "reconcile::before_state_write=return");
    let out = cmd.output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "some sessions could not be processed"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(actions(&json), [(failing.id.clone(), "error".to_owned())]);
    let error = json["sessions"][0]["error"].as_str().expect("error");
    assert!(error.contains("injected fault"), "{error}");
    assert!(error.contains("rolled back"), "{error}");
    assert_eq!(failing.read("state.toml"), before, "byte-identical");
    assert!(failing.result().is_none(), "synthetic result rolled back");
    assert!(!env.sessions_dir.join("cooldown-marker.toml").exists());
    // The failure is reported per session; the others are still processed.
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(json["counts"]["synthesized"], 2);
    assert_eq!(other.phase(), "retired");
}

#[test]
fn state_write_failure_on_an_immutable_state_file_rolls_back() {
    // A real (not injected) failure: an immutable state.toml cannot be replaced, even by root.
    let env = TestEnv::new();
    let s = env.session();
    let before = s.read("state.toml");
    let chattr = Command::new("chattr")
        .arg("+i")
        .arg(s.path("state.toml"))
        .output();
    if !matches!(&chattr, Ok(o) if o.status.success()) {
        eprintln!("skipped: chattr +i is not available here ({chattr:?})");
        return;
    }
    let (code, json) = env.reconcile_json(&[]);
    let _ = Command::new("chattr")
        .arg("-i")
        .arg(s.path("state.toml"))
        .status();
    assert_eq!(code, 3, "{json}");
    assert_eq!(actions(&json), [(s.id.clone(), "error".to_owned())]);
    assert_eq!(s.read("state.toml"), before);
    assert!(s.result().is_none());
}

#[test]
fn rescan_after_a_new_session_reads_only_new_sessions_and_full_reads_all() {
    let env = TestEnv::new();
    let old = env.session();
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(
        actions(&json),
        [(old.id.clone(), "synthesized_failure".to_owned())]
    );
    // Make the next run rescan: its fingerprint is recorded only once settled.
    crate::harness::backdate_tree(&env.sessions_dir, 120);
    let (_, json) = env.reconcile_json(&[]);
    assert!(actions(&json).is_empty());
    // The ended session's state becomes unreadable; a rescan triggered by a new session must
    // not read it again (its cost follows new sessions), while --full reads everything.
    old.write("state.toml", "not toml [[[");
    let new = env.session();
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        actions(&json),
        [(new.id.clone(), "synthesized_failure".to_owned())]
    );
    let (code, json) = env.reconcile_json(&["--full"]);
    assert_eq!(code, 3, "{json}");
    assert_eq!(actions(&json), [(old.id.clone(), "error".to_owned())]);
}
