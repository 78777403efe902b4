//! insta snapshots of what `csa session list`, `result` and `reconcile` print, text and JSON, on
//! one arranged project holding a session of every status (issue 6). They show reviewers the
//! exact output and catch any change to it; an intended change is accepted with
//! `cargo insta review` (or `INSTA_UPDATE=always`), and the `.snap` files are committed.
//!
//! Redactions: each session id becomes a label of the same width (`RUNNING___…`), so tables keep
//! their alignment and a reader sees which session is which; the temp directories become
//! `[PROJECT]` and `[STATE]`; times the commands take from the clock become `[TIME]`, and
//! durations measured from file ages `[AGE]`. Arranged times are fixed and printed as they are.

use std::process::Output;

use chrono::{SecondsFormat, Utc};

use crate::harness::{Agent, Session, TestEnv};
use crate::list_output::{ended, live, set_state_key};

/// The arranged project: one session of every status, oldest first.
struct Project {
    env: TestEnv,
    _agent: Agent,
    /// Every session with its label, newest first.
    sessions: Vec<(Session, String)>,
}

fn label(name: &str) -> String {
    format!("{name:_<26}")
}

fn arrange() -> Project {
    let env = TestEnv::new();
    let mut sessions = Vec::new();
    let retired = ended(&env, "retired", "failure", 1);
    set_state_key(&retired, "description", "fix the flaky test");
    let exhausted = ended(&env, "tool_exhausted", "error", 2);
    let available = ended(&env, "available", "success", 0);
    set_state_key(&available, "description", "write docs/cli.md");
    let orphaned = env.session();
    set_state_key(&orphaned, "description", "agent killed by the OOM killer");
    let (agent, running) = live(&env);
    set_state_key(&running, "description", "refactor the parser");
    for (s, name) in [
        (running, "RUNNING"),
        (orphaned, "ORPHANED"),
        (available, "AVAILABLE"),
        (exhausted, "TOOL_EXHAUSTED"),
        (retired, "RETIRED"),
    ] {
        s.backdate();
        sessions.push((s, label(name)));
    }
    Project {
        env,
        _agent: agent,
        sessions,
    }
}

impl Project {
    fn session(&self, name: &str) -> &Session {
        let label = label(name);
        &self
            .sessions
            .iter()
            .find(|(_, l)| *l == label)
            .expect("arranged")
            .0
    }

    fn run(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut cmd = self.env.csa(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("run csa")
    }

    /// `bytes` with session ids, temp paths and escape characters made stable and readable.
    fn redact(&self, bytes: &[u8]) -> String {
        let mut text = String::from_utf8(bytes.to_vec()).expect("utf8");
        for (s, label) in &self.sessions {
            text = text.replace(s.id.as_str(), label);
        }
        let project = fs_err::canonicalize(&self.env.project).expect("canonical");
        for (path, name) in [
            (self.env.state_root.display().to_string(), "[STATE]"),
            (project.display().to_string(), "[PROJECT]"),
            (self.env.project.display().to_string(), "[PROJECT]"),
        ] {
            text = text.replace(&path, name);
        }
        text.replace('\u{1b}', "␛")
    }

    /// stdout of a command expected to exit `code`, redacted.
    fn stdout(&self, args: &[&str], vars: &[(&str, &str)], code: i32) -> String {
        let out = self.run(args, vars);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        self.redact(&out.stdout)
    }
}

/// Filters for values the commands take from the clock, from file ages or from the live agent.
fn clock_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\bpid \d+", "pid [PID]"),
        (r"\bstart ticks \d+", "start ticks [TICKS]"),
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "[TIME]",
        ),
        (r"\b\d+s\b", "[AGE]"),
    ]
}

#[test]
fn list_text_and_json() {
    let p = arrange();
    insta::assert_snapshot!("list_plain", p.stdout(&["session", "list"], &[], 0));
    insta::assert_snapshot!(
        "list_json",
        p.stdout(&["session", "list", "--format", "json"], &[], 0)
    );
}

#[test]
fn list_fitted_to_a_terminal() {
    let p = arrange();
    // Relative times are relative to now: arrange them so (3 h 5 min, 2 days ago).
    for (i, (s, _)) in p.sessions.iter().enumerate() {
        let age = if i % 2 == 0 {
            chrono::Duration::minutes(3 * 60 + 5)
        } else {
            chrono::Duration::days(2)
        };
        let then = (Utc::now() - age).to_rfc3339_opts(SecondsFormat::Secs, true);
        set_state_key(s, "last_accessed", &then);
    }
    let args = ["session", "list", "--color", "always"];
    insta::assert_snapshot!(
        "list_fitted_100_columns",
        p.stdout(&args, &[("COLUMNS", "100")], 0)
    );
    // CLICOLOR_FORCE forces colour like --color always; an empty NO_COLOR does not count.
    insta::assert_snapshot!(
        "list_fitted_60_columns",
        p.stdout(
            &["session", "list"],
            &[("COLUMNS", "60"), ("CLICOLOR_FORCE", "1"), ("NO_COLOR", "")],
            0
        )
    );
}

#[test]
fn list_running_check() {
    let p = arrange();
    let out = p.run(&["session", "list", "--running", "--check"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    insta::assert_snapshot!("list_running_check_stderr", p.redact(&out.stderr));
}

#[test]
fn result_text_and_json() {
    let p = arrange();
    let id = p.session("AVAILABLE").id.as_str();
    insta::assert_snapshot!("result_text", p.stdout(&["session", "result", id], &[], 0));
    insta::assert_snapshot!(
        "result_json",
        p.stdout(&["session", "result", id, "--format", "json"], &[], 0)
    );
}

#[test]
fn reconcile_text_and_json() {
    let p = arrange();
    insta::with_settings!({ filters => clock_filters() }, {
        insta::assert_snapshot!(
            "reconcile_check_text",
            p.stdout(&["session", "reconcile", "--check", "-v"], &[], 1)
        );
        insta::assert_snapshot!(
            "reconcile_check_json",
            p.stdout(&["session", "reconcile", "--check", "--format", "json"], &[], 1)
        );
        insta::assert_snapshot!(
            "reconcile_text",
            p.stdout(&["session", "reconcile"], &[], 0)
        );
        insta::assert_snapshot!(
            "reconcile_again_json",
            p.stdout(&["session", "reconcile", "--format", "json"], &[], 0)
        );
        insta::assert_snapshot!(
            "result_of_the_orphan_text",
            p.stdout(&["session", "result", &p.session("ORPHANED").id], &[], 0)
        );
    });
}
