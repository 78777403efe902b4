//! A session is every process its agent started (issue: "a session is every process its agent
//! started"): regression tests driving the real `csa` on real processes that do what real
//! agents do — fork background work, close inherited descriptors, call setsid, exit their main
//! thread early — under both membership mechanisms (a cgroup v2 where this machine lets csa
//! create one, and the process session plus the `CSA_SESSION_ID` marker).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::TestEnv;

/// The membership mechanisms to run a case under: `process-session` always, `cgroup` where
/// csa can create a session cgroup here (otherwise said once, with the reason).
pub fn mechanisms() -> Vec<&'static str> {
    let mut found = vec!["process-session"];
    match cgroup_unavailable() {
        None => found.push("cgroup"),
        Some(why) => eprintln!("skipped: the cgroup mechanism ({why})"),
    }
    found
}

/// Why csa cannot create a session cgroup on this machine, if it cannot.
fn cgroup_unavailable() -> Option<String> {
    let env = TestEnv::new();
    let out = env
        .csa(&["run", "--", "true"])
        .env("CSA_MEMBERSHIP", "cgroup")
        .output()
        .expect("run csa");
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).trim().to_owned())
}

/// `csa ARGS…` with `CSA_MEMBERSHIP=mech`.
pub fn csa(env: &TestEnv, mech: &str, args: &[&str]) -> Output {
    env.csa(args)
        .env("CSA_MEMBERSHIP", mech)
        .output()
        .expect("run csa")
}

