//! `csa session delete` and `csa session clean` on real processes. Races are arranged, not
//! waited for: the test holds a session's `.reconcile.lock` itself, and lays out the leftover a
//! crashed deletion leaves.

use std::process::Output;

use chrono::{SecondsFormat, Utc};
use nix::fcntl::{Flock, FlockArg};

use crate::harness::{Agent, Session, TestEnv};

/// The `last_accessed` the harness writes.
const HARNESS_LAST_ACCESSED: &str = "2026-11-21T06:33:50.574231058Z";

/// Rewrites `phase` and `last_accessed` (`hours_ago` hours before now) in state.toml.
fn set_state(s: &Session, phase: &str, hours_ago: i64) {
    let text = String::from_utf8(s.read("state.toml")).expect("utf8");
    let when = (Utc::now() - chrono::TimeDelta::hours(hours_ago))
        .to_rfc3339_opts(SecondsFormat::Nanos, true);
    let text = text
        .replace("phase = \"active\"\n", &format!("phase = \"{phase}\"\n"))
        .replace(HARNESS_LAST_ACCESSED, &when);
    s.write("state.toml", text);
    s.backdate();
}

/// An ended session (`phase`) last used `hours_ago` hours ago, with no process.
fn ended(env: &TestEnv, phase: &str, hours_ago: i64) -> Session {
    let s = env.session();
    set_state(&s, phase, hours_ago);
    s
}

/// A session whose owner (daemon.pid) is `agent`.
fn owned_by(env: &TestEnv, agent: &Agent) -> Session {
    let s = env.session();
    s.daemon_pid(agent.pid(), agent.ticks());
    s
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): stdout {:?} stderr {:?}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// The ids `csa session list --format json` shows.
fn listed(env: &TestEnv) -> Vec<String> {
    let out = env.run(&["session", "list", "--format", "json"]);
    json(&out)
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["session_id"].as_str().expect("id").to_owned())
        .collect()
}

/// The names in the project's `sessions/` other than csa's record.
fn entries(env: &TestEnv) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(&env.sessions_dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".csa-active")
        .collect();
    names.sort();
    names
}

/// (session_id, action) pairs of a clean JSON report.
fn clean_actions(json: &serde_json::Value) -> Vec<(String, String)> {
    json["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|r| {
            (
                r["session_id"].as_str().expect("id").to_owned(),
                r["action"].as_str().expect("action").to_owned(),
            )
        })
        .collect()
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

#[test]
fn delete_refuses_a_live_session_and_changes_nothing() {
    let env = TestEnv::new();
    let agent = Agent::spawn();
    let s = owned_by(&env, &agent);
    let before = env.tree_snapshot();
    for args in [&[][..], &["--force"][..]] {
        let mut full = vec!["session", "delete", &s.id];
        full.extend_from_slice(args);
        let out = env.run(&full);
        assert_eq!(code(&out), Some(75), "{args:?}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: session {} is active and its agent is alive (daemon.pid",
                s.id
            )),
            "{stderr}"
        );
        assert!(stderr.contains("\nhint: "), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(
        env.tree_snapshot(),
        before,
        "a refused delete writes nothing"
    );
}

#[test]
fn delete_of_an_active_dead_session_needs_force() {
    let env = TestEnv::new();
    let s = env.session();
    // The active-record entry csa run makes before a session becomes active.
    let record = env.sessions_dir.join(".csa-active");
    fs_err::create_dir(&record).expect("mkdir");
    fs_err::write(record.join(&s.id), "").expect("entry");
    let before = env.tree_snapshot();
    let out = env.run(&["session", "delete", &s.id]);
    assert_eq!(code(&out), Some(75), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("its agent is dead"), "{stderr}");
    assert!(
        stderr.contains(&format!("csa session delete --force {}", s.id)),
        "{stderr}"
    );
    assert_eq!(env.tree_snapshot(), before);

    let out = env.run(&[
        "session",
        "delete",
        &s.id[..12],
        "--force",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        json(&out),
        serde_json::json!({"session_id": s.id, "deleted": true})
    );
    assert!(!s.dir.exists());
    assert!(
        entries(&env).is_empty(),
        "nothing left: {:?}",
        entries(&env)
    );
    assert!(!record.join(&s.id).exists(), "active-record entry removed");
    assert!(listed(&env).is_empty());
}

#[test]
fn delete_of_an_ended_session_is_not_blocked_by_its_fresh_log() {
    let env = TestEnv::new();
    let s = ended(&env, "retired", 0);
    let other = env.session();
    // Written just now: progress for an Active session, nothing for an ended one.
    s.write("output.log", "the last words\n");
    let out = env.run(&["session", "delete", &s.id]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!("{}  deleted  retired, last accessed ", s.id)),
        "{}",
        text(&out.stdout)
    );
    assert!(!s.dir.exists());
    assert_eq!(entries(&env), [other.id.as_str()]);
    assert_eq!(listed(&env), [other.id]);
}

