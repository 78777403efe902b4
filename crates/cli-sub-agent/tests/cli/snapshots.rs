//! insta snapshots of what `csa session list`, `result` and `reconcile` print, text and JSON, on
//! one arranged project holding a session of every status (issue 6). They show reviewers the
//! exact output and catch any change to it; an intended change is accepted with
//! `cargo insta review` (or `INSTA_UPDATE=always`), and the `.snap` files are committed.
//!
//! The sessions have fixed ids, chosen so that the shortest unique prefixes a narrow terminal
//! shows differ in length (8 and 10 characters). Redactions: each session id becomes a label of
//! the same width (`RUNNING___…`), and each shortened id the label's start of the same length
//! (`RUNNING_`), so tables keep their alignment and a reader sees which session is which; the
//! temp directories become `[PROJECT]` and `[STATE]`; times the commands take from the clock
//! become `[TIME]`, and durations measured from file ages `[AGE]`. Arranged times are fixed and
//! printed as they are.

use std::process::Output;

use chrono::{SecondsFormat, Utc};

use crate::harness::{Agent, Session, TestEnv};
use crate::list_output::{set_state_key, write_result};

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

/// The arranged ids, newest first: RUNNING, ORPHANED, AVAILABLE, TOOL_EXHAUSTED, RETIRED. The
/// last two share their first 9 characters, so their shortest unique prefixes are 10 long; the
/// others need the minimum, 8.
const IDS: [&str; 5] = [
    "01M9C000000000000000000001",
    "01M9B100000000000000000002",
    "01M9B000000000000000000003",
    "01M9A000001000000000000004",
    "01M9A000000000000000000005",
];

/// A session of the arranged project with the id `id`.
fn session(env: &TestEnv, id: &str) -> Session {
    env.session_at(&env.sessions_dir, &env.project, id)
}

/// An ended session: `phase` set, with a result of `status`.
fn ended(env: &TestEnv, id: &str, phase: &str, status: &str, exit_code: i32) -> Session {
    let s = session(env, id);
    write_result(&s, status, exit_code);
    set_state_key(&s, "phase", phase);
    s
}

fn arrange() -> Project {
    let env = TestEnv::new();
    let mut sessions = Vec::new();
    let retired = ended(&env, IDS[4], "retired", "failure", 1);
    set_state_key(&retired, "description", "fix the flaky test");
    let exhausted = ended(&env, IDS[3], "tool_exhausted", "error", 2);
    let available = ended(&env, IDS[2], "available", "success", 0);
    set_state_key(&available, "description", "write docs/cli.md");
    let orphaned = session(&env, IDS[1]);
    set_state_key(&orphaned, "description", "agent killed by the OOM killer");
    let agent = Agent::spawn();
    let running = session(&env, IDS[0]);
    running.daemon_pid(agent.pid(), agent.ticks());
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
        // Whole ids, then shortened ones, longest first (a shortened id is unique at its length).
        for len in (8..=26).rev() {
            for (s, label) in &self.sessions {
                text = text.replace(&s.id[..len], &label[..len]);
            }
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
        // The portable backend (CSA_PROCESS_BACKEND=portable) checks upstream's ticks to the
        // second: the same verdict in its own words.
        (
            r"\bstarted \d+ s after boot matches the record to one second",
            "start ticks [TICKS] match",
        ),
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
    insta::with_settings!({ filters => clock_filters() }, {
        insta::assert_snapshot!(
            "list_json",
            p.stdout(&["session", "list", "--format", "json"], &[], 0)
        );
    });
}

impl Project {
    /// Sets every session's `last_accessed` relative to now (3 h 5 min, 2 days, alternately),
    /// for the fitted layout's relative times.
    fn recent(&self) {
        for (i, (s, _)) in self.sessions.iter().enumerate() {
            let age = if i % 2 == 0 {
                chrono::Duration::minutes(3 * 60 + 5)
            } else {
                chrono::Duration::days(2)
            };
            let then = (Utc::now() - age).to_rfc3339_opts(SecondsFormat::Secs, true);
            set_state_key(s, "last_accessed", &then);
        }
    }
}

/// The fitted table at 60, 100 and 200 columns (issue 12): at 200 everything fits, ids whole;
/// narrower, ids are cut to their shortest unique prefix (8 characters, 10 for the two that
/// share 9), then columns give way; `--long-ids` keeps them whole.
#[test]
fn list_fitted_to_a_terminal() {
    let p = arrange();
    p.recent();
    let args = ["session", "list", "--color", "always"];
    insta::assert_snapshot!(
        "list_fitted_200_columns",
        p.stdout(&args, &[("COLUMNS", "200")], 0)
    );
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
    insta::assert_snapshot!(
        "list_fitted_60_columns_long_ids",
        p.stdout(
            &["session", "list", "--color", "always", "--long-ids"],
            &[("COLUMNS", "60")],
            0
        )
    );
}

/// Regression (issue 12): `--all-projects` had no project column (only the JSON had
/// `project_path`), so sessions of different projects could not be told apart. PROJECT shows
/// each session's directory, `~` for the home directory, cut from its start when narrow; a
/// shortened id is unique across every project.
#[test]
fn list_all_projects_shows_the_project() {
    let mut p = arrange();
    let tmp = fs_err::canonicalize(p.env.project.parent().expect("tmp")).expect("canonical");
    let other = tmp.join("other-project-with-a-long-name");
    let sub = tmp.join("project/sub");
    for dir in [&other, &sub] {
        fs_err::create_dir_all(dir).expect("mkdir");
    }
    for (dir, id, label) in [
        (&other, "01M9D000000000000000000006", "OTHER"),
        (&sub, "01M9C000000100000000000007", "SUB"),
    ] {
        let s = p.env.session_at(&p.env.sessions_dir_of(dir), dir, id);
        write_result(&s, "success", 0);
        set_state_key(&s, "phase", "available");
        p.sessions.push((s, self::label(label)));
    }
    let home = tmp.to_str().expect("utf8");
    insta::assert_snapshot!(
        "list_all_projects_plain",
        p.stdout(&["session", "list", "--all-projects"], &[("HOME", home)], 0)
    );
    p.recent();
    for width in ["200", "100", "60"] {
        insta::assert_snapshot!(
            format!("list_all_projects_{width}_columns"),
            p.stdout(
                &["session", "list", "--all-projects", "--color", "always"],
                &[("HOME", home), ("COLUMNS", width)],
                0
            )
        );
    }
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
