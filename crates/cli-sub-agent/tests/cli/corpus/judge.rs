//! What docs/cli.md promises for each command on each case, checked against what it did.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmd {
    Result,
    IsAlive,
    Wait,
    Logs,
    LogsTail,
    Kill,
    Resume,
    Delete,
    Reconcile,
}

impl Cmd {
    pub(super) const READ_ONLY: [Cmd; 4] = [Cmd::Result, Cmd::IsAlive, Cmd::Logs, Cmd::LogsTail];
    pub(super) const MUTATING: [Cmd; 5] = [
        Cmd::Wait,
        Cmd::Kill,
        Cmd::Resume,
        Cmd::Delete,
        Cmd::Reconcile,
    ];

    pub(super) fn args<'a>(self, id: &'a str, cd: &'a str) -> Vec<&'a str> {
        let mut args = match self {
            Cmd::Result => vec!["session", "result", id],
            Cmd::IsAlive => vec!["session", "is-alive", id],
            Cmd::Wait => vec!["session", "wait", id, "--timeout", "500ms"],
            Cmd::Logs => vec!["session", "logs", id],
            Cmd::LogsTail => vec!["session", "logs", id, "--tail", "1"],
            Cmd::Kill => vec!["session", "kill", id, "--grace", "1s"],
            Cmd::Resume => vec!["session", "resume", id],
            Cmd::Delete => vec!["session", "delete", id],
            Cmd::Reconcile => vec!["session", "reconcile", id, "--format", "json"],
        };
        args.extend(["--cd", cd]);
        args
    }
}

