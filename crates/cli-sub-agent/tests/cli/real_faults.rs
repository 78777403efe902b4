//! Real faults, not injected ones (issue 5): a state root on a full filesystem and on a
//! read-only one. Both need a small tmpfs mounted over the state root, which needs root (or
//! CAP_SYS_ADMIN); where `mount` is refused the tests print why and skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Session, TestEnv};

/// A 1 MiB tmpfs mounted over a test's state root, unmounted on drop.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path) -> Option<Tmpfs> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { at: at.to_owned() }),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn remount_read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.at)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "remount ro: {out:?}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).output();
    }
}

/// A test env whose state root is a fresh tmpfs holding one Active session with a dead owner.
fn env_on_tmpfs() -> Option<(TestEnv, Tmpfs, Session)> {
    let env = TestEnv::new();
    let tmpfs = Tmpfs::mount(&env.state_root)?;
    fs_err::create_dir_all(&env.sessions_dir).expect("mkdir sessions");
    let session = env.session();
    let mut child = Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("reap");
    session.daemon_pid(dead, 1);
    Some((env, tmpfs, session))
}

/// Fills the filesystem holding `dir` until a write fails with ENOSPC; returns the filler.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut file = fs_err::File::create(&filler).expect("create filler");
    let chunk = vec![0u8; 64 << 10];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_all()) {
            Ok(()) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    filler
}

