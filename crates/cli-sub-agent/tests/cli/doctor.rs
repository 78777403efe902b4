//! `csa doctor` (issue 6): each problem it knows is arranged for real, and the test checks the
//! message, the hint and the exit code (1); where the hint is a command, the test runs it and
//! doctor then finds nothing (exit 0). Doctor itself writes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use filetime::FileTime;

use crate::harness::TestEnv;

/// Runs `csa doctor ARGS…`; returns the exit code and stdout.
fn doctor(env: &TestEnv, args: &[&str]) -> (i32, String) {
    let mut full = vec!["doctor"];
    full.extend_from_slice(args);
    let out = env.run(&full);
    assert!(
        out.stderr.is_empty(),
        "diagnostics only on stderr, and there are none: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf8"),
    )
}

/// `csa doctor --format json`: the exit code and the report.
fn doctor_json(env: &TestEnv) -> (i32, serde_json::Value) {
    let (code, out) = doctor(env, &["--format", "json"]);
    (code, serde_json::from_str(&out).expect("JSON report"))
}

/// The report's problems as (check, hint) pairs.
fn problems(report: &serde_json::Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["check"].as_str().expect("check").to_owned(),
                p["hint"].as_str().expect("hint").to_owned(),
            )
        })
        .collect()
}

/// Runs a hint as the user would paste it, with `csa` being the binary under test.
fn run_hint(env: &TestEnv, hint: &str) {
    let bin = assert_cmd::cargo::cargo_bin!("csa");
    let bin_dir = bin.parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-c", hint])
        .env("PATH", path)
        .current_dir(&env.project)
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    assert!(out.status.success(), "hint `{hint}` failed: {out:?}");
}

fn chmod(path: &Path, mode: u32) {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn set_mtime(path: &Path, ago: Duration) {
    let when = FileTime::from_system_time(SystemTime::now() - ago);
    filetime::set_file_mtime(path, when).expect("set mtime");
}

#[test]
fn a_clean_root_has_no_problems() {
    let env = TestEnv::new();
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 0, "{text}");
    let text = text.replace(&env.state_root.display().to_string(), "[STATE]");
    // One snapshot per process backend (.ci/run runs the suite with each).
    let portable = csa_process::backend::current() == csa_process::Backend::Portable;
    insta::with_settings!({filters => vec![
        (r"csa \d+\.\d+\.\d+ \([^)]*\)", "csa [VERSION]"),
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[BOOT_ID]"),
        (r"\d{10} \(Unix time\)", "[BOOT_TIME] (Unix time)"),
        // Why the backend was chosen depends on CSA_PROCESS_BACKEND (tested on its own).
        (r"(?m)^(backend +\w+) \(.*\)$", "$1 ([WHY])"),
    ]}, {
        if portable {
            insta::assert_snapshot!("a_clean_root_has_no_problems_portable", text);
        } else {
            insta::assert_snapshot!(text);
        }
    });
    let (code, report) = doctor_json(&env);
    assert_eq!(code, 0);
    assert_eq!(report["problems"], serde_json::json!([]));
    if portable {
        assert_eq!(report["process_backend"]["name"], "portable");
        assert!(report["boot_id"].is_null());
        assert!(report["boot_time"].as_u64().is_some(), "{report}");
    } else {
        assert_eq!(report["process_backend"]["name"], "procfs");
        assert_eq!(report["proc"]["available"], true);
        assert_eq!(
            report["boot_id"].as_str().map(str::len),
            Some(36),
            "{report}"
        );
    }
    let roots = report["roots"].as_array().expect("roots");
    assert_eq!(roots.len(), 1, "--state-dir is the only root");
    assert_eq!(roots[0]["path"], env.state_root.display().to_string());
    assert_eq!(roots[0]["kind"], "primary");
    assert_eq!(roots[0]["mode"], "0700");
    assert_eq!(roots[0]["projects"], 1);
}