/// Checks one per-session run against docs/cli.md. `alive` is `is-alive`'s verdict on the same
/// case (for `Open` sessions).
pub(super) fn judge(
    case: &Case,
    cmd: Cmd,
    ran: &Ran,
    delta: &Delta,
    alive: Option<bool>,
) -> Vec<String> {
    let mut bad = Vec::new();
    let code = match ran.sane() {
        Ok(code) => code,
        Err(why) => return vec![why],
    };
    let path = case.path_str();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            bad.push(what.to_owned());
        }
    };
    let named = ran.mentions(&path);
    let is = |d: &Delta| delta == d;
    let log_case = case.spec.target == Target::Log;
    match (case.class(), cmd) {
        (_, Cmd::Logs | Cmd::LogsTail) if log_case => {
            let readable = matches!(
                case.spec.form,
                Form::Empty
                    | Form::Garbage
                    | Form::InvalidUtf8
                    | Form::Huge
                    | Form::LinkElsewhere
                    | Form::NoPermissions
            );
            if readable {
                expect(code == 0, "expected exit 0 for a readable log");
                if cmd == Cmd::Logs && case.spec.form != Form::Huge {
                    let want = read_regular_bytes(&case.path).unwrap_or_default();
                    expect(ran.stdout == want, "expected the log byte for byte");
                }
            } else {
                expect(
                    code == 3,
                    "expected exit 3 for a log that is not a regular file",
                );
                expect(named, "expected the error to name the log");
            }
            expect(is(&Delta::None), "a read-only command changed the session");
        }
        (_, Cmd::Logs | Cmd::LogsTail) => {
            expect(code == 0, "expected exit 0");
            expect(is(&Delta::None), "a read-only command changed the session");
        }
        (Class::Blocked, _) => {
            expect(code == 3, "expected exit 3 for an unreadable state.toml");
            expect(named, "expected the error to name state.toml");
            expect(is(&Delta::None), "the session was changed");
        }
        (Class::BadResult, cmd) => {
            let want: &[i32] = match cmd {
                Cmd::Result | Cmd::Wait => &[3],
                Cmd::IsAlive => &[1],
                Cmd::Kill | Cmd::Reconcile => &[0, 3],
                Cmd::Resume | Cmd::Delete => &[75],
                Cmd::Logs | Cmd::LogsTail => &[0],
            };
            expect(want.contains(&code), &format!("expected exit {want:?}"));
            if matches!(cmd, Cmd::Result | Cmd::Wait | Cmd::Reconcile) || code == 3 {
                expect(named, "expected a diagnostic naming result.toml");
            }
            if cmd == Cmd::Reconcile {
                let action = reconcile_action(ran, &case.id);
                let ok = match code {
                    0 => action.as_deref() == Some("skipped_unreadable_result"),
                    _ => action.as_deref() == Some("error"),
                };
                expect(ok, &format!("unexpected reconcile action {action:?}"));
            }
            expect(is(&Delta::None), "the session was changed");
        }
        (Class::Ended, cmd) => {
            let (want, d): (i32, Delta) = match cmd {
                Cmd::Result | Cmd::Kill | Cmd::Reconcile => (0, Delta::None),
                Cmd::IsAlive | Cmd::Wait => (1, Delta::None),
                Cmd::Delete => (0, Delta::Gone),
                Cmd::Resume if case.valid => (0, Delta::Resumed),
                Cmd::Resume => (3, Delta::None),
                Cmd::Logs | Cmd::LogsTail => (0, Delta::None),
            };
            // `wait` exits 5 instead of 1 for a result that was not observed (synthetic).
            let ok = code == want || (cmd == Cmd::Wait && code == 5);
            expect(ok, &format!("expected exit {want}"));
            expect(delta == &d, &format!("expected {d:?}"));
            if cmd == Cmd::Resume && !case.valid {
                expect(named, "expected the error to name run.toml");
            }
        }
        (Class::Open, cmd) => {
            let finalized = |d: &Delta| *d == Delta::Finalized;
            // A volatile case has no verdict to agree with: its own answer says which it saw.
            let alive = alive.or_else(|| match cmd {
                Cmd::Wait => Some(code == 124),
                Cmd::Kill => Some(code == 75),
                Cmd::Reconcile => {
                    Some(reconcile_action(ran, &case.id).as_deref() == Some("skipped_alive"))
                }
                _ => None,
            });
            match cmd {
                Cmd::IsAlive => expect(code == 0 || code == 1, "expected exit 0 or 1"),
                Cmd::Result => {
                    let want = if case.valid_result { 0 } else { 75 };
                    expect(code == want, &format!("expected exit {want}"));
                }
                Cmd::Wait => match alive {
                    Some(true) => expect(code == 124, "alive: expected the timeout (124)"),
                    _ => {
                        expect(
                            matches!(code, 0 | 1 | 5),
                            "dead: expected the result (0, 1, or 5 when synthetic)",
                        );
                        expect(finalized(delta), "dead: expected the session finalized");
                    }
                },
                Cmd::Kill => match alive {
                    Some(true) => expect(code == 75, "alive, unverifiable: expected exit 75"),
                    _ => {
                        expect(code == 0, "dead: expected exit 0");
                        expect(finalized(delta), "dead: expected the session finalized");
                    }
                },
                Cmd::Resume | Cmd::Delete => expect(code == 75, "Active: expected exit 75"),
                Cmd::Reconcile => {
                    expect(code == 0, "expected exit 0");
                    let action = reconcile_action(ran, &case.id);
                    let want: &[&str] = match alive {
                        Some(true) => &["skipped_alive"],
                        _ => &[
                            "synthesized_failure",
                            "synthesized_from_marker",
                            "synthesized_from_completion",
                            "retired_with_result",
                        ],
                    };
                    expect(
                        action.as_deref().is_some_and(|a| want.contains(&a)),
                        &format!("expected one of {want:?}, got {action:?}"),
                    );
                    if alive != Some(true) {
                        expect(finalized(delta), "dead: expected the session finalized");
                    }
                }
                Cmd::Logs | Cmd::LogsTail => {}
            }
            if alive == Some(true)
                || matches!(cmd, Cmd::Result | Cmd::IsAlive | Cmd::Resume | Cmd::Delete)
            {
                expect(is(&Delta::None), "the session was changed");
            }
            let names = match cmd {
                Cmd::Reconcile => true,
                Cmd::IsAlive => case.spec.target.read_by_liveness(),
                _ => false,
            };
            if case.must_name() && names {
                expect(named, "expected a warning or reason naming the file");
            }
        }
    }
    bad
}