#[test]
fn delete_while_another_process_holds_the_lock_is_busy() {
    let env = TestEnv::new();
    let s = ended(&env, "available", 5);
    let file = fs_err::File::create(s.path(".reconcile.lock"))
        .expect("create lock")
        .into_parts()
        .0;
    let held = Flock::lock(file, FlockArg::LockExclusiveNonblock).expect("lock");
    let before = env.tree_snapshot();
    let out = env.run(&["session", "delete", &s.id]);
    assert_eq!(code(&out), Some(75), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is busy"), "{stderr}");
    assert_eq!(env.tree_snapshot(), before, "nothing changed");
    // clean skips it the same way, and that is not an error.
    let out = env.run(&["session", "clean", "--older-than", "1h", "--format", "json"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        clean_actions(&json(&out)),
        [(s.id.clone(), "skipped_busy".to_owned())]
    );
    assert_eq!(env.tree_snapshot(), before, "nothing changed");
    drop(held);
    let out = env.run(&["session", "delete", &s.id]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert!(!s.dir.exists());
}

#[test]
fn clean_removes_only_old_ended_sessions_without_a_live_process() {
    let env = TestEnv::new();
    let agent = Agent::spawn();
    let old_retired = ended(&env, "retired", 3);
    let old_available = ended(&env, "available", 48);
    let old_exhausted = ended(&env, "tool_exhausted", 3);
    let recent = ended(&env, "retired", 0);
    let active_dead = env.session();
    set_state(&active_dead, "active", 3);
    let active_live = owned_by(&env, &agent);
    set_state(&active_live, "active", 3);
    let ended_live = owned_by(&env, &agent);
    set_state(&ended_live, "retired", 3);
    let garbage = ended(&env, "retired", 3);
    garbage.write("state.toml", "phase = [[[ not toml");
    let args = ["session", "clean", "--older-than", "1h", "--format", "json"];

    let before = env.tree_snapshot();
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let out = env.run(&dry);
    assert_eq!(
        code(&out),
        Some(3),
        "an unreadable state.toml: {}",
        text(&out.stderr)
    );
    let report = json(&out);
    let expected = |done: &str| {
        sorted(vec![
            (old_retired.id.clone(), done.to_owned()),
            (old_available.id.clone(), done.to_owned()),
            (old_exhausted.id.clone(), done.to_owned()),
            (ended_live.id.clone(), "skipped_alive".to_owned()),
            (garbage.id.clone(), "error".to_owned()),
        ])
    };
    assert_eq!(sorted(clean_actions(&report)), expected("would_delete"));
    assert_eq!(report["counts"]["would_delete"], 3);
    assert_eq!(report["counts"]["kept"], 3);
    assert_eq!(env.tree_snapshot(), before, "--dry-run changes nothing");

    let out = env.run(&args);
    assert_eq!(code(&out), Some(3), "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!(sorted(clean_actions(&report)), expected("deleted"));
    let error = report["sessions"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["session_id"] == garbage.id.as_str())
        .expect("error row");
    assert!(
        error["reason"]
            .as_str()
            .expect("reason")
            .contains(&garbage.path("state.toml").display().to_string()),
        "names the file: {error}"
    );
    assert_eq!(
        report["counts"],
        serde_json::json!({"deleted": 3, "would_delete": 0, "skipped_alive": 1,
            "skipped_busy": 0, "errors": 1, "kept": 3, "leftovers_removed": 0})
    );
    let mut kept = vec![
        recent.id.clone(),
        active_dead.id.clone(),
        active_live.id.clone(),
        ended_live.id.clone(),
        garbage.id.clone(),
    ];
    kept.sort();
    assert_eq!(entries(&env), kept, "exactly these remain");
    assert_eq!(garbage.read("state.toml"), b"phase = [[[ not toml");
    assert_eq!(active_dead.phase(), "active", "clean never finalizes");

    // Text: one line per reported session, then the summary.
    let out = env.run(&["session", "clean", "--older-than", "1h"]);
    assert_eq!(code(&out), Some(3));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{}  skipped_alive  retired, but alive: daemon.pid",
            ended_live.id
        ))),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{}  error  ", garbage.id))),
        "{stdout}"
    );
    assert_eq!(
        lines[2], "clean: 0 deleted, 1 alive, 0 busy, 1 errors, 3 kept",
        "{stdout}"
    );
}

