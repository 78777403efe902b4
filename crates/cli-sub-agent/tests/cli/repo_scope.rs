//! `--repo` (issue 12): the whole git repository of the current directory, for `list`,
//! `reconcile` and `clean`.

use crate::harness::{Agent, TestEnv};

/// Regression: `csa run --detach --cd sub -- sleep …` then the hooks (`reconcile`, `list
/// --running --check`) at the repository's top saw nothing: sessions of `sub/` belong to
/// another project, which only `--nested` covered. `--repo` covers the top level and every
/// directory below it, from anywhere in the repository; a dead agent in `sub/` is reconciled.
#[test]
fn repo_scope_covers_every_directory_of_the_repository() {
    let env = TestEnv::new();
    let top = env.project.clone();
    fs_err::create_dir_all(top.join(".git")).expect("mkdir .git");
    fs_err::create_dir_all(top.join("sub/deeper")).expect("mkdir sub");
    let run = env.run(&["run", "--detach", "--cd", "sub", "sleep", "1000"]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let id = String::from_utf8_lossy(&run.stdout).trim().to_owned();

    // The top directory's own sessions: none.
    let out = env.run(&["session", "list", "--running", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // The repository's: the agent in sub/, seen from the top and from below.
    for cd in [".", "sub/deeper", "sub"] {
        let out = env.run(&[
            "session",
            "list",
            "--repo",
            "--cd",
            cd,
            "--running",
            "--check",
        ]);
        assert_eq!(out.status.code(), Some(1), "{cd}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("session {id} is running")),
            "{cd}: {out:?}"
        );
    }

    // reconcile --repo finalizes a dead agent's session in sub/: an orphan in upstream's
    // format whose daemon.pid names a process that is gone, moved into sub/'s project.
    let kill = env.run(&["session", "kill", &id]);
    assert_eq!(kill.status.code(), Some(0), "{kill:?}");
    let sub_sessions = env
        .sessions_dir
        .parent()
        .expect("key dir")
        .join("sub/sessions");
    let orphan = env.session();
    let mut dead = Agent::spawn();
    orphan.daemon_pid(dead.pid(), dead.ticks());
    dead.kill9();
    let moved = sub_sessions.join(&orphan.id);
    fs_err::rename(&orphan.dir, &moved).expect("move into sub/");
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(
        (code, json["counts"]["synthesized"].as_u64()),
        (0, Some(0)),
        "{json}"
    );
    let (code, json) = env.reconcile_json(&["--repo", "--cd", "sub/deeper"]);
    assert_eq!(
        (code, json["counts"]["synthesized"].as_u64()),
        (0, Some(1)),
        "{json}"
    );
    let state = fs_err::read_to_string(moved.join("state.toml")).expect("state");
    assert!(state.contains("phase = \"retired\""), "{state}");

    // Outside a git work tree, --repo is a usage error that says so.
    fs_err::remove_dir(top.join(".git")).expect("rm .git");
    let out = env.run(&["session", "list", "--repo"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not in a git work tree"),
        "{out:?}"
    );
}