/// `csa doctor` says which process backend is in use and why, in text and JSON, and a
/// `CSA_PROCESS_BACKEND` it cannot follow is a problem with its fix.
#[test]
fn doctor_reports_the_process_backend_and_why() {
    let env = TestEnv::new();
    let run = |value: &str, format: &str| {
        let out = env
            .csa(&["doctor", "--format", format])
            .env("CSA_PROCESS_BACKEND", value)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8(out.stdout).expect("utf8"),
        )
    };
    let (code, text) = run("portable", "text");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("\nbackend        portable (CSA_PROCESS_BACKEND=portable)\n/proc          "),
        "{text}"
    );
    assert!(text.contains("\nboot time      "), "{text}");
    let (_, json) = run("portable", "json");
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(
        report["process_backend"],
        serde_json::json!({"name": "portable", "reason": "CSA_PROCESS_BACKEND=portable", "problem": null})
    );
    if !std::path::Path::new("/proc/self/stat").exists() {
        eprintln!("skipped: no /proc here: the procfs backend cannot be chosen");
        return;
    }
    let (code, text) = run("procfs", "text");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("\nbackend        procfs (CSA_PROCESS_BACKEND=procfs)\n/proc          available\nboot id        "),
        "{text}"
    );
    let (code, json) = run("kqueue", "json");
    assert_eq!(code, Some(1), "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(report["process_backend"]["name"], "procfs");
    assert_eq!(
        report["process_backend"]["reason"],
        "/proc/self/stat is readable"
    );
    assert_eq!(
        problems(&report),
        [(
            "process_backend".to_owned(),
            "set CSA_PROCESS_BACKEND to procfs (Linux, with /proc mounted) or portable, or unset it"
                .to_owned()
        )]
    );
}

#[test]
fn a_root_others_can_write_is_refused_and_chmod_fixes_it() {
    let env = TestEnv::new();
    chmod(&env.state_root, 0o777);
    let root = env.state_root.display().to_string();
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "problem: {root}: is writable by group or others (mode 0777): csa refuses to use it\nhint: chmod 700 {root}\n"
        )),
        "{text}"
    );
    assert!(text.ends_with("doctor: 1 problem\n"), "{text}");
    let (_, report) = doctor_json(&env);
    let found = problems(&report);
    assert_eq!(
        found,
        [("permissions".to_owned(), format!("chmod 700 {root}"))]
    );
    // The same rule every other command enforces (exit 3 there).
    assert_eq!(env.run(&["session", "list"]).status.code(), Some(3));
    run_hint(&env, &found[0].1);
    assert_eq!(doctor(&env, &[]).0, 0);
}

#[test]
fn a_root_its_owner_cannot_write_is_a_problem() {
    let env = TestEnv::new();
    chmod(&env.state_root, 0o500);
    let (code, text) = doctor(&env, &[]);
    chmod(&env.state_root, 0o700);
    assert_eq!(code, 1, "{text}");
    let root = env.state_root.display();
    assert!(
        text.contains(&format!(
            "problem: {root}: its owner cannot read, write and search it (mode 0500): csa cannot create or update sessions there\nhint: chmod 700 {root}\n"
        )),
        "{text}"
    );
}

#[test]
fn project_and_session_directories_follow_the_rules_commands_enforce() {
    let env = TestEnv::new();
    chmod(&env.sessions_dir, 0o777);
    let elsewhere = env.project.join("elsewhere");
    fs_err::create_dir(&elsewhere).expect("mkdir");
    let link = env.sessions_dir.join(ulid::Ulid::new().to_string());
    std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
    let (code, report) = doctor_json(&env);
    assert_eq!(code, 1);
    let sessions = env.sessions_dir.display().to_string();
    let link_text = link.display().to_string();
    let found = problems(&report);
    assert_eq!(
        found,
        [
            ("permissions".to_owned(), format!("chmod 700 {sessions}")),
            (
                "permissions".to_owned(),
                format!("csa never writes through a symbolic link: remove the link (rm {link_text}) or move the real directory into its place")
            ),
        ]
    );
    let messages: Vec<&str> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["message"].as_str().expect("message"))
        .collect();
    assert_eq!(
        messages,
        [
            format!(
                "{sessions}: is writable by group or others (mode 0777): csa refuses to use it"
            ),
            format!("{link_text}: is a symbolic link, not a directory: csa refuses to use it"),
        ]
    );
    run_hint(&env, &found[0].1);
    run_hint(&env, &format!("rm {link_text}"));
    assert_eq!(doctor(&env, &[]).0, 0);
}

