//! `csa session list` for humans and hooks (issue 6): the plain layout when piped, the fitted
//! table (width, relative times, colours) when colour is forced, `--color` against `NO_COLOR`
//! and `CLICOLOR_FORCE`, and `--running --check` with real `csa run` agents. stdout is always a
//! pipe here: the fitted layout is reached by forcing colour, as on a terminal.

use std::process::Output;

use chrono::{SecondsFormat, Utc};

use crate::harness::{Agent, Session, TestEnv};

/// Rewrites `key = "…"` (a root string key of state.toml) to `value`, atomically.
pub(crate) fn set_state_key(s: &Session, key: &str, value: &str) {
    let text = String::from_utf8(s.read("state.toml")).expect("utf8");
    let prefix = format!("{key} = \"");
    let mut found = false;
    let body: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with(&prefix) && !found {
                found = true;
                format!("{key} = \"{value}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(found, "no {key} in {text}");
    let tmp = s.path(".tmp-test-state");
    fs_err::write(&tmp, body.join("\n") + "\n").expect("write");
    fs_err::rename(&tmp, s.path("state.toml")).expect("rename");
}

/// Writes a result.toml, as a finished turn leaves it.
pub(crate) fn write_result(s: &Session, status: &str, exit_code: i32) {
    s.write(
        "result.toml",
        format!(
            "status = \"{status}\"\nexit_code = {exit_code}\nsummary = \"did it\\nsecond line\"\n\
             tool = \"codex\"\nstarted_at = \"2026-11-21T06:33:50Z\"\n\
             completed_at = \"2026-11-21T06:40:00Z\"\n"
        ),
    );
}

/// An ended session: `phase` set, with a result of `status`.
pub(crate) fn ended(env: &TestEnv, phase: &str, status: &str, exit_code: i32) -> Session {
    let s = env.session();
    write_result(&s, status, exit_code);
    set_state_key(&s, "phase", phase);
    s.backdate();
    s
}

/// A session whose owner is a live agent (its daemon.pid names it).
pub(crate) fn live(env: &TestEnv) -> (Agent, Session) {
    let agent = Agent::spawn();
    let s = env.session();
    s.daemon_pid(agent.pid(), agent.ticks());
    (agent, s)
}

/// `text` without ANSI escape sequences (CSI `ESC [ … final-byte`).
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn list(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut full = vec!["session", "list"];
    full.extend_from_slice(args);
    let mut cmd = env.csa(&full);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run csa")
}

/// Whether `line`'s first word is `id` or a prefix of it of at least 8 characters (the fitted
/// table shortens ids when narrow).
pub(crate) fn starts_with_id(line: &str, id: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|w| w.len() >= 8 && id.starts_with(w))
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf8 stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const LONG: &str =
    "refactor the parser so that every error names the file and the line it came from";

/// A running session with a long description and a retired one, both last accessed ten minutes
/// ago (`last`, exactly as stored).
struct Arranged {
    _agent: Agent,
    running: Session,
    retired: Session,
    last: String,
}

fn arranged(env: &TestEnv) -> Arranged {
    let last =
        (Utc::now() - chrono::Duration::minutes(10)).to_rfc3339_opts(SecondsFormat::Nanos, true);
    let retired = ended(env, "retired", "failure", 1);
    let (agent, running) = live(env);
    set_state_key(&running, "description", LONG);
    for s in [&running, &retired] {
        set_state_key(s, "last_accessed", &last);
        s.backdate();
    }
    Arranged {
        _agent: agent,
        running,
        retired,
        last,
    }
}

/// Regression: a description holding a newline (written by another program, or
/// `csa run --description`) printed a second line, and an escape sequence reached the terminal.
#[test]
fn piped_output_is_plain_aligned_one_line_per_session_with_exact_times() {
    let env = TestEnv::new();
    // The agent lives as long as `_agent` (a `..` pattern would drop it here).
    let Arranged {
        _agent,
        running,
        retired,
        last,
    } = arranged(&env);
    set_state_key(&retired, "description", "two\\nlines \\u001b[31mred");
    let out = list(&env, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        !text.contains('\u{1b}'),
        "no escape codes when piped: {text:?}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "header + one line per session: {text}");
    let header = lines[0];
    assert!(header.starts_with("SESSION  "), "{header}");
    // Every column starts where its header does.
    for (col, word) in [
        ("STATUS", "running"),
        ("RESULT", "-"),
        ("TOOL", "codex"),
        ("LAST ACCESSED", last.as_str()),
        ("DESCRIPTION", LONG),
    ] {
        let at = header.find(col).expect("column");
        assert!(lines[1][at..].starts_with(word), "{col}: {:?}", lines[1]);
    }
    assert!(lines[1].starts_with(&running.id));
    assert!(lines[2].starts_with(&retired.id));
    let at = header.find("DESCRIPTION").expect("column");
    assert_eq!(&lines[2][at..], "two\\nlines \\u{1b}[31mred");
    // Scripts split on whitespace: the first word of each row is its session.
    assert_eq!(lines[1].split_whitespace().nth(1), Some("running"));
    assert_eq!(lines[2].split_whitespace().nth(1), Some("retired"));
}

#[test]
fn color_follows_the_flag_then_no_color_then_clicolor_force() {
    let env = TestEnv::new();
    // The agent lives as long as `_agent` (a `..` pattern would drop it here).
    let Arranged {
        _agent,
        running,
        retired,
        last,
    } = arranged(&env);
    // (arguments, environment, coloured)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], bool);
    let cases: [Case; 8] = [
        (&[], &[], false),
        (&["--color", "auto"], &[], false),
        (&["--color", "always"], &[], true),
        (&["--color", "always"], &[("NO_COLOR", "1")], true),
        (&["--color", "never"], &[("CLICOLOR_FORCE", "1")], false),
        (&[], &[("CLICOLOR_FORCE", "1")], true),
        (&[], &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")], false),
        (&["--color", "never"], &[], false),
    ];
    for (args, vars, coloured) in cases {
        let out = list(&env, args, vars);
        let what = format!("{args:?} {vars:?}");
        assert_eq!(out.status.code(), Some(0), "{what}: {out:?}");
        let text = stdout(&out);
        assert_eq!(text.contains('\u{1b}'), coloured, "{what}: {text:?}");
        // Colour is also the fitted layout: relative times instead of exact ones.
        assert_eq!(text.contains(&last), !coloured, "{what}: {text}");
        assert_eq!(text.contains("10 minutes ago"), coloured, "{what}: {text}");
        // The status word is always printed: colour alone never says anything.
        let plain = strip_ansi(&text);
        for (s, word) in [(&running, "running"), (&retired, "retired")] {
            let row = plain
                .lines()
                .find(|l| starts_with_id(l, &s.id))
                .unwrap_or_else(|| panic!("{what}: no row for {word}: {plain}"));
            assert_eq!(row.split_whitespace().nth(1), Some(word), "{what}: {row}");
        }
        if coloured {
            assert!(
                text.contains("\u{1b}[32mrunning\u{1b}[0m"),
                "running is green: {text:?}"
            );
        }
    }
}

#[test]
fn fitted_table_fits_the_terminal_width() {
    let env = TestEnv::new();
    let Arranged {
        _agent,
        running,
        retired,
        ..
    } = arranged(&env);
    let fitted = |columns: &str| {
        let out = list(&env, &["--color", "always"], &[("COLUMNS", columns)]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        strip_ansi(&stdout(&out))
    };
    for (columns, width) in [("200", 200), ("100", 100), ("80", 80), ("60", 60)] {
        let text = fitted(columns);
        assert_eq!(
            text.lines().count(),
            3,
            "{columns}: one line per row: {text}"
        );
        for line in text.lines() {
            assert!(line.chars().count() <= width, "{columns}: {line:?}");
        }
        for (s, word) in [(&running, "running"), (&retired, "retired")] {
            assert!(
                text.lines()
                    .any(|l| starts_with_id(l, &s.id) && l.contains(word)),
                "{columns}: the id (or a prefix of 8 or more) and status stay: {text}"
            );
        }
    }
    let wide = fitted("200");
    assert!(
        wide.lines().any(|l| l.starts_with(&running.id)),
        "200 columns: whole ids: {wide}"
    );
    assert!(wide.contains(LONG), "200 columns show everything: {wide}");
    assert!(wide.contains("codex") && wide.contains("failure"), "{wide}");
    let cut = fitted("100");
    assert!(
        !cut.contains(LONG) && cut.contains("refactor the parser"),
        "{cut}"
    );
    assert!(cut.contains('…'), "a cut description says so: {cut}");
    // At 60 columns the ids are shortened (issue 12: they took half the width), which leaves
    // room for part of the description once TOOL has given way.
    let narrow = fitted("60");
    assert!(
        narrow.contains("refactor the") && !narrow.contains(LONG) && narrow.contains('…'),
        "the description is cut: {narrow}"
    );
    assert!(
        !narrow.contains(&running.id),
        "ids are shortened when narrow: {narrow}"
    );
    assert!(!narrow.contains("codex"), "TOOL gives way first: {narrow}");
    assert!(narrow.contains("LAST ACCESSED"), "{narrow}");
}

#[test]
fn last_accessed_is_relative_when_fitted_and_exact_when_piped() {
    let env = TestEnv::new();
    let s = env.session();
    let then = Utc::now() - chrono::Duration::minutes(3 * 60 + 5);
    let exact = then.to_rfc3339_opts(SecondsFormat::Nanos, true);
    set_state_key(&s, "last_accessed", &exact);
    let week = ended(&env, "retired", "success", 0);
    let old = Utc::now() - chrono::Duration::days(8);
    set_state_key(
        &week,
        "last_accessed",
        &old.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    let fitted = strip_ansi(&stdout(&list(&env, &["--color", "always"], &[])));
    let row = |text: &str, id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row {id}: {text}"))
            .to_owned()
    };
    assert!(row(&fitted, &s.id).contains("3 hours ago"), "{fitted}");
    assert!(row(&fitted, &week.id).contains("1 week ago"), "{fitted}");
    let plain = stdout(&list(&env, &[], &[]));
    assert!(row(&plain, &s.id).contains(&exact), "{plain}");
}

/// `csa session list ARGS` with stdout on a pseudo-terminal `columns` wide (and stderr, stdin
/// not), returning what the terminal received, line ends as `\n`.
fn on_terminal(env: &TestEnv, args: &[&str], vars: &[(&str, &str)], columns: u16) -> String {
    use std::io::Read as _;
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(&size, None).expect("openpty");
    let mut full = vec!["session", "list"];
    full.extend_from_slice(args);
    let mut cmd = env.csa(&full);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::from(pty.slave))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn csa");
    // The child holds the only other copy of the slave: once it exits, reads end with EIO.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            // EIO: the slave side is closed (Linux).
            Err(_) => break,
        }
    }
    assert!(child.wait().expect("wait").success());
    String::from_utf8(bytes)
        .expect("utf8")
        .replace("\r\n", "\n")
}

#[test]
fn a_terminal_gets_the_fitted_table_at_its_width_coloured_when_term_allows() {
    let env = TestEnv::new();
    let Arranged {
        _agent,
        running,
        last,
        ..
    } = arranged(&env);
    // No TERM (the harness clears the environment): fitted, but no colour.
    let plain = on_terminal(&env, &[], &[], 70);
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
    assert!(
        plain.contains("10 minutes ago") && !plain.contains(&last),
        "{plain}"
    );
    for line in plain.lines() {
        assert!(line.chars().count() <= 70, "the terminal's width: {line:?}");
    }
    assert!(!plain.contains(LONG), "{plain}");
    // A terminal that supports colour gets it, unless NO_COLOR.
    let coloured = on_terminal(&env, &[], &[("TERM", "xterm-256color")], 70);
    assert!(coloured.contains("\u{1b}[32mrunning"), "{coloured:?}");
    let no_color = on_terminal(&env, &[], &[("TERM", "xterm"), ("NO_COLOR", "1")], 70);
    assert!(!no_color.contains('\u{1b}'), "{no_color:?}");
    assert_eq!(no_color, plain);
    // COLUMNS wins over the terminal's size.
    let wide = on_terminal(&env, &[], &[("COLUMNS", "200")], 70);
    assert!(
        wide.lines()
            .any(|l| l.starts_with(&running.id) && l.ends_with(LONG)),
        "{wide}"
    );
}

/// A `csa run --detach -- sleep 1000` agent, killed (`csa session kill`) on drop if the test
/// did not end it.
struct Detached<'a> {
    env: &'a TestEnv,
    id: String,
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = self.env.run(&["session", "kill", &self.id]);
    }
}

