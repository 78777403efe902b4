//! The exit-code contract (issue 6): the table in docs/cli.md, the README's, and the codes
//! `crates/cli-sub-agent/src/exit.rs` defines are the same; real cases drive the real `csa` to
//! every documented code; and no case exits with a code the table does not document.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::harness::{Agent, Session, TestEnv};

/// A row of the exit-code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Code {
    /// A fixed code (0, 1, 2, 3, 4, 5, 75, 124, 126, 127).
    Fixed(u8),
    /// 128 + N: the agent was killed by signal N.
    Signal,
    /// Foreground `csa run`: the agent's own exit code.
    Agent,
}

impl Code {
    /// Whether `code` is what this row documents.
    fn admits(self, code: i32) -> bool {
        match self {
            Code::Fixed(n) => code == i32::from(n),
            Code::Signal => (129..=255).contains(&code),
            Code::Agent => (0..=255).contains(&code),
        }
    }
}

pub(crate) fn read(rel: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    fs_err::read_to_string(root.join(rel)).expect("read")
}

/// The rows of the `## Exit codes` table of a markdown file (a first cell like `126 / 127`
/// names two rows), plus [`Code::Agent`] when the section says foreground `csa run` otherwise
/// exits with the agent's own code.
pub(crate) fn documented(markdown: &str) -> BTreeSet<Code> {
    let start = markdown
        .find("\n## Exit codes\n")
        .expect("an `## Exit codes` section");
    let section = &markdown[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let section = &section[..end];
    let mut rows = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let cell = line.split('|').nth(1).expect("first cell").trim();
        if cell == "Code" || cell.starts_with("---") {
            continue;
        }
        for code in cell.split('/').map(str::trim) {
            rows.insert(match code {
                "128+N" => Code::Signal,
                n => Code::Fixed(n.parse().unwrap_or_else(|_| panic!("row {line:?}"))),
            });
        }
    }
    if section.contains("otherwise exits with the agent's own exit code") {
        rows.insert(Code::Agent);
    }
    rows
}

/// The codes of `Exit::code` in exit.rs, by variant (`Success => 0`, `Signal(n) => 128 + n`,
/// `Agent(code) => code`).
fn exit_rs() -> BTreeMap<String, Code> {
    let source = read("crates/cli-sub-agent/src/exit.rs");
    let body = source
        .split("pub fn code(self) -> u8 {")
        .nth(1)
        .expect("Exit::code");
    let body = &body[..body.find("\n    }\n").expect("end of Exit::code")];
    let mut codes = BTreeMap::new();
    for line in body.lines().map(str::trim) {
        let Some((variant, value)) = line
            .strip_prefix("Exit::")
            .and_then(|l| l.strip_suffix(','))
            .and_then(|l| l.split_once(" => "))
        else {
            continue;
        };
        let name = variant.split('(').next().expect("name").to_owned();
        let code = match (value.parse(), value) {
            (Ok(n), _) => Code::Fixed(n),
            (Err(_), "128u8.saturating_add(n)") => Code::Signal,
            (Err(_), "code") if variant == "Agent(code)" => Code::Agent,
            _ => panic!("unexpected arm {line:?}: teach this test what it means"),
        };
        codes.insert(name, code);
    }
    assert!(codes.len() >= 10, "{codes:?}");
    codes
}

#[test]
fn docs_readme_and_exit_rs_carry_the_same_table() {
    let docs = documented(&read("docs/cli.md"));
    let code: BTreeSet<Code> = exit_rs().into_values().collect();
    assert_eq!(docs, code, "docs/cli.md and exit.rs differ");
    // The README's summary table has every row but the agent's own code.
    let readme = documented(&read("README.md"));
    let without_agent: BTreeSet<Code> = code.into_iter().filter(|c| *c != Code::Agent).collect();
    assert_eq!(
        readme
            .into_iter()
            .filter(|c| *c != Code::Agent)
            .collect::<BTreeSet<_>>(),
        without_agent,
        "README.md and exit.rs differ"
    );
}

/// One real invocation: what it is, the row it must produce, and the code it exited with.
struct Case {
    what: String,
    row: Code,
    code: i32,
}

/// Collects cases.
#[derive(Default)]
struct Cases(Vec<Case>);

impl Cases {
    fn run(&mut self, env: &TestEnv, args: &[&str], row: Code) {
        let out = env.run(args);
        self.0.push(Case {
            what: format!("csa {}", args.join(" ")),
            row,
            code: out
                .status
                .code()
                .unwrap_or_else(|| panic!("{args:?}: {out:?}")),
        });
    }
}

fn write_result(s: &Session, status: &str, exit_code: i32) {
    s.write(
        "result.toml",
        format!(
            "status = \"{status}\"\nexit_code = {exit_code}\nsummary = \"x\"\ntool = \"codex\"\nstarted_at = \"2026-11-21T06:33:50Z\"\ncompleted_at = \"2026-11-21T06:34:50Z\"\n"
        ),
    );
}