pub(super) fn reconcile_action(ran: &Ran, id: &str) -> Option<String> {
    session_entry(&ran.json()?, id)?
        .get("action")?
        .as_str()
        .map(str::to_owned)
}

pub(super) fn session_entry<'a>(json: &'a Value, id: &str) -> Option<&'a Value> {
    json.get("sessions")?
        .as_array()?
        .iter()
        .find(|s| s["session_id"] == id)
}

/// Whether the broken file (or what stands in its place) must be exactly as it was, after
/// `delta` of its session. State and run.toml are rewritten when they parse and the session is
/// finalized or resumed; a deleted session takes its files with it.
pub(super) fn broken_file_must_stay(case: &Case, delta: &Delta) -> bool {
    match delta {
        Delta::Gone | Delta::Resumed => false,
        Delta::Finalized => case.spec.target != Target::State,
        _ => true,
    }
}

/// The rules for a project-level file after a command: unchanged; or, for csa's caches, replaced
/// whole by a valid one of csa's (record entries: removed). Returns what is wrong.
pub(super) fn judge_project_file(
    case: &Case,
    before: &Option<Node>,
    read_only: bool,
) -> Option<String> {
    let after = node(&case.path);
    if &after == before {
        return None;
    }
    if read_only {
        return Some(format!(
            "changed by a read-only command: {before:?} -> {after:?}"
        ));
    }
    let text = || read_regular(&case.path).unwrap_or_default();
    let replaced_file = matches!(after, Some(Node::File { .. }));
    let ok = match case.spec.target {
        Target::Cooldown => {
            replaced_file
                && toml::from_str::<toml::Table>(&text()).is_ok_and(|t| {
                    t.get("session_id").and_then(|v| v.as_str()).is_some()
                        && t.get("completed_at").is_some()
                })
        }
        Target::ActiveEntry => after.is_none(),
        Target::Scan => {
            replaced_file
                && toml::from_str::<toml::Table>(&text())
                    .is_ok_and(|t| t.get("fingerprint").and_then(|v| v.as_str()).is_some())
        }
        Target::Ended => replaced_file && text().lines().all(csa_session::paths::is_ulid),
        _ => false,
    };
    (!ok).then(|| format!("not replaced whole by a valid one of csa's: {before:?} -> {after:?}"))
}

/// Runs the per-session commands `cmds` on every case of `fx`, checking each.
pub(super) fn per_session(
    csa: &Csa,
    fx: &Corpus,
    cmds: &[Cmd],
    alive: &HashMap<String, bool>,
    findings: &Findings,
    serial: bool,
) {
    let work = |case: &Case| {
        for &cmd in cmds {
            let before = tree(&case.dir);
            let project_before = case.spec.target.project_level().then(|| node(&case.path));
            let cd = case.project_dir.display().to_string();
            let ran = csa.run(fx, &case.project_dir, &cmd.args(&case.id, &cd));
            let d = delta(&case.dir, &before);
            let mut bad = judge(case, cmd, &ran, &d, alive.get(&case.id).copied());
            if !case.spec.target.project_level() && broken_file_must_stay(case, &d) {
                let rel = case.spec.target.rel(&case.id);
                if before.get(&rel).cloned() != node(&case.path) {
                    bad.push("the broken file was changed".into());
                }
            }
            if let Some(before) = project_before {
                if let Some(why) = judge_project_file(case, &before, Cmd::READ_ONLY.contains(&cmd))
                {
                    bad.push(why);
                }
            }
            if let Delta::Other(changed) = &d {
                bad.push(format!("unexpected changes: {changed:?}"));
            }
            for b in bad {
                findings.push(format!("{}: {b}\n  {}", case.name(), ran.describe()));
            }
            if d == Delta::Gone {
                break;
            }
        }
    };
    if serial {
        fx.cases.iter().for_each(work);
    } else {
        par_each(&fx.cases, work);
    }
}