/// Starts `csa run --detach -- sleep 1000` in `cd`.
fn detach_sleep<'a>(env: &'a TestEnv, cd: &std::path::Path) -> Detached<'a> {
    let cd = cd.to_str().expect("utf8 path");
    let out = env.run(&["run", "--detach", "--cd", cd, "--", "sleep", "1000"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Detached { env, id }
}

/// Runs a `hint:` line's command exactly as a user would paste it (its words, no shell needed:
/// csa quotes nothing here), with the harness's cleared environment.
fn run_hint(env: &TestEnv, hint: &str) -> Output {
    let command = hint.split_once(": csa ").expect("a csa command").1;
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("csa"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // The process backend under test (.ci/run runs the suite with each).
        .envs(std::env::var_os("CSA_PROCESS_BACKEND").map(|v| ("CSA_PROCESS_BACKEND", v)))
        .current_dir(&env.project)
        .args(command.split_whitespace());
    cmd.output().expect("run hint")
}

#[test]
fn running_check_fails_naming_a_real_agent_and_passes_once_it_ends() {
    let env = TestEnv::new();
    ended(&env, "available", "success", 0);
    env.session(); // Active, no daemon.pid: orphaned, not running.
    let idle = list(&env, &["--running", "--check"], &[]);
    assert_eq!(idle.status.code(), Some(0), "{idle:?}");
    assert!(idle.stdout.is_empty() && idle.stderr.is_empty(), "{idle:?}");

    let agent = detach_sleep(&env, &env.project);
    let id = &agent.id;
    let busy = list(&env, &["--running", "--check"], &[]);
    assert_eq!(busy.status.code(), Some(1), "{busy:?}");
    assert!(
        busy.stdout.is_empty(),
        "the diagnostics say it all: {busy:?}"
    );
    let err = stderr(&busy);
    let dir = fs_err::canonicalize(&env.project).expect("canonical");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("error: session {id} is running in {}", dir.display()).as_str()),
        "{err}"
    );
    let root = env.state_root.display();
    assert_eq!(
        lines[1..],
        [
            format!("hint: wait for it: csa --state-dir {root} session wait {id}"),
            format!("hint: or stop it: csa --state-dir {root} session kill {id}"),
        ],
        "{err}"
    );
    // JSON for scripts: the same sessions, same exit code.
    let json = list(&env, &["--running", "--check", "--format", "json"], &[]);
    assert_eq!(json.status.code(), Some(1));
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    assert_eq!(rows[0]["session_id"], id.as_str());
    // The hint works as printed.
    let killed = run_hint(&env, lines[2]);
    assert_eq!(killed.status.code(), Some(0), "{killed:?}");
    let after = list(&env, &["--running", "--check"], &[]);
    assert_eq!(after.status.code(), Some(0), "{after:?}");
    assert!(
        after.stdout.is_empty() && after.stderr.is_empty(),
        "{after:?}"
    );
    let both = list(&env, &["--running", "--status", "running"], &[]);
    assert_eq!(both.status.code(), Some(2), "--running is --status running");
}