/// Starts `command` with `csa run --detach` and returns the session id.
pub fn detach(env: &TestEnv, mech: &str, command: &[&str]) -> String {
    let mut args = vec!["run", "--detach"];
    if command.first() != Some(&"--wait-for-dir=30s") {
        args.push("--");
    }
    args.extend_from_slice(command);
    let out = csa(env, mech, &args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

pub fn toml_of(path: &Path) -> toml::Table {
    toml::from_str(&fs_err::read_to_string(path).expect("read")).expect("toml")
}

/// The live processes whose environment carries `CSA_SESSION_ID=<id>`.
pub fn marked(id: &str) -> Vec<u32> {
    let entry = format!("CSA_SESSION_ID={id}");
    csa_process::platform::pids()
        .expect("pids")
        .into_iter()
        .filter(|&p| {
            csa_process::probe(p).is_running()
                && csa_process::environ_contains(p, entry.as_bytes()) == Some(true)
        })
        .collect()
}

/// Polls `cond` until it holds, failing after 30 s (a hang guard, not a timing assumption).
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pid recorded for `who` (`supervisor` or `agent`) in the session's membership record,
/// once recorded.
pub fn recorded(env: &TestEnv, id: &str, who: &str) -> u32 {
    let path = env.sessions_dir.join(id).join("membership.toml");
    let mut pid = None;
    eventually(&format!("{who} recorded in {}", path.display()), || {
        pid = fs_err::read_to_string(&path)
            .ok()
            .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
            .and_then(|t| t.get(who)?.get("pid")?.as_integer())
            .and_then(|p| u32::try_from(p).ok());
        pid.is_some()
    });
    pid.expect("pid")
}

pub fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Case 1. Regression: `csa run --detach -- sh -c 'sleep 300 & echo started'` ended
/// `available` at once and freed the directory while `sleep 300` ran on in it, still holding
/// the inherited claim and tool-lock descriptors.
#[test]
fn a_background_child_outliving_its_agent_is_stopped_before_the_directory_is_free() {
    for mech in mechanisms() {
        let env = TestEnv::new();
        let pidfile = env.project.join("bg.pid");
        let script = format!("sleep 300 & echo $! > {}; echo started", pidfile.display());
        let id = detach(&env, mech, &["sh", "-c", &script]);
        let out = csa(&env, mech, &["session", "wait", &id, "--timeout", "60s"]);
        assert_eq!(out.status.code(), Some(0), "{mech}: {out:?}");
        let dir = env.sessions_dir.join(&id);
        let membership = toml_of(&dir.join("membership.toml"));
        assert_eq!(
            membership["mechanism"].as_str(),
            Some(mech),
            "{membership:?}"
        );
        let bg: u32 = fs_err::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid");
        assert!(
            !csa_process::probe(bg).is_running(),
            "{mech}: the background sleep {bg} outlived its session"
        );
        assert!(
            marked(&id).is_empty(),
            "{mech}: {:?} still run",
            marked(&id)
        );
        let result = toml_of(&dir.join("result.toml"));
        assert_eq!(result["status"].as_str(), Some("success"), "{result:?}");
        assert_eq!(
            result["leftover_processes_stopped"].as_integer(),
            Some(1),
            "{result:?}"
        );
        assert!(
            result["summary"]
                .as_str()
                .expect("summary")
                .contains("stopped 1 process(es) it left running"),
            "{result:?}"
        );
        // The directory is free, and nothing of the session runs.
        let check = csa(&env, mech, &["session", "list", "--running", "--check"]);
        assert_eq!(check.status.code(), Some(0), "{mech}: {check:?}");
        let next = csa(&env, mech, &["run", "--", "true"]);
        assert_eq!(next.status.code(), Some(0), "{mech}: {next:?}");
    }
}

/// Case 1, the opt-out: `--leave-running` lets the background child go knowingly; it is no
/// longer the session's, so the directory is free while it runs.
#[test]
fn leave_running_lets_a_background_child_go_and_frees_the_directory() {
    for mech in mechanisms() {
        let env = TestEnv::new();
        let pidfile = env.project.join("bg.pid");
        let script = format!("sleep 300 & echo $! > {}", pidfile.display());
        let out = csa(
            &env,
            mech,
            &[
                "run",
                "--detach",
                "--leave-running",
                "--",
                "sh",
                "-c",
                &script,
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let id = text(&out.stdout).trim().to_owned();
        let out = csa(&env, mech, &["session", "wait", &id, "--timeout", "60s"]);
        assert_eq!(out.status.code(), Some(0), "{mech}: {out:?}");
        let bg: u32 = fs_err::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid");
        assert!(csa_process::probe(bg).is_running(), "{mech}: it was let go");
        // The supervisor exits just after publishing the result.
        let supervisor = recorded(&env, &id, "supervisor");
        eventually("the supervisor has exited", || {
            !csa_process::probe(supervisor).is_running()
        });
        let result = toml_of(&env.sessions_dir.join(&id).join("result.toml"));
        assert_eq!(
            result["leftover_processes_released"].as_integer(),
            Some(1),
            "{result:?}"
        );
        let alive = csa(&env, mech, &["session", "is-alive", &id]);
        assert_eq!(
            alive.status.code(),
            Some(1),
            "{mech}: released is not the session's: {alive:?}"
        );
        let next = csa(&env, mech, &["run", "--", "true"]);
        assert_eq!(next.status.code(), Some(0), "{mech}: {next:?}");
        sigkill(bg);
    }
}

/// Cases 2 and 8. Regression: an agent that closed its inherited descriptors lost the claim
/// when its supervisor was killed (a second `csa run --detach` returned 0 and two sessions ran
/// in one directory), and the busy message named the dead supervisor's pid.
#[test]
fn an_agent_closing_inherited_descriptors_keeps_the_directory_claimed_after_its_supervisor_dies() {
    for mech in mechanisms() {
        let env = TestEnv::new();
        let id = detach(
            &env,
            mech,
            &[
                "python3",
                "-c",
                "import os,time; os.closerange(3,1024); time.sleep(60)",
            ],
        );
        let supervisor = recorded(&env, &id, "supervisor");
        let agent = recorded(&env, &id, "agent");
        sigkill(supervisor);
        eventually("the supervisor is gone", || {
            !csa_process::probe(supervisor).is_running()
        });
        let second = csa(&env, mech, &["run", "--detach", "--", "true"]);
        assert_eq!(second.status.code(), Some(75), "{mech}: {second:?}");
        let stderr = text(&second.stderr);
        assert!(
            stderr.contains(&format!("pid {agent}")) && stderr.contains(&id),
            "{mech}: the busy message names the agent that holds the directory: {stderr}"
        );
        assert!(
            !stderr.contains(&format!("pid {supervisor}")),
            "{mech}: not the dead supervisor: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "csa --state-dir {} session kill {id}",
                env.state_root.display()
            )) || stderr.contains(&format!("session kill {id}")),
            "{stderr}"
        );
        let alive = csa(&env, mech, &["session", "is-alive", &id]);
        assert_eq!(alive.status.code(), Some(0), "{mech}: {alive:?}");
        let list = csa(
            &env,
            mech,
            &["session", "list", "--running", "--format", "json"],
        );
        let json: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
        assert_eq!(
            json.as_array().map(Vec::len),
            Some(1),
            "{mech}: one session runs in the directory: {json}"
        );
        let kill = csa(&env, mech, &["session", "kill", &id, "--grace", "5s"]);
        assert_eq!(kill.status.code(), Some(0), "{mech}: {kill:?}");
        assert!(!csa_process::probe(agent).is_running());
        let next = csa(&env, mech, &["run", "--", "true"]);
        assert_eq!(next.status.code(), Some(0), "{mech}: {next:?}");
    }
}

/// Case 5. Regression: an agent whose main thread called `pthread_exit` reads `Z` in
/// `/proc/<pid>/stat` while its other threads run; `kill` reported it exited and could not stop
/// it, and with the supervisor gone it was declared dead and a second run started beside it.
#[test]
fn an_agent_whose_main_thread_exited_early_is_alive_and_killable() {
    let script = "import threading,time,ctypes\n\
                  threading.Thread(target=lambda: time.sleep(120)).start()\n\
                  ctypes.CDLL(None).pthread_exit(None)\n";
    for mech in mechanisms() {
        let env = TestEnv::new();
        let id = detach(&env, mech, &["python3", "-c", script]);
        let agent = recorded(&env, &id, "agent");
        eventually("the main thread has exited", || {
            csa_process::platform::stat(agent).is_ok_and(|s| s.state == 'Z')
        });
        let supervisor = recorded(&env, &id, "supervisor");
        sigkill(supervisor);
        eventually("the supervisor is gone", || {
            !csa_process::probe(supervisor).is_running()
        });
        crate::harness::backdate_tree(&env.sessions_dir.join(&id), 120);
        let alive = csa(&env, mech, &["session", "is-alive", &id]);
        assert_eq!(alive.status.code(), Some(0), "{mech}: {alive:?}");
        let second = csa(&env, mech, &["run", "--", "true"]);
        assert_eq!(second.status.code(), Some(75), "{mech}: {second:?}");
        let kill = csa(&env, mech, &["session", "kill", &id, "--grace", "2s"]);
        assert_eq!(kill.status.code(), Some(0), "{mech}: {kill:?}");
        assert!(text(&kill.stdout).contains("killed"), "{kill:?}");
        eventually("the whole thread group is gone", || {
            !csa_process::probe(agent).is_running()
        });
        let state = toml_of(&env.sessions_dir.join(&id).join("state.toml"));
        assert_eq!(state["termination_reason"].as_str(), Some("killed"));
    }
}

/// Case 6. Regression: kill and the supervisor raced to write the result, so an agent that
/// traps SIGTERM and exits 3 ended `available / failure / 3` in 19 of 20 tries and
/// `retired / signal / 143` in 1. Now the kill decides under the session's lock and both
/// writers end the turn the same way.
#[test]
fn killing_an_agent_that_traps_sigterm_ends_the_same_way_twenty_times() {
    let env = TestEnv::new();
    let mech = "process-session";
    let mut ends = std::collections::BTreeSet::new();
    for _ in 0..20 {
        // The previous turn's supervisor releases the directory just after its result is
        // published: queue behind it.
        let id = detach(
            &env,
            mech,
            &[
                "--wait-for-dir=30s",
                "--",
                "sh",
                "-c",
                "trap 'exit 3' TERM; sleep 100 & wait",
            ],
        );
        let agent = recorded(&env, &id, "agent");
        // The shell has set its trap once it waits on its child.
        eventually("the agent waits", || {
            csa_process::platform::pids().is_ok_and(|pids| {
                pids.into_iter().any(|p| {
                    csa_process::platform::stat(p).is_ok_and(|s| s.ppid == agent)
                        && csa_process::cmdline_contains(p, &[b"sleep\x00100"]) == Some(true)
                })
            })
        });
        let kill = csa(&env, mech, &["session", "kill", &id]);
        assert_eq!(kill.status.code(), Some(0), "{kill:?}");
        let out = csa(&env, mech, &["session", "wait", &id, "--timeout", "30s"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let dir = env.sessions_dir.join(&id);
        let state = toml_of(&dir.join("state.toml"));
        let result = toml_of(&dir.join("result.toml"));
        ends.insert(format!(
            "{} / {} / {} / {} / raw {}",
            state["phase"].as_str().unwrap_or("?"),
            state["termination_reason"].as_str().unwrap_or("-"),
            result["status"].as_str().unwrap_or("?"),
            result["exit_code"].as_integer().unwrap_or(-1),
            result
                .get("raw_process_exit_code")
                .and_then(toml::Value::as_integer)
                .unwrap_or(-1),
        ));
    }
    assert_eq!(
        ends.into_iter().collect::<Vec<_>>(),
        ["retired / killed / signal / 143 / raw 3"],
        "every kill ends the same way"
    );
}

/// Case 8. Regression: once every process of a session was dead, `is-alive` still said
/// `alive: output.log written 0s ago` for 30 s, with no word that the processes were gone.
#[test]
fn is_alive_says_the_processes_are_gone_and_when_the_grace_ends() {
    for mech in mechanisms() {
        let env = TestEnv::new();
        let id = detach(&env, mech, &["sh", "-c", "echo working; sleep 300"]);
        let supervisor = recorded(&env, &id, "supervisor");
        let agent = recorded(&env, &id, "agent");
        eventually("the agent has written", || {
            fs_err::metadata(env.sessions_dir.join(&id).join("output.log"))
                .is_ok_and(|m| m.len() > 0)
        });
        sigkill(supervisor);
        eventually("the supervisor is gone", || {
            !csa_process::probe(supervisor).is_running()
        });
        for pid in marked(&id) {
            sigkill(pid);
        }
        eventually("every process is gone", || {
            marked(&id).is_empty() && !csa_process::probe(agent).is_running()
        });
        let alive = csa(&env, mech, &["session", "is-alive", &id]);
        assert_eq!(alive.status.code(), Some(0), "{mech}: {alive:?}");
        let said = text(&alive.stdout);
        assert!(
            said.contains("processes gone") && said.contains("grace ends in"),
            "{mech}: {said}"
        );
        let list = csa(&env, mech, &["session", "list"]);
        let listed = text(&list.stdout);
        assert!(
            listed.contains("running, processes gone"),
            "{mech}: {listed}"
        );
        let next = csa(&env, mech, &["run", "--", "true"]);
        assert_eq!(
            next.status.code(),
            Some(0),
            "{mech}: no process runs, so the directory is free: {next:?}"
        );
    }
}