#[test]
fn a_full_filesystem_fails_reconcile_with_the_path_and_leaves_the_session_as_it_was() {
    let Some((env, _tmpfs, session)) = env_on_tmpfs() else {
        return;
    };
    let state_before = session.read("state.toml");
    let filler = fill(&env.state_root);

    let out = env.run(&["session", "reconcile"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(
        text.contains(&session.dir.display().to_string()),
        "names the path: {text}"
    );
    assert_eq!(session.read("state.toml"), state_before);
    assert!(!session.path("result.toml").exists());

    // Space again: the next reconcile finishes the session.
    fs_err::remove_file(filler).expect("remove filler");
    let (code, _) = env.reconcile_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(session.phase(), "retired");
    let check = env.run(&["debug", "check"]);
    assert!(check.status.success(), "{check:?}");
}

#[test]
fn a_read_only_filesystem_fails_reconcile_with_the_path_and_changes_nothing() {
    let Some((env, tmpfs, session)) = env_on_tmpfs() else {
        return;
    };
    let before = env.tree_snapshot();
    tmpfs.remount_read_only();

    let out = env.run(&["session", "reconcile"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(
        text.contains(&env.state_root.display().to_string()),
        "{text}"
    );
    assert_eq!(env.tree_snapshot(), before);
    assert_eq!(session.phase(), "active");
}

/// Regression (issue 11, case 8): errors repeated their path, as in "failed to write `X`: No
/// space left on device (os error 28) at path "X"": the temp file's own writer (tempfile) named
/// it, and csa's message named it again.
#[test]
fn a_full_filesystem_error_names_its_path_once() {
    let Some((env, _tmpfs, _session)) = env_on_tmpfs() else {
        return;
    };
    let _filler = fill(&env.state_root);
    let out = env.run(&["session", "reconcile"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let root = env.state_root.display().to_string();
    let naming: Vec<&str> = text.lines().filter(|l| l.contains(&root)).collect();
    assert!(!naming.is_empty(), "the error names its path: {text}");
    for line in naming {
        assert_eq!(line.matches(&root).count(), 1, "one path per error: {line}");
        assert!(!line.contains("at path"), "{line}");
    }
}

/// Regression (issue 11, case 8): `csa doctor` said "no problems" on a read-only state root, on
/// which `run`, `delete` and `clean` all exit 3.
#[test]
fn doctor_reports_a_read_only_state_root_with_its_fix() {
    let Some((env, tmpfs, _session)) = env_on_tmpfs() else {
        return;
    };
    let out = env.run(&["doctor", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "writable: {out:?}");
    tmpfs.remount_read_only();
    let out = env.run(&["doctor", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let problems = report["problems"].as_array().expect("problems");
    assert_eq!(
        problems.len(),
        1,
        "one problem for the whole root: {report}"
    );
    assert_eq!(problems[0]["check"], "writable");
    assert_eq!(
        problems[0]["path"].as_str(),
        Some(env.state_root.display().to_string().as_str())
    );
    assert!(
        problems[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("read-only filesystem")),
        "{report}"
    );
    assert!(
        problems[0]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("findmnt -T") && h.contains("--state-dir")),
        "{report}"
    );
    // What doctor warns about: the commands that write fail there.
    let run = env.run(&["run", "--", "true"]);
    assert_eq!(run.status.code(), Some(3), "{run:?}");
}

/// Case 3 of the store issue. Regression: with the state root on a 1 MiB filesystem, an agent
/// that exited 0 after writing 3 MB made csa print 259 identical `WARN cannot write the session
/// log` lines without a path and exit 3, and once space was freed, reconcile recorded a
/// synthetic failure: the real exit code 0 was gone. Now the log's failure is said once, with its
/// path; the turn's outcome is kept in its turn-end record (reserved before the agent started),
/// and reconcile finalizes the session from it with the agent's real status.
#[test]
fn a_full_disk_does_not_turn_a_success_into_a_failure() {
    let env = TestEnv::new();
    let Some(_tmpfs) = Tmpfs::mount(&env.state_root) else {
        return;
    };
    fs_err::create_dir_all(&env.sessions_dir).expect("mkdir sessions");
    // Leave room for the session's files, not for the agent's output.
    let filler = env.state_root.join("filler");
    fs_err::write(&filler, vec![0u8; 640 << 10]).expect("filler");
    let out = env.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done; exit 0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot write the session log"))
        .collect();
    assert_eq!(warnings.len(), 1, "said once: {stderr}");
    assert!(
        warnings[0].contains("output.log"),
        "with its path: {stderr}"
    );
    assert!(
        stderr.contains("could not be finalized") && stderr.contains("turn-end.toml"),
        "{stderr}"
    );
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("csa: session "))
        .expect("banner")
        .to_owned();
    // Space comes back; the session is reconciled once its processes are gone and its output
    // is old (the logs were written just now).
    fs_err::remove_file(&filler).expect("free space");
    crate::harness::backdate_tree(&env.sessions_dir.join(&id), 120);
    let (code, json) = env.reconcile_json(&[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        crate::harness::actions(&json),
        [(id.clone(), "finalized_from_turn_end".to_owned())]
    );
    let dir = env.sessions_dir.join(&id);
    let result: toml::Table =
        toml::from_str(&fs_err::read_to_string(dir.join("result.toml")).expect("result"))
            .expect("toml");
    assert_eq!(result["status"].as_str(), Some("success"), "{result:?}");
    assert_eq!(result["exit_code"].as_integer(), Some(0));
    let state: toml::Table =
        toml::from_str(&fs_err::read_to_string(dir.join("state.toml")).expect("state"))
            .expect("toml");
    assert_eq!(state["phase"].as_str(), Some("available"));
    assert!(!dir.join("turn-end.toml").exists());
}

/// The same outcome by a fail point on any filesystem: the result's publication fails with
/// ENOSPC at the end of the turn.
#[cfg(feature = "failpoints")]
#[test]
fn a_finalize_failing_with_enospc_keeps_the_outcome_for_reconcile() {
    let env = TestEnv::new();
    let out = env
        .csa(&["run", "--", "sh", "-c", "echo all good; exit 0"])
        .env("FAILPOINTS", "finalize::publish_result=return(enospc)")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("csa: session "))
        .expect("banner")
        .to_owned();
    crate::harness::backdate_tree(&env.sessions_dir.join(&id), 120);
    let (_, json) = env.reconcile_json(&[]);
    assert_eq!(
        crate::harness::actions(&json),
        [(id.clone(), "finalized_from_turn_end".to_owned())]
    );
    let wait = env.run(&["session", "wait", &id, "--format", "json"]);
    assert_eq!(wait.status.code(), Some(0), "{wait:?}");
    let json: serde_json::Value = serde_json::from_slice(&wait.stdout).expect("json");
    assert_eq!(json["status"], "success");
    assert_eq!(json["exit_code"], 0);
}