#[test]
fn a_state_toml_that_does_not_parse_is_named() {
    let env = TestEnv::new();
    let session = env.session();
    session.write("state.toml", "phase = [unclosed\n");
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 1, "{text}");
    let state = session.path("state.toml");
    assert!(
        text.contains(&format!(
            "problem: {}: invalid state.toml: ",
            state.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "hint: csa never rewrites a file it cannot parse: repair or remove it by hand"
        ),
        "{text}"
    );
    let (_, report) = doctor_json(&env);
    assert_eq!(report["problems"][0]["check"], "session_state");
    assert_eq!(
        report["problems"][0]["path"],
        session.dir.display().to_string()
    );
}

/// Regression of the record's documented limitation (csa-session `active`): a session moved
/// from an ended phase back to `active` in place, by another writer, while the record's scan
/// fingerprint is current. A plain reconcile trusts the record and misses it; doctor says so,
/// and its hint (`--full`) repairs the record.
#[test]
fn an_active_session_the_trusted_record_lacks_is_found_and_the_hint_repairs_it() {
    let env = TestEnv::new();
    let session = env.session();
    let active = String::from_utf8(session.read("state.toml")).expect("utf8");
    session.write(
        "state.toml",
        active.replace("phase = \"active\"", "phase = \"retired\""),
    );
    // The first reconcile creates `.csa-active/` (which changes sessions/); the second, over
    // a settled sessions/, records its fingerprint: from then on reconcile trusts the record.
    assert!(env.run(&["session", "reconcile"]).status.success());
    set_mtime(&env.sessions_dir, Duration::from_secs(120));
    assert!(env.run(&["session", "reconcile"]).status.success());
    assert_eq!(doctor(&env, &[]).0, 0, "ended sessions need no entry");

    session.write("state.toml", &active);
    let before = env.tree_snapshot();
    let (code, report) = doctor_json(&env);
    assert_eq!(env.tree_snapshot(), before, "doctor writes nothing");
    assert_eq!(code, 1, "{report}");
    let root = env.state_root.display();
    let hint = format!("csa --state-dir {root} session reconcile --full --all-projects");
    assert_eq!(
        problems(&report),
        [("missing_record_entry".to_owned(), hint.clone())]
    );
    assert_eq!(
        report["problems"][0]["message"],
        format!(
            "session {} is active but missing from the active-session record, which reconcile trusts: `csa session reconcile` would not look at it",
            session.id
        )
    );
    assert_eq!(report["roots"][0]["active_sessions"], 1);
    assert_eq!(report["roots"][0]["record_entries"], 0);
    // The problem is real: a plain reconcile does not see the session.
    let (_, plain) = env.reconcile_json(&["--dry-run"]);
    assert_eq!(plain["sessions"], serde_json::json!([]), "{plain}");

    run_hint(&env, &hint);
    assert_eq!(doctor(&env, &[]).0, 0);
    assert_eq!(session.phase(), "retired", "the dead session was finalized");
}