#[test]
fn nested_covers_agents_running_below_the_directory() {
    let env = TestEnv::new();
    let sub = env.project.join("crates/deep");
    fs_err::create_dir_all(&sub).expect("mkdir");
    let agent = detach_sleep(&env, &sub);
    let id = &agent.id;
    let here = list(&env, &["--running", "--check"], &[]);
    assert_eq!(
        here.status.code(),
        Some(0),
        "not this directory's: {here:?}"
    );
    let nested = list(&env, &["--running", "--check", "--nested"], &[]);
    assert_eq!(nested.status.code(), Some(1), "{nested:?}");
    let sub = fs_err::canonicalize(&sub).expect("canonical");
    assert!(
        stderr(&nested).starts_with(&format!(
            "error: session {id} is running in {}\n",
            sub.display()
        )),
        "{nested:?}"
    );
    // From the subdirectory itself, no flag is needed; from a sibling, nothing is found.
    let cd = sub.to_str().expect("utf8");
    assert_eq!(
        list(&env, &["--running", "--check", "--cd", cd], &[])
            .status
            .code(),
        Some(1)
    );
    let out = env.run(&["session", "kill", id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let after = list(&env, &["--running", "--check", "--nested"], &[]);
    assert_eq!(after.status.code(), Some(0), "{after:?}");
}

/// `--running` reads only what the active record allows, and falls back when it cannot be
/// trusted. A session whose state.toml no longer parses shows whether it was read: a listing
/// that reads it exits 3 naming it.
#[test]
fn running_reads_only_the_sessions_the_active_record_may_hold() {
    let env = TestEnv::new();
    let (_agent, running) = live(&env);
    let done = ended(&env, "retired", "success", 0);
    // Let `sessions/` settle (the record trusts a fingerprint at least 2 s old), then let
    // reconcile record it: `running` gets an entry, `done` is known to have ended.
    crate::harness::backdate_tree(&env.sessions_dir, 60);
    let out = env.run(&["session", "reconcile"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(env.sessions_dir.join(".csa-active/.scan.toml").exists());
    // Rewritten in place: `sessions/` itself does not change.
    done.write("state.toml", "phase = [broken\n");
    let ids = |out: &Output| -> Vec<String> {
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        rows.as_array()
            .expect("array")
            .iter()
            .map(|r| r["session_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let before = env.tree_snapshot();
    let fast = list(&env, &["--running", "--format", "json"], &[]);
    assert_eq!(fast.status.code(), Some(0), "done is not read: {fast:?}");
    assert_eq!(ids(&fast), std::slice::from_ref(&running.id));
    let full = list(&env, &["--format", "json"], &[]);
    assert_eq!(
        full.status.code(),
        Some(3),
        "a full listing reads it: {full:?}"
    );
    assert!(stderr(&full).contains(&done.path("state.toml").display().to_string()));
    assert_eq!(env.tree_snapshot(), before, "list writes nothing");

    // Another writer (upstream) creates an Active session: no record entry, but `sessions/`
    // changed, so the record is not current and every session not known to have ended is read.
    let (_agent2, newer) = live(&env);
    let before = env.tree_snapshot();
    let out = list(&env, &["--running", "--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(ids(&out), [newer.id.clone(), running.id.clone()]);
    assert_eq!(
        env.tree_snapshot(),
        before,
        "list does not update the record"
    );
    // Without the known-ended list, everything is read.
    fs_err::remove_file(env.sessions_dir.join(".csa-active/.ended")).expect("rm .ended");
    let out = list(&env, &["--running", "--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(ids(&out), [newer.id.clone(), running.id.clone()]);
}

/// Regression (issue 12): from a directory with no sessions, `list` printed a bare header with
/// no hint that other projects had sessions. Now a `hint:` on stderr names the command that
/// lists them; stdout keeps the header only.
#[test]
fn an_empty_project_hints_at_the_sessions_of_other_projects() {
    let env = TestEnv::new();
    let out = list(&env, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stderr(&out).is_empty(), "nowhere has sessions: {out:?}");
    let elsewhere = env.project.join("elsewhere");
    fs_err::create_dir(&elsewhere).expect("mkdir");
    let run = env.run(&["run", "--cd", elsewhere.to_str().expect("utf8"), "true"]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let out = list(&env, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out).lines().count(), 1, "the header only: {out:?}");
    let hint = stderr(&out);
    assert!(
        hint.starts_with("hint: no sessions in /")
            && hint.contains("1 other project has sessions: csa session list --all-projects"),
        "{hint}"
    );
    // Not for hooks, scripts reading JSON, or -q.
    for args in [
        &["--running", "--check"][..],
        &["--format", "json"],
        &["-q"],
    ] {
        let out = list(&env, args, &[]);
        assert!(stderr(&out).is_empty(), "{args:?}: {out:?}");
    }
}

/// Regression (issue 12): `list --since 2h` did not exist although durations are accepted
/// everywhere else. It keeps the sessions last used within the duration.
#[test]
fn since_keeps_the_sessions_used_within_the_duration() {
    let env = TestEnv::new();
    let old = ended(&env, "retired", "failure", 1);
    let recent = ended(&env, "available", "success", 0);
    let now =
        |ago: chrono::Duration| (Utc::now() - ago).to_rfc3339_opts(SecondsFormat::Nanos, true);
    set_state_key(&old, "last_accessed", &now(chrono::Duration::hours(3)));
    set_state_key(
        &recent,
        "last_accessed",
        &now(chrono::Duration::minutes(90)),
    );
    let ids = |args: &[&str]| -> Vec<String> {
        let out = list(&env, args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        stdout(&out)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids(&["--since", "2h"]), [recent.id.as_str()]);
    assert_eq!(ids(&["--since", "4h"]), [recent.id.clone(), old.id.clone()]);
    assert!(ids(&["--since", "1m"]).is_empty());
    let out = list(&env, &["--since", "soon"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Regression (issue 12): `list --check` without `--running` printed every ended session as an
/// error and exited 1. `--check` now needs a status filter: without one it is a usage error.
#[test]
fn check_without_a_status_filter_is_a_usage_error() {
    let env = TestEnv::new();
    let _ended = ended(&env, "retired", "failure", 1);
    let out = list(&env, &["--check"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("--running"), "{out:?}");
    assert!(!stderr(&out).contains("is retired"), "{out:?}");
    for args in [
        &["--check", "--running"][..],
        &["--check", "--status", "orphaned"],
    ] {
        let out = list(&env, args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
}