/// `is-alive` on every `Open` case: the verdict the mutating commands must agree with.
pub(super) fn liveness_of(csa: &Csa, fx: &Corpus, findings: &Findings) -> HashMap<String, bool> {
    let verdicts = Mutex::new(HashMap::new());
    par_each(&fx.cases, |case| {
        if case.class() != Class::Open || case.volatile {
            return;
        }
        let cd = case.project_dir.display().to_string();
        let ran = csa.run(fx, &case.project_dir, &Cmd::IsAlive.args(&case.id, &cd));
        match ran.sane() {
            Ok(0) => {
                verdicts
                    .lock()
                    .expect("verdicts")
                    .insert(case.id.clone(), true);
            }
            Ok(1) => {
                verdicts
                    .lock()
                    .expect("verdicts")
                    .insert(case.id.clone(), false);
            }
            Ok(code) => findings.push(format!(
                "{}: is-alive exited {code}\n  {}",
                case.name(),
                ran.describe()
            )),
            Err(why) => findings.push(format!("{}: {why}\n  {}", case.name(), ran.describe())),
        }
    });
    verdicts.into_inner().expect("verdicts")
}

// ---------------------------------------------------------------------------------------------
// Whole-root commands.

/// Checks a `reconcile --format json` report over a whole corpus root.
pub(super) fn judge_reconcile_report(
    fx: &Corpus,
    ran: &Ran,
    dry: bool,
    alive: Option<&HashMap<String, bool>>,
    findings: &Findings,
) {
    let what = format!("reconcile ({})", ran.args);
    match ran.sane() {
        Ok(3) => {}
        Ok(code) => findings.push(format!("{what}: expected exit 3, got {code}")),
        Err(why) => return findings.push(format!("{what}: {why}\n  {}", ran.describe())),
    }
    let Some(json) = ran.json() else {
        return findings.push(format!("{what}: no JSON report\n  {}", ran.describe()));
    };
    let warnings = json["warnings"].to_string();
    let synthesized: &[&str] = if dry {
        &["would_synthesize", "would_retire"]
    } else {
        &[
            "synthesized_failure",
            "synthesized_from_marker",
            "synthesized_from_completion",
            "retired_with_result",
        ]
    };
    for case in &fx.cases {
        let entry = session_entry(&json, &case.id);
        let action = entry.and_then(|e| e["action"].as_str()).unwrap_or("(none)");
        let text = entry.map(|e| e.to_string()).unwrap_or_default();
        let path = case.path_str();
        let problem = match case.class() {
            Class::Blocked => (action != "error" || !text.contains(&path))
                .then(|| "expected an error naming state.toml".to_owned()),
            Class::BadResult => (!matches!(action, "skipped_unreadable_result" | "error")
                || !text.contains(&path))
            .then(|| "expected a skip or error naming result.toml".to_owned()),
            Class::Ended => (entry.is_some()).then(|| "an ended session was acted on".to_owned()),
            Class::Open => {
                let ok_action = action == "skipped_alive" || synthesized.contains(&action);
                let agrees = match alive.and_then(|a| a.get(&case.id)) {
                    Some(true) => action == "skipped_alive",
                    Some(false) => synthesized.contains(&action),
                    None => true,
                };
                let named = !case.must_name() || text.contains(&path) || warnings.contains(&path);
                if !ok_action || !agrees {
                    Some(format!(
                        "unexpected action (is-alive said {:?})",
                        alive.and_then(|a| a.get(&case.id))
                    ))
                } else if !named {
                    Some("expected a warning or reason naming the file".to_owned())
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            findings.push(format!(
                "{what}: {}: {problem}: action {action}, entry {text}",
                case.name()
            ));
        }
    }
    let neighbour = session_entry(&json, &fx.neighbour_dead)
        .and_then(|e| e["action"].as_str())
        .unwrap_or("(none)");
    let want = if dry {
        "would_synthesize"
    } else {
        "synthesized_failure"
    };
    if neighbour != want {
        findings.push(format!(
            "{what}: the healthy dead session next to the broken ones: expected {want}, got {neighbour}"
        ));
    }
    if session_entry(&json, &fx.neighbour_old).is_some() {
        findings.push(format!("{what}: the old retired session was acted on"));
    }
}

/// Each case's session tree, and (project-level files) the file itself, before a command.
pub(super) type Before = HashMap<String, (Tree, Option<Option<Node>>)>;

pub(super) fn before_of(fx: &Corpus) -> Before {
    fx.cases
        .iter()
        .map(|c| {
            let project = c.spec.target.project_level().then(|| node(&c.path));
            (c.id.clone(), (tree(&c.dir), project))
        })
        .collect()
}

/// After a whole-root command: every case's session changed only as `expected` says (by its
/// report entry), its broken file intact (or, caches, replaced whole).
pub(super) fn judge_sessions_after(
    fx: &Corpus,
    before: &Before,
    what: &str,
    read_only: bool,
    expected: impl Fn(&Case) -> Delta,
    findings: &Findings,
) {
    for case in &fx.cases {
        let (tree_before, project_before) = &before[&case.id];
        let d = delta(&case.dir, tree_before);
        let want = expected(case);
        if d != want {
            findings.push(format!(
                "{} after `{what}`: expected {want:?}, found {d:?}",
                case.name()
            ));
        }
        if !case.spec.target.project_level() && broken_file_must_stay(case, &d) {
            let rel = case.spec.target.rel(&case.id);
            if tree_before.get(&rel).cloned() != node(&case.path) {
                findings.push(format!(
                    "{} after `{what}`: the broken file was changed",
                    case.name()
                ));
            }
        }
        if let Some(project_before) = project_before {
            if let Some(why) = judge_project_file(case, project_before, read_only) {
                findings.push(format!("{} after `{what}`: {why}", case.name()));
            }
        }
    }
    fx.outside_intact(findings, what);
}

/// The Delta a real reconcile report promises for each case.
pub(super) fn delta_of_report(json: &Value) -> impl Fn(&Case) -> Delta + '_ {
    move |case: &Case| {
        let action = session_entry(json, &case.id)
            .and_then(|e| e["action"].as_str())
            .unwrap_or("(none)");
        if matches!(
            action,
            "synthesized_failure"
                | "synthesized_from_marker"
                | "synthesized_from_completion"
                | "retired_with_result"
        ) {
            Delta::Finalized
        } else {
            Delta::None
        }
    }
}

/// `csa session list`: every session whose state.toml reads is listed, each one that does not is
/// named on stderr, exit 3.
pub(super) fn judge_list(fx: &Corpus, ran: &Ran, json: bool, findings: &Findings) {
    let what = format!("`csa {}`", ran.args);
    match ran.sane() {
        Ok(3) => {}
        Ok(code) => findings.push(format!("{what}: expected exit 3, got {code}")),
        Err(why) => return findings.push(format!("{what}: {why}\n  {}", ran.describe())),
    }
    let listed: BTreeSet<String> = if json {
        let Some(Value::Array(rows)) = ran.json() else {
            return findings.push(format!("{what}: no JSON array\n  {}", ran.describe()));
        };
        rows.iter()
            .filter_map(|r| r["session_id"].as_str().map(str::to_owned))
            .collect()
    } else {
        ran.out()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    for case in &fx.cases {
        let blocked = case.class() == Class::Blocked;
        if blocked == listed.contains(&case.id) {
            findings.push(format!(
                "{what}: {}: listed {}, state.toml readable {}",
                case.name(),
                listed.contains(&case.id),
                !blocked
            ));
        }
        if blocked && !ran.stderr.contains(&case.path_str()) {
            findings.push(format!(
                "{what}: {}: state.toml not named on stderr",
                case.name()
            ));
        }
    }
    for id in [&fx.neighbour_dead, &fx.neighbour_old] {
        if !listed.contains(id) {
            findings.push(format!("{what}: healthy session {id} not listed"));
        }
    }
}

/// `csa debug check --format json`: the violations are exactly the unparsable state.toml and
/// result.toml files (and `extra`), and the exit code is 1.
pub(super) fn judge_check(fx: &Corpus, ran: &Ran, extra: &BTreeSet<PathBuf>, findings: &Findings) {
    let what = format!("`csa {}`", ran.args);
    match ran.sane() {
        Ok(1) => {}
        Ok(code) => findings.push(format!("{what}: expected exit 1, got {code}")),
        Err(why) => return findings.push(format!("{what}: {why}\n  {}", ran.describe())),
    }
    let Some(Value::Array(violations)) = ran.json() else {
        return findings.push(format!("{what}: no JSON array\n  {}", ran.describe()));
    };
    let found: BTreeSet<PathBuf> = violations
        .iter()
        .filter_map(|v| v["path"].as_str().map(PathBuf::from))
        .collect();
    let mut want: BTreeSet<PathBuf> = extra.clone();
    for case in &fx.cases {
        match case.class() {
            Class::Blocked => want.insert(case.dir.clone()),
            Class::BadResult => want.insert(case.dir.join("result.toml")),
            _ => false,
        };
    }
    for missing in want.difference(&found) {
        findings.push(format!(
            "{what}: no violation reported for {}",
            missing.display()
        ));
    }
    for unexpected in found.difference(&want) {
        let problem = violations
            .iter()
            .find(|v| v["path"].as_str() == unexpected.to_str())
            .map(|v| v["problem"].to_string())
            .unwrap_or_default();
        findings.push(format!(
            "{what}: unexpected violation at {}: {problem}",
            unexpected.display()
        ));
    }
}

/// `csa session clean --older-than 30d --format json`: deletes (or would delete) the old healthy
/// session, reports every unreadable state.toml as an error naming it, keeps every case.
pub(super) fn judge_clean(fx: &Corpus, ran: &Ran, dry: bool, findings: &Findings) {
    let what = format!("`csa {}`", ran.args);
    match ran.sane() {
        Ok(3) => {}
        Ok(code) => findings.push(format!("{what}: expected exit 3, got {code}")),
        Err(why) => return findings.push(format!("{what}: {why}\n  {}", ran.describe())),
    }
    let Some(json) = ran.json() else {
        return findings.push(format!("{what}: no JSON report\n  {}", ran.describe()));
    };
    let want = if dry { "would_delete" } else { "deleted" };
    let old = session_entry(&json, &fx.neighbour_old).and_then(|e| e["action"].as_str());
    if old != Some(want) {
        findings.push(format!(
            "{what}: the old healthy session: expected {want}, got {old:?}"
        ));
    }
    for case in &fx.cases {
        let entry = session_entry(&json, &case.id);
        let text = entry.map(|e| e.to_string()).unwrap_or_default();
        let ok = match case.class() {
            Class::Blocked => {
                entry.and_then(|e| e["action"].as_str()) == Some("error")
                    && text.contains(&case.path_str())
            }
            _ => entry.is_none(),
        };
        if !ok {
            findings.push(format!(
                "{what}: {}: unexpected entry {text:?}",
                case.name()
            ));
        }
    }
}