#[test]
fn leftover_of_a_crashed_delete_is_not_listed_and_the_next_clean_removes_it() {
    let env = TestEnv::new();
    let keep = ended(&env, "retired", 0);
    // A crashed delete: the session was renamed aside, then partly removed.
    let crashed = env.session();
    set_state(&crashed, "retired", 5);
    crashed.write("output/acp-events.jsonl", "{}\n");
    let aside = env.sessions_dir.join(format!(".deleting-{}", crashed.id));
    fs_err::rename(&crashed.dir, &aside).expect("rename aside");
    fs_err::remove_file(aside.join("metadata.toml")).expect("partly removed");

    assert_eq!(
        listed(&env),
        [keep.id.as_str()],
        "a half-deleted session is never listed"
    );
    let out = env.run(&["session", "delete", &crashed.id]);
    assert_eq!(code(&out), Some(4), "{}", text(&out.stderr));

    let before = env.tree_snapshot();
    let out = env.run(&[
        "session",
        "clean",
        "--older-than",
        "1d",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!(report["leftovers"][0]["action"], "would_remove");
    assert_eq!(env.tree_snapshot(), before, "--dry-run changes nothing");

    let out = env.run(&["session", "clean", "--older-than", "1d"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{}  removed  ", aside.display())),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            "clean: 0 deleted, 0 alive, 0 busy, 0 errors, 1 kept, 1 leftovers removed\n"
        ),
        "{stdout}"
    );
    assert!(!aside.exists());
    assert_eq!(entries(&env), [keep.id]);
}

#[test]
fn delete_never_follows_a_symlinked_session_directory() {
    let env = TestEnv::new();
    let s = ended(&env, "retired", 5);
    let elsewhere = env.project.join("elsewhere");
    fs_err::rename(&s.dir, &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &s.dir).expect("symlink");
    let before = env.tree_snapshot();
    let out = env.run(&["session", "delete", &s.id]);
    assert_eq!(code(&out), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("symbolic link"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(env.tree_snapshot(), before);
    assert!(elsewhere.join("state.toml").is_file());
    assert!(!elsewhere.join(".reconcile.lock").exists());
}

#[test]
fn bad_arguments_map_to_usage_and_not_found() {
    let env = TestEnv::new();
    let _other = env.session();
    for bad in ["../x", "", "/etc", "01I"] {
        let out = env.run(&["session", "delete", bad]);
        assert_eq!(code(&out), Some(2), "{bad:?}");
    }
    let out = env.run(&["session", "delete", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"]);
    assert_eq!(code(&out), Some(4));
    assert!(
        text(&out.stderr).starts_with("error: no session matches"),
        "{}",
        text(&out.stderr)
    );
    for bad in [&["--older-than", "soon"][..], &[][..]] {
        let mut args = vec!["session", "clean"];
        args.extend_from_slice(bad);
        assert_eq!(code(&env.run(&args)), Some(2), "{bad:?}");
    }
}

#[test]
fn concurrent_cleans_delete_each_session_exactly_once() {
    let env = TestEnv::new();
    let sessions: Vec<Session> = (0..40).map(|_| ended(&env, "retired", 3)).collect();
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.csa(&["session", "clean", "--older-than", "1h", "--format", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn csa")
        })
        .collect();
    let mut deleted = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            code(&out),
            Some(0),
            "{} {}",
            text(&out.stderr),
            text(&out.stdout)
        );
        for (id, action) in clean_actions(&json(&out)) {
            // A session another clean holds is skipped as busy, not an error.
            assert!(
                action == "deleted" || action == "skipped_busy",
                "{id} {action}"
            );
            if action == "deleted" {
                deleted.push(id);
            }
        }
    }
    deleted.sort();
    let mut all: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
    all.sort();
    assert_eq!(deleted, all, "each session deleted exactly once");
    assert!(entries(&env).is_empty(), "{:?}", entries(&env));
}

/// The time a state.toml or result.toml field holds.
fn time_of(v: &toml::Value) -> chrono::DateTime<Utc> {
    v.as_str().expect("a time").parse().expect("RFC 3339")
}

/// Regression (issue 11, case 2): `last_accessed` was set when a turn started and never when it
/// ended, so `csa session clean --older-than 3s` deleted a 4-second run the moment it ended
/// (and a two-hour run was deletable by `--older-than 1h`); the LAST ACCESSED column showed the
/// start time.
#[test]
fn clean_keeps_a_session_whose_long_turn_has_just_ended() {
    let env = TestEnv::new();
    let out = env.run(&["run", "--", "sh", "-c", "sleep 4; echo important-result"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "important-result\n");
    let id = listed(&env).pop().expect("the session");
    let dir = env.sessions_dir.join(&id);

    let out = env.run(&["session", "clean", "--older-than", "3s", "--format", "json"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(json(&out)["counts"]["deleted"], 0, "{}", text(&out.stdout));
    let result: toml::Table =
        toml::from_str(&fs_err::read_to_string(dir.join("result.toml")).expect("kept"))
            .expect("toml");
    assert!(result["summary"]
        .as_str()
        .expect("summary")
        .contains("important-result"));

    // last_accessed is the end of the turn, in state.toml and in the listing.
    let state: toml::Table =
        toml::from_str(&fs_err::read_to_string(dir.join("state.toml")).expect("read"))
            .expect("toml");
    let ended = time_of(&result["completed_at"]);
    assert_eq!(time_of(&state["last_accessed"]), ended);
    assert!(ended - time_of(&result["started_at"]) >= chrono::TimeDelta::seconds(4));
    let out = env.run(&["session", "list", "--format", "json"]);
    let listed: serde_json::Value = json(&out);
    let shown: chrono::DateTime<Utc> = listed[0]["last_accessed"]
        .as_str()
        .expect("last_accessed")
        .parse()
        .expect("RFC 3339");
    assert_eq!(shown, ended, "LAST ACCESSED is the end of the turn");
}

/// Regression (issue 11, case 7): a session whose state.toml does not parse is (rightly) never
/// rewritten, but `delete --force` refused it too, so the only way out was `rm -rf` by hand.
/// With no process of it alive, it is now moved whole to `sessions/.quarantine/`, which no
/// listing or reconcile reads, and doctor lists it.
#[test]
fn delete_force_moves_a_corrupt_dead_session_whole_to_the_quarantine() {
    let env = TestEnv::new();
    let s = env.session();
    s.write("state.toml", "phase = [ this is not toml");
    s.write("output.log", "the agent's last words\n");
    s.backdate();
    let before = env.tree_snapshot();

    // Without --force: refused, with the way out as the hint.
    let out = env.run(&["session", "delete", &s.id]);
    assert_eq!(code(&out), Some(3), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!("csa session delete --force {}", s.id)),
        "{out:?}"
    );
    assert_eq!(env.tree_snapshot(), before, "nothing changed");

    let out = env.run(&["session", "delete", "--force", &s.id, "--format", "json"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    let report = json(&out);
    assert_eq!(report["deleted"], false);
    let to = std::path::PathBuf::from(report["quarantined"].as_str().expect("where"));
    let quarantine = env.sessions_dir.join(".quarantine");
    assert_eq!(to.parent(), Some(quarantine.as_path()), "{to:?}");
    let name = to.file_name().expect("name").to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("{}-", s.id)), "{name}");
    assert!(text(&out.stderr).contains("rm -rf"), "{out:?}");
    assert!(!s.dir.exists());
    // Moved whole, nothing rewritten: every file byte-identical at its new place.
    for (path, bytes) in &before {
        if let Ok(rel) = std::path::Path::new(path).strip_prefix(&s.dir) {
            let moved = to.join(rel);
            if bytes.is_empty() && moved.is_dir() {
                continue;
            }
            assert_eq!(&fs_err::read(&moved).expect("moved"), bytes, "{rel:?}");
        }
    }

    // Listings and reconcile ignore the quarantine; doctor lists it.
    assert!(listed(&env).is_empty());
    let (code_, json_) = env.reconcile_json(&["--full"]);
    assert_eq!(code_, 0, "{json_}");
    assert!(
        json_["sessions"].as_array().expect("sessions").is_empty(),
        "{json_}"
    );
    let check = env.run(&["debug", "check"]);
    assert!(check.status.success(), "{check:?}");
    let out = env.run(&["doctor", "--format", "json"]);
    let report = json(&out);
    assert_eq!(
        report["roots"][0]["quarantined"],
        serde_json::json!([to.display().to_string()]),
        "{report}"
    );
    let out = env.run(&["doctor"]);
    let line = text(&out.stdout)
        .lines()
        .find(|l| l.starts_with("quarantined"))
        .map(str::to_owned);
    assert!(
        line.is_some_and(|l| l.contains(&to.display().to_string())),
        "{out:?}"
    );
}

/// The quarantine is for dead sessions only: one whose agent may be alive (fresh output, or a
/// live owned process) is refused and left exactly as it is.
#[test]
fn delete_force_refuses_to_quarantine_a_corrupt_session_that_may_be_alive() {
    let env = TestEnv::new();
    let agent = Agent::spawn();
    let s = owned_by(&env, &agent);
    s.write("state.toml", "phase = [");
    s.backdate();
    let before = env.tree_snapshot();
    let out = env.run(&["session", "delete", "--force", &s.id]);
    assert_eq!(code(&out), Some(75), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!("pid {}", agent.pid())),
        "{out:?}"
    );
    assert_eq!(env.tree_snapshot(), before);
    assert!(!env.sessions_dir.join(".quarantine").exists());
}