#[test]
fn an_old_record_entry_without_its_session_is_stale_a_young_one_is_a_session_being_created() {
    let env = TestEnv::new();
    let record = env.sessions_dir.join(".csa-active");
    fs_err::create_dir(&record).expect("mkdir");
    chmod(&record, 0o700);
    let old = ulid::Ulid::new().to_string();
    let young = ulid::Ulid::new().to_string();
    for id in [&old, &young] {
        fs_err::write(record.join(id), "").expect("entry");
    }
    set_mtime(&record.join(&old), Duration::from_secs(2 * 3600));
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 1, "{text}");
    let root = env.state_root.display();
    let hint = format!("csa --state-dir {root} session reconcile --all-projects");
    assert!(
        text.contains(&format!(
            "problem: the active-session record names session {old}, whose directory is gone\nhint: {hint}\n"
        )),
        "{text}"
    );
    assert!(!text.contains(&young), "{text}");
    assert!(text.contains("2 record entries"), "{text}");
    run_hint(&env, &hint);
    assert_eq!(doctor(&env, &[]).0, 0);
    assert!(!record.join(&old).exists());
    assert!(record.join(&young).exists());
}

/// `csa` with a cleared environment, `XDG_STATE_HOME` (when given), a relative `HOME` (which
/// names no state root: without it, the password database's home directory would be used) and
/// no `--state-dir`.
fn csa_xdg(env: &TestEnv, xdg: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("csa"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "not/absolute")
        .envs(std::env::var_os("CSA_PROCESS_BACKEND").map(|v| ("CSA_PROCESS_BACKEND", v)))
        .current_dir(&env.project)
        .args(args)
        .stdin(Stdio::null());
    if let Some(xdg) = xdg {
        cmd.env("XDG_STATE_HOME", xdg);
    }
    cmd.output().expect("run csa")
}

#[test]
fn the_legacy_root_is_reported_when_present_and_is_not_a_problem() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: XDG_STATE_HOME names the state root on Linux only (docs/format.md)");
        return;
    }
    let env = TestEnv::new();
    let xdg = env.project.join("xdg");
    fs_err::create_dir(&xdg).expect("mkdir");
    let out = csa_xdg(&env, Some(&xdg), &["doctor"]);
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(out.status.code(), Some(0), "{text}");
    let primary = xdg.join("cli-sub-agent");
    let legacy = xdg.join("csa");
    assert!(
        text.contains(&format!(
            "state root     {}: does not exist yet (the first `csa run` creates it)\nlegacy root    {}: absent\n",
            primary.display(),
            legacy.display()
        )),
        "{text}"
    );
    fs_err::create_dir_all(legacy.join("home/u/p/sessions")).expect("mkdir");
    for dir in [
        &legacy,
        &legacy.join("home"),
        &legacy.join("home/u"),
        &legacy.join("home/u/p"),
        &legacy.join("home/u/p/sessions"),
    ] {
        chmod(dir, 0o700);
    }
    let out = csa_xdg(&env, Some(&xdg), &["doctor"]);
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "legacy root    {} (mode 0700): 1 project, 0 sessions, 0 active, 0 record entries\n",
            legacy.display()
        )),
        "{text}"
    );
    let out = csa_xdg(&env, Some(&xdg), &["doctor", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["roots"][1]["kind"], "legacy");
    assert_eq!(report["roots"][1]["exists"], true);
    assert_eq!(report["roots"][1]["path"], legacy.display().to_string());
}

