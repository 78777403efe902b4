//! `csa session list`, `result` and `is-alive`: read-only views.

use crate::harness::{Agent, TestEnv};

#[test]
fn list_derives_status_newest_first_and_changes_nothing() {
    let env = TestEnv::new();
    let agent = Agent::spawn();
    let running = env.session();
    running.daemon_pid(agent.pid(), agent.ticks());
    let orphan = env.session();
    let before = env.tree_snapshot();
    let out = env.run(&["session", "list", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = json.as_array().expect("array");
    assert_eq!(rows.len(), 2);
    // Newest first (ULIDs sort by creation time).
    assert_eq!(rows[0]["session_id"], orphan.id.as_str());
    assert_eq!(rows[0]["status"], "orphaned");
    assert_eq!(rows[1]["session_id"], running.id.as_str());
    assert_eq!(rows[1]["status"], "running");
    assert_eq!(rows[1]["phase"], "active");
    assert_eq!(rows[1]["result_status"], serde_json::Value::Null);
    assert_eq!(rows[1]["tool"], "codex");
    let out = env.run(&["session", "list", "--status", "orphaned"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&orphan.id) && !text.contains(&running.id),
        "{text}"
    );
    assert_eq!(env.tree_snapshot(), before, "list is read-only");
}

#[test]
fn is_alive_and_result_report_and_exit_per_the_table() {
    let env = TestEnv::new();
    let mut agent = Agent::spawn();
    let s = env.session();
    s.daemon_pid(agent.pid(), agent.ticks());
    let out = env.run(&["session", "is-alive", &s.id]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("alive: daemon.pid"));
    let out = env.run(&["session", "result", &s.id[..10]]);
    assert_eq!(out.status.code(), Some(75), "no result yet");
    agent.kill9();
    let before = env.tree_snapshot();
    let out = env.run(&["session", "is-alive", &s.id.to_lowercase()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dead: "));
    assert_eq!(env.tree_snapshot(), before, "is-alive is read-only");
    assert_eq!(env.run(&["session", "reconcile"]).status.code(), Some(0));
    let out = env.run(&["session", "result", &s.id, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["status"], "failure");
    assert_eq!(json["session_id"], s.id.as_str());
}

#[test]
fn session_arguments_map_to_usage_not_found_and_ambiguous() {
    let env = TestEnv::new();
    let a = env.session();
    let b = env.session();
    for bad in ["../x", "", "/etc", "01I"] {
        let out = env.run(&["session", "is-alive", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let out = env.run(&["session", "result", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: no session matches") && stderr.contains("hint:"),
        "{stderr}"
    );
    // Both ULIDs share their first characters (same millisecond range).
    let common =
        a.id.chars()
            .zip(b.id.chars())
            .take_while(|(x, y)| x == y)
            .count();
    let prefix = &a.id[..common.max(1)];
    let out = env.run(&["session", "is-alive", prefix]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&a.id) && stderr.contains(&b.id), "{stderr}");
}

/// Regression (issue 11, case 8): an ambiguous prefix over 20,000 sessions printed every id on
/// one 561 KB line; the message now names the first 10 and counts the rest.
#[test]
fn an_ambiguous_prefix_lists_ten_candidates_and_counts_the_rest() {
    let env = TestEnv::new();
    let ids: Vec<String> = (0..25).map(|_| env.session().id).collect();
    let prefix = &ids[0][..2];
    assert!(ids.iter().all(|id| id.starts_with(prefix)));
    let out = env.run(&["session", "result", prefix]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let listed = ids.iter().filter(|id| stderr.contains(id.as_str())).count();
    assert_eq!(listed, 10, "{stderr}");
    assert!(stderr.contains("and 15 more"), "{stderr}");
}

/// Regression (issue 11, case 8): a 100 KB SESSION argument was echoed back whole; messages
/// now quote its first 64 characters and its size.
#[test]
fn a_huge_session_argument_is_cut_in_the_message() {
    let env = TestEnv::new();
    let huge = "0".repeat(100_000);
    let out = env.run(&["session", "result", &huge]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.len() < 1000, "{} bytes: {stderr}", stderr.len());
    assert!(
        stderr.contains(&format!("\"{}\"… (100000 bytes)", "0".repeat(64))),
        "{stderr}"
    );
}
