//! The git hooks of the README and docs/hooks.md, installed as written in real git repositories
//! (issues 6 and 12): the README's pre-commit configuration (extracted from README.md byte for
//! byte) with the real pre-commit framework, the hooks of `.pre-commit-hooks.yaml` from this
//! checkout, and the plain `.git/hooks/pre-commit` scripts. A commit passes while no agent
//! runs in the repository, fails naming the session while a `csa run` agent runs anywhere in
//! it (a subdirectory included), passes when made from inside a csa session (not counting that
//! session and its ancestors), and passes again once the agent has ended.
//!
//! The pre-commit tests need `pre-commit` and `git` on PATH, the plain-hook test `git`.
//! `.ci/run` installs pre-commit and sets `CSA_REQUIRE_PRE_COMMIT=1`, which turns a missing
//! tool into a failure; elsewhere the tests print why they skip. The `.pre-commit-hooks.yaml`
//! test clones the checkout's committed HEAD (pre-commit clones a `rev`), so a change to that
//! file is tested once committed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::TestEnv;

fn tool_available(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether every tool is on PATH; prints why not (or fails under `CSA_REQUIRE_PRE_COMMIT`).
fn tools(names: &[&str]) -> bool {
    for tool in names {
        if !tool_available(tool) {
            assert!(
                std::env::var_os("CSA_REQUIRE_PRE_COMMIT").is_none(),
                "{tool} is required here (CSA_REQUIRE_PRE_COMMIT is set) but not on PATH"
            );
            eprintln!("skipped: {tool} is not on PATH (pip install pre-commit)");
            return false;
        }
    }
    true
}

/// The workspace root: the checkout the hooks are installed from.
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The fenced code blocks of `lang` in the markdown file `rel` (relative to the checkout), each
/// exactly as written between its fences.
fn snippets(rel: &str, lang: &str) -> Vec<String> {
    let text = fs_err::read_to_string(checkout().join(rel)).expect("read markdown");
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```\n").expect("closing fence");
        out.push(body[..end].to_owned());
        rest = &body[end..];
    }
    out
}

/// The one snippet of `lang` in `rel` that starts with `first_line`.
fn snippet(rel: &str, lang: &str, first_line: &str) -> String {
    let found: Vec<String> = snippets(rel, lang)
        .into_iter()
        .filter(|s| s.starts_with(first_line))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{rel}: one {lang} block starting {first_line:?}"
    );
    found.into_iter().next().expect("one")
}

/// `PATH` with the directory of the `csa` under test first, as an installed csa would be.
fn path_with_csa() -> std::ffi::OsString {
    let csa = PathBuf::from(assert_cmd::cargo::cargo_bin!("csa"));
    let mut dirs = vec![csa.parent().expect("bin dir").to_owned()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH")
}

struct Repo<'a> {
    env: &'a TestEnv,
    dir: PathBuf,
    cache: PathBuf,
    commits: std::cell::Cell<u32>,
}

impl<'a> Repo<'a> {
    /// A fresh git repository with a subdirectory `sub`.
    fn new(env: &'a TestEnv) -> Self {
        let repo = Repo {
            env,
            dir: env.project.join("repo"),
            cache: env.project.join("pre-commit-cache"),
            commits: std::cell::Cell::new(0),
        };
        fs_err::create_dir_all(repo.dir.join("sub")).expect("mkdir repo");
        fs_err::create_dir_all(env.project.join("home")).expect("mkdir home");
        repo.ok("git", &["init", "-q"]);
        repo
    }

    fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", path_with_csa())
            .env("HOME", self.env.project.join("home"))
            .env("CSA_STATE_DIR", &self.env.state_root)
            .env("PRE_COMMIT_HOME", &self.cache)
            .env("GIT_AUTHOR_NAME", "test")
            .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
            .env("GIT_COMMITTER_NAME", "test")
            .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
            .env("GIT_CONFIG_NOSYSTEM", "1");
        cmd
    }

    fn ok(&self, program: &str, args: &[&str]) -> Output {
        let out = self.cmd(program, args).output().expect("spawn");
        assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
        out
    }

    /// Stages a change; returns the commit message to use.
    fn stage(&self) -> String {
        let n = self.commits.get() + 1;
        self.commits.set(n);
        fs_err::write(self.dir.join("file.txt"), format!("change {n}\n")).expect("write");
        self.ok("git", &["add", "file.txt"]);
        format!("change {n}")
    }

    /// Stages a change and tries to commit it; returns the output of `git commit`.
    fn commit(&self) -> Output {
        let message = self.stage();
        self.cmd("git", &["commit", "-q", "-m", &message])
            .output()
            .expect("git commit")
    }

    /// Stages a change and commits it from inside a csa session (`csa run [csa_args] git
    /// commit …`): the hooks run with that session's `CSA_SESSION_ID`.
    fn commit_in_session(&self, csa_args: &[&str]) -> Output {
        let message = self.stage();
        let mut args = vec!["run"];
        args.extend_from_slice(csa_args);
        args.extend(["git", "commit", "-q", "-m", &message]);
        self.cmd("csa", &args).output().expect("csa run git commit")
    }

    /// `csa run --detach ARGS… sleep 1000`: a running agent; returns its session id.
    fn agent(&self, csa_args: &[&str]) -> String {
        let mut args = vec!["run", "--detach"];
        args.extend_from_slice(csa_args);
        args.extend(["sleep", "1000"]);
        let run = self.ok("csa", &args);
        let id = String::from_utf8_lossy(&run.stdout).trim().to_owned();
        assert_eq!(id.len(), 26, "session id: {id:?}");
        id
    }

    fn kill(&self, id: &str) {
        self.ok("csa", &["session", "kill", id]);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that `out` (a commit) failed, naming session `id` with the commands that end it.
fn blocked_by(out: &Output, id: &str, what: &str) {
    let t = text(out);
    assert!(!out.status.success(), "{what}: the commit passed: {t}");
    assert!(
        t.contains(&format!("session {id} is running")),
        "{what}: {t}"
    );
    assert!(t.contains(&format!("session wait {id}")), "{what}: {t}");
    assert!(t.contains(&format!("session kill {id}")), "{what}: {t}");
}

fn passed(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", text(out));
}

/// Regression (issue 12): the README's pre-commit snippet named `rev: v0.1.0`, a tag that does
/// not exist, at a placeholder URL, so it failed as written; and its hooks missed an agent
/// started with `csa run --cd sub` (they only looked at the top directory's own sessions).
/// Installs the README's configuration verbatim and commits around agents in the repository.
#[test]
fn readme_pre_commit_config_works_as_written_and_guards_the_whole_repository() {
    if !tools(&["git", "pre-commit"]) {
        return;
    }
    let config = snippet("README.md", "yaml", "repos:\n");
    assert_eq!(
        config,
        snippet("docs/hooks.md", "yaml", "repos:\n"),
        "docs/hooks.md shows the README's configuration"
    );
    let env = TestEnv::new();
    let repo = Repo::new(&env);
    fs_err::write(repo.dir.join(".pre-commit-config.yaml"), &config).expect("write config");
    repo.ok("git", &["add", ".pre-commit-config.yaml"]);
    repo.ok("pre-commit", &["install"]);

    // Idle: both hooks run and pass.
    let out = repo.commit();
    passed(&out, "idle commit");
    let t = text(&out);
    assert!(t.contains("csa reconcile") && t.contains("csa idle"), "{t}");

    // An agent in a subdirectory blocks the commit made at the top.
    let sub = repo.agent(&["--cd", "sub"]);
    blocked_by(&repo.commit(), &sub, "agent in sub/");

    // A commit made from inside a csa session does not count that session, nor the session
    // that started it (`--parent`), but still sees every other running session.
    let parent = repo.agent(&["--allow-concurrent"]);
    let out = repo.commit_in_session(&["--parent", &parent]);
    blocked_by(&out, &sub, "commit in a session while another agent runs");
    repo.kill(&sub);
    let out = repo.commit_in_session(&["--parent", &parent]);
    passed(&out, "commit in a child session of the only running agent");
    // Outside any session, the parent is just a running agent.
    blocked_by(
        &repo.commit(),
        &parent,
        "plain commit while the parent runs",
    );

    // Once the agents have ended, committing works again.
    repo.kill(&parent);
    passed(&repo.commit(), "commit after the agents ended");
}

/// `.pre-commit-hooks.yaml` stays meaningful: its hooks, installed from this checkout by `id`
/// (`repo:` the checkout, `rev:` its HEAD), block a commit while an agent runs in a
/// subdirectory and pass once it has ended.
#[test]
fn pre_commit_hooks_yaml_from_the_checkout_guards_the_whole_repository() {
    if !tools(&["git", "pre-commit"]) {
        return;
    }
    let env = TestEnv::new();
    let repo = Repo::new(&env);
    let checkout = checkout();
    let rev = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&checkout)
            .output()
            .expect("git rev-parse")
            .stdout,
    )
    .expect("utf8")
    .trim()
    .to_owned();
    fs_err::write(
        repo.dir.join(".pre-commit-config.yaml"),
        format!(
            "repos:\n- repo: {}\n  rev: {rev}\n  hooks:\n  - id: csa-reconcile\n  - id: csa-idle\n",
            checkout.display()
        ),
    )
    .expect("write config");
    repo.ok("git", &["add", ".pre-commit-config.yaml"]);
    repo.ok("pre-commit", &["install"]);

    passed(&repo.commit(), "idle commit");
    let id = repo.agent(&["--cd", "sub"]);
    blocked_by(&repo.commit(), &id, "agent in sub/");
    repo.kill(&id);
    passed(&repo.commit(), "commit after the agent ended");
}

/// The plain `.git/hooks/pre-commit` scripts of the README and docs/hooks.md, as written:
/// they also block a commit while an agent runs in a subdirectory (issue 12).
#[test]
fn plain_git_hooks_of_the_docs_work_as_written() {
    if !tools(&["git"]) {
        return;
    }
    for doc in ["README.md", "docs/hooks.md"] {
        let script = snippet(doc, "sh", "#!/bin/sh\n");
        let env = TestEnv::new();
        let repo = Repo::new(&env);
        let hook = repo.dir.join(".git/hooks/pre-commit");
        fs_err::write(&hook, &script).expect("write hook");
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");

        passed(&repo.commit(), doc);
        let id = repo.agent(&["--cd", "sub"]);
        blocked_by(&repo.commit(), &id, doc);
        passed(
            &repo.commit_in_session(&["--cd", "sub", "--allow-concurrent", "--parent", &id]),
            doc,
        );
        repo.kill(&id);
        passed(&repo.commit(), doc);
    }
}