#[test]
fn no_state_root_at_all_is_a_problem_with_the_fix() {
    let env = TestEnv::new();
    let out = csa_xdg(&env, None, &["doctor", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        problems(&report),
        [(
            "state_root".to_owned(),
            "set HOME (or XDG_STATE_HOME to an absolute path), or pass --state-dir DIR".to_owned()
        )]
    );
    assert_eq!(report["roots"], serde_json::json!([]));
}

/// `/proc` and the boot id cannot be taken away from a test process portably: the fail points
/// `doctor::proc` and `doctor::boot_id` stand in for their reads failing.
#[cfg(feature = "failpoints")]
#[test]
fn without_proc_or_boot_id_doctor_says_what_csa_loses() {
    let env = TestEnv::new();
    if csa_process::backend::current() == csa_process::Backend::Portable {
        // The portable backend does not use /proc; its own read stands in.
        let out = env
            .csa(&["doctor"])
            .env("FAILPOINTS", "doctor::portable=return;doctor::proc=return")
            .output()
            .expect("run");
        let text = String::from_utf8(out.stdout).expect("utf8");
        assert_eq!(out.status.code(), Some(1), "{text}");
        for expected in [
            "/proc          not used\n",
            "problem: the portable process backend cannot read this process (sysinfo lists no process on this platform (injected)): every session counts as alive, so reconcile finalizes none\n",
            "doctor: 1 problem\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
        return;
    }
    let out = env
        .csa(&["doctor"])
        .env("FAILPOINTS", "doctor::proc=return;doctor::boot_id=return")
        .output()
        .expect("run");
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "/proc          unavailable: /proc/self/stat: No such file or directory (injected)\n",
        "boot id        unknown\n",
        "problem: the liveness probes cannot read /proc (/proc/self/stat: No such file or directory (injected)): every session counts as alive, so reconcile finalizes none\nhint: run csa where /proc is mounted (mount -t proc proc /proc), on Linux\n",
        "problem: cannot read the boot id (/proc/sys/kernel/random/boot_id: No such file or directory (injected)): a session from before a reboot is not recognized as dead by its boot\nhint: make /proc/sys/kernel/random/boot_id readable (mount /proc)\n",
        "doctor: 2 problems\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
    let out = env
        .csa(&["doctor", "--format", "json"])
        .env("FAILPOINTS", "doctor::proc=return")
        .output()
        .expect("run");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["proc"]["available"], false);
    assert_eq!(report["problems"][0]["check"], "proc");
    assert_eq!(report["problems"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_record_directory_that_is_a_file_is_one_problem_and_its_hint_fixes_it() {
    let env = TestEnv::new();
    let record = env.sessions_dir.join(".csa-active");
    fs_err::write(&record, "not a directory").expect("write");
    let (code, report) = doctor_json(&env);
    assert_eq!(code, 1, "{report}");
    let path = record.display();
    assert_eq!(
        problems(&report),
        [(
            "permissions".to_owned(),
            format!("move it aside (mv {path} {path}.bak); csa recreates the directory")
        )]
    );
    run_hint(&env, &format!("mv {path} {path}.bak"));
    assert_eq!(doctor(&env, &[]).0, 0);
    // As promised, csa recreates it (a run records its session there before it starts).
    assert!(env.run(&["run", "--", "true"]).status.success());
    assert!(record.is_dir());
    assert_eq!(doctor(&env, &[]).0, 0);
}

/// The same without a fail point, where the machine allows it: csa run in a mount namespace
/// (`unshare -r -m`) whose `/proc` is an empty tmpfs. Skipped, saying so, where `unshare` is
/// missing or namespaces are not allowed.
#[test]
fn with_an_empty_proc_doctor_reports_proc_and_boot_id() {
    let env = TestEnv::new();
    let probe = Command::new("unshare")
        .args(["-r", "-m", "sh", "-c", "mount -t tmpfs none /proc"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot make a mount namespace here (unshare -r -m)");
        return;
    }
    let out = Command::new("unshare")
        .args([
            "-r",
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs none /proc && exec \"$0\" \"$@\"",
        ])
        .arg(assert_cmd::cargo::cargo_bin!("csa"))
        .arg("--state-dir")
        .arg(&env.state_root)
        .args(["doctor", "--format", "json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(&env.project)
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["proc"]["available"], false);
    assert!(report["boot_id"].is_null());
    // Without /proc/self/stat the portable backend is chosen, and on Linux it cannot read
    // processes either (sysinfo reads /proc): said plainly, with the boot time it lacks.
    assert_eq!(report["process_backend"]["name"], "portable");
    assert!(
        report["process_backend"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("/proc/self/stat cannot be read")),
        "{report}"
    );
    assert!(report["boot_time"].is_null());
    let checks: Vec<&str> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["check"].as_str().expect("check"))
        .collect();
    assert_eq!(checks, ["process_backend", "boot_id"]);
}