#[test]
fn every_documented_code_is_produced_and_no_other() {
    let mut cases = Cases::default();
    let ok = Code::Fixed(0);
    let negative = Code::Fixed(1);
    let usage = Code::Fixed(2);

    let env = TestEnv::new();
    cases.run(&env, &["--version"], ok);
    cases.run(&env, &["--help"], ok);
    cases.run(&env, &["session", "list"], ok);
    cases.run(&env, &["session", "reconcile"], ok);
    cases.run(&env, &["doctor"], ok);
    cases.run(&env, &["completions", "bash"], ok);

    // 1: a dead session, --check finding work, a failed result, a doctor problem.
    let dead = env.session();
    cases.run(&env, &["session", "is-alive", &dead.id], negative);
    cases.run(&env, &["session", "reconcile", "--check"], negative);
    let failed = env.session();
    write_result(&failed, "failure", 1);
    cases.run(&env, &["session", "reconcile", &failed.id], ok);
    cases.run(&env, &["session", "wait", &failed.id], negative);

    // 5: wait on a session whose owner died without a result (a synthetic one follows).
    let orphan = env.session();
    cases.run(&env, &["session", "wait", &orphan.id], Code::Fixed(5));

    // 2: usage.
    cases.run(&env, &["session", "frobnicate"], usage);
    cases.run(&env, &["session", "result", "../x"], usage);
    cases.run(&env, &["session", "clean"], usage);
    cases.run(&env, &["session", "clean", "--older-than", "soon"], usage);
    cases.run(
        &env,
        &["session", "list", "--cd", "/nonexistent/dir"],
        usage,
    );

    // 3: an unparsable result.
    let unparsable = env.session();
    unparsable.write("result.toml", "status = [\n");
    cases.run(&env, &["session", "result", &unparsable.id], Code::Fixed(3));

    // 4: no such session, an ambiguous prefix (what two sessions' ids have in common).
    cases.run(
        &env,
        &["session", "result", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"],
        Code::Fixed(4),
    );
    let common = dead
        .id
        .chars()
        .zip(failed.id.chars())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(common > 0, "ULIDs of one test share their first character");
    cases.run(
        &env,
        &["session", "result", &dead.id[..common]],
        Code::Fixed(4),
    );

    // 75: no result yet; a live session cannot be deleted.
    let agent = Agent::spawn();
    let live = env.session();
    live.daemon_pid(agent.pid(), agent.ticks());
    cases.run(&env, &["session", "result", &live.id], Code::Fixed(75));
    cases.run(&env, &["session", "delete", &live.id], Code::Fixed(75));

    // 124: a live session that does not finish in time.
    cases.run(
        &env,
        &["session", "wait", &live.id, "--timeout", "200ms"],
        Code::Fixed(124),
    );
    drop(agent);

    // Foreground `csa run`: 126, 127, 128 + N and the agent's own code.
    let run_env = TestEnv::new();
    fs_err::write(run_env.project.join("script.sh"), "#!/bin/sh\n").expect("write");
    cases.run(&run_env, &["run", "--", "./script.sh"], Code::Fixed(126));
    cases.run(&run_env, &["run", "--", "/nonexistent"], Code::Fixed(127));
    cases.run(
        &run_env,
        &["run", "--", "sh", "-c", "kill -TERM $$"],
        Code::Signal,
    );
    cases.run(
        &run_env,
        &["run", "--", "sh", "-c", "kill -KILL $$"],
        Code::Signal,
    );
    cases.run(&run_env, &["run", "--", "sh", "-c", "exit 42"], Code::Agent);
    cases.run(&run_env, &["run", "--", "true"], ok);

    // 3 again, and 1 from doctor: a state root csa refuses.
    let refused = TestEnv::new();
    fs_err::set_permissions(
        &refused.state_root,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    cases.run(&refused, &["session", "list"], Code::Fixed(3));
    cases.run(&refused, &["doctor"], negative);

    let documented = documented(&read("docs/cli.md"));
    let mut wrong = Vec::new();
    for case in &cases.0 {
        if !documented.contains(&case.row) {
            wrong.push(format!(
                "{}: its row {:?} is not documented",
                case.what, case.row
            ));
        }
        if !case.row.admits(case.code) {
            wrong.push(format!(
                "{}: exit {}, expected {:?}",
                case.what, case.code, case.row
            ));
        }
        // Only a foreground run may exit with the agent's own code; any other code must be
        // one the table lists.
        let allowed = documented
            .iter()
            .filter(|row| **row != Code::Agent || case.row == Code::Agent)
            .any(|row| row.admits(case.code));
        if !allowed {
            wrong.push(format!("{}: exit {} is undocumented", case.what, case.code));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The exact codes the runs must give, beyond their rows.
    let code_of = |what: &str| {
        cases
            .0
            .iter()
            .find(|c| c.what.ends_with(what))
            .map(|c| c.code)
    };
    assert_eq!(code_of("kill -TERM $$"), Some(128 + 15));
    assert_eq!(code_of("kill -KILL $$"), Some(128 + 9));
    assert_eq!(code_of("exit 42"), Some(42));

    let produced: BTreeSet<Code> = cases.0.iter().map(|c| c.row).collect();
    let missing: Vec<&Code> = documented.difference(&produced).collect();
    assert!(missing.is_empty(), "no case produces {missing:?}");
}
