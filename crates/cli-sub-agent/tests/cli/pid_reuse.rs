//! Case 4 of the membership issue: a pid reused within one clock tick has the same start
//! ticks as the process that had it, so pid and start ticks alone never prove identity.
//!
//! Arranged for real inside a new PID namespace (`unshare --pid --fork --mount-proc`): a
//! process runs and exits, `/proc/sys/kernel/ns_last_pid` is set so that the next fork gets
//! its pid, and an unrelated process (an imposter without the session's marker) is started at
//! once, retried until its start ticks equal the first one's. The session's files name the
//! first process as the agent; csa runs inside the namespace. Skipped, with the reason, where
//! the namespace cannot be made.

use std::process::Command;

use crate::harness::TestEnv;

/// Runs inside the namespace: arranges the reuse, writes the session, runs csa, prints JSON.
const SCRIPT: &str = r#"
import json, os, subprocess, sys
csa, state_root, sessions_dir, project, sid, with_record = sys.argv[1:7]

def start_ticks(pid):
    text = open(f"/proc/{pid}/stat").read()
    return int(text[text.rfind(")") + 2:].split()[19])

def arrange():
    for attempt in range(500):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        os.close(r)
        ticks = start_ticks(pid)
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        imposter = subprocess.Popen(["sleep", "1000"], env={"PATH": os.environ["PATH"]})
        if imposter.pid == pid and start_ticks(pid) == ticks:
            return pid, ticks, imposter, attempt + 1
        imposter.kill()
        imposter.wait()
    return None

found = arrange()
if found is None:
    print(json.dumps({"skipped": "no pid was reused within one clock tick in 500 attempts"}))
    sys.exit(0)
pid, ticks, imposter, attempts = found
boot_id = open("/proc/sys/kernel/random/boot_id").read().strip()
d = os.path.join(sessions_dir, sid)
os.makedirs(os.path.join(d, "locks"), mode=0o700)
def write(name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    os.utime(path, (0, 0))
write("state.toml", f'''meta_session_id = "{sid}"
project_path = "{project}"
created_at = "2026-11-21T06:33:50Z"
last_accessed = "2026-11-21T06:33:50Z"
phase = "active"
turn_count = 1
[tools.sh]
last_action_summary = "started"
last_exit_code = 0
updated_at = "2026-11-21T06:33:50Z"
''')
write("output.log", "working\n")
write("daemon.pid", "999999 1\n")
write("locks/sh.lock", json.dumps({"pid": pid, "pid_start_time_ticks": ticks, "tool_name": "sh",
      "reason": "csa run agent", "boot_id": boot_id}))
if with_record == "yes":
    write("membership.toml", f'''turn = 1
boot_id = "{boot_id}"
claim = "held"
mechanism = "process-session"
sid = {pid}
[supervisor]
pid = 999999
start_ticks = 1
[agent]
pid = {pid}
start_ticks = {ticks}
''')
def run(*args):
    out = subprocess.run([csa, "--state-dir", state_root, *args], capture_output=True, text=True)
    return {"code": out.returncode, "stdout": out.stdout, "stderr": out.stderr}
report = {"pid": pid, "ticks": ticks, "attempts": attempts}
report["is_alive"] = run("session", "is-alive", sid)
report["kill"] = run("session", "kill", sid, "--grace", "1s")
report["imposter_alive_after_kill"] = imposter.poll() is None
report["reconcile"] = run("session", "reconcile", "--format", "json")
report["imposter_alive_after_reconcile"] = imposter.poll() is None
report["phase"] = [l for l in open(os.path.join(d, "state.toml")).read().splitlines() if l.startswith("phase")]
imposter.kill()
imposter.wait()
print(json.dumps(report))
"#;

/// Runs the scenario; `None` (with the reason printed) when it cannot be arranged here.
fn scenario(with_record: bool) -> Option<serde_json::Value> {
    let env = TestEnv::new();
    let id = ulid::Ulid::new().to_string();
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "python3", "-c", SCRIPT])
        .arg(assert_cmd::cargo::cargo_bin!("csa"))
        .arg(&env.state_root)
        .arg(&env.sessions_dir)
        .arg(fs_err::canonicalize(&env.project).expect("project"))
        .arg(&id)
        .arg(if with_record { "yes" } else { "no" })
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            eprintln!(
                "skipped: cannot make a PID namespace here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Err(err) => {
            eprintln!("skipped: unshare is not available ({err})");
            return None;
        }
    };
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad report ({e}): {out:?}"));
    if let Some(why) = report.get("skipped") {
        eprintln!("skipped: {why}");
        return None;
    }
    Some(report)
}

/// Regression: a new process with the same pid and the same start ticks passed verification,
/// and `csa session kill` sent SIGTERM to an unrelated process.
#[test]
fn a_pid_reused_within_one_clock_tick_is_never_signalled() {
    for with_record in [true, false] {
        let Some(report) = scenario(with_record) else {
            return;
        };
        let what = if with_record {
            "a session csa runs"
        } else {
            "an upstream session"
        };
        assert_eq!(
            report["imposter_alive_after_kill"],
            serde_json::Value::Bool(true),
            "{what}: the imposter was signalled: {report}"
        );
        assert_eq!(
            report["imposter_alive_after_reconcile"],
            serde_json::Value::Bool(true),
            "{report}"
        );
        if with_record {
            // csa's own session: the agent is identified by ticks *and* the marker, so the
            // imposter is not the session's, the session is dead, and kill reconciles it
            // without a signal.
            assert_eq!(report["is_alive"]["code"], 1, "{report}");
            assert!(
                report["is_alive"]["stdout"]
                    .as_str()
                    // The portable backend compares start times to the second.
                    .is_some_and(|s| {
                        s.contains("reused within one clock tick")
                            || s.contains("reused within one second")
                    }),
                "{report}"
            );
            assert_eq!(report["kill"]["code"], 0, "{report}");
            assert!(
                report["kill"]["stdout"]
                    .as_str()
                    .is_some_and(|s| s.contains("no signal sent")),
                "{report}"
            );
            assert_eq!(report["phase"][0], "phase = \"retired\"", "{report}");
        } else {
            // Upstream's session keeps upstream's rules (pid and ticks read alive, failing
            // closed), but no signal goes to a process without the session's marker.
            assert_eq!(report["is_alive"]["code"], 0, "{report}");
            assert_eq!(report["kill"]["code"], 75, "{what}: refused: {report}");
        }
        eprintln!(
            "{what}: pid {} reused with equal start ticks {} after {} attempt(s)",
            report["pid"], report["ticks"], report["attempts"]
        );
    }
}
