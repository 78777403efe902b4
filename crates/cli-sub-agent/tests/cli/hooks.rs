//! The pre-commit hooks (`.pre-commit-hooks.yaml`, docs/hooks.md) installed with the real
//! pre-commit framework from this checkout (issue 6): in a real git repository, `git commit`
//! passes while no agent runs there, fails naming the session while a `csa run` agent runs in
//! the repository's directory, and passes again once it has ended.
//!
//! Needs `pre-commit` and `git` on PATH. `.ci/run` installs pre-commit and sets
//! `CSA_REQUIRE_PRE_COMMIT=1`, which turns a missing tool into a failure; elsewhere the test
//! prints why it skips. The hooks come from the checkout's committed HEAD (pre-commit clones a
//! `rev`), so a change to `.pre-commit-hooks.yaml` is tested once committed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::TestEnv;

fn tool_available(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The workspace root: the checkout the hooks are installed from.
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
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
}

impl Repo<'_> {
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
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Stages a change and tries to commit it; returns the output of `git commit`.
    fn commit(&self, n: u32) -> Output {
        fs_err::write(self.dir.join("file.txt"), format!("change {n}\n")).expect("write");
        self.ok("git", &["add", "file.txt"]);
        self.cmd("git", &["commit", "-q", "-m", &format!("change {n}")])
            .output()
            .expect("git commit")
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn pre_commit_blocks_a_commit_while_an_agent_runs_in_the_repository() {
    for tool in ["git", "pre-commit"] {
        if !tool_available(tool) {
            assert!(
                std::env::var_os("CSA_REQUIRE_PRE_COMMIT").is_none(),
                "{tool} is required here (CSA_REQUIRE_PRE_COMMIT is set) but not on PATH"
            );
            eprintln!("skipped: {tool} is not on PATH (pip install pre-commit)");
            return;
        }
    }
    let env = TestEnv::new();
    let repo = Repo {
        env: &env,
        dir: env.project.join("repo"),
        cache: env.project.join("pre-commit-cache"),
    };
    fs_err::create_dir_all(&repo.dir).expect("mkdir repo");
    fs_err::create_dir_all(env.project.join("home")).expect("mkdir home");
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
    repo.ok("git", &["init", "-q"]);
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

    // Idle: both hooks pass.
    let out = repo.commit(1);
    assert!(out.status.success(), "idle commit: {}", text(&out));
    let t = text(&out);
    assert!(t.contains("csa reconcile") && t.contains("csa idle"), "{t}");

    // An agent running in the repository's directory blocks the commit, naming the session
    // and the commands to wait for or kill it.
    let run = repo.ok("csa", &["run", "--detach", "--", "sleep", "1000"]);
    let id = String::from_utf8_lossy(&run.stdout).trim().to_owned();
    assert_eq!(id.len(), 26, "session id: {id:?}");
    let out = repo.commit(2);
    let t = text(&out);
    assert!(!out.status.success(), "commit while running: {t}");
    assert!(t.contains(&id), "names the session: {t}");
    assert!(t.contains(&format!("session wait {id}")), "{t}");
    assert!(t.contains(&format!("session kill {id}")), "{t}");

    // Once the agent has ended, committing works again.
    repo.ok("csa", &["session", "kill", &id]);
    let out = repo.commit(3);
    assert!(
        out.status.success(),
        "commit after the agent ended: {}",
        text(&out)
    );
}
