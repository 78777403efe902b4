//! Crash points and injected faults (issue 5): every `failpoint!` of every mutating path, made
//! to SIGKILL its own process (or fail with ENOSPC, EACCES, EIO) at each time a scenario reaches
//! it; afterwards the invariant checker, one more `csa session reconcile`, and the checker again
//! must find 0 violations.
//!
//! The list of points is read from the sources (`failpoint!("…")`), and each scenario's points
//! from a trace run (`CSA_FAILPOINT_TRACE`), so a new step is crashed at without editing this
//! file, and a point no scenario reaches fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::TestEnv;

/// A mutating path and how to drive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    /// `csa session reconcile` of a session whose owner died.
    Reconcile,
    /// The same, with the state write failing, so that the rollback runs.
    ReconcileRollback,
    /// Foreground `csa run`: launch, supervision, finalize at agent exit.
    Run,
    /// `csa run --detach`: the same in a detached supervisor.
    RunDetached,
    /// Foreground `csa run` whose finalize state write fails (its rollback).
    FinalizeRollback,
    /// `csa run` of a command that does not exist.
    LaunchFailure,
    /// `csa session kill` of a running detached session.
    Kill,
    /// `csa session resume` of an available session.
    Resume,
    /// `csa session delete` of an available session.
    Delete,
    /// `csa session clean` of an available session and a crashed deletion's leftover.
    Clean,
    /// `csa session delete --force` of a session whose state.toml does not parse: its move to
    /// the quarantine.
    Quarantine,
}

const SCENARIOS: [Scenario; 11] = [
    Scenario::Reconcile,
    Scenario::ReconcileRollback,
    Scenario::Run,
    Scenario::RunDetached,
    Scenario::FinalizeRollback,
    Scenario::LaunchFailure,
    Scenario::Kill,
    Scenario::Resume,
    Scenario::Delete,
    Scenario::Clean,
    Scenario::Quarantine,
];

/// At most this many hits of one point are crashed at per scenario (atomic writes are hit once
/// per file written); the count is printed.
const MAX_HITS: usize = 8;

/// The agent of run scenarios: appends its pid to a file in the project directory.
const AGENT: &str = "echo $$ >> agents.pids";

/// What one scenario needs after its setup.
struct Prepared {
    env: TestEnv,
    args: Vec<String>,
    /// The session under test, when it exists before the command.
    session: Option<PathBuf>,
}

impl Scenario {
    /// Fail points configured in every run of this scenario (before the crash point).
    fn base_failpoints(self) -> Option<&'static str> {
        match self {
            Scenario::ReconcileRollback => Some("reconcile::before_state_write=return"),
            Scenario::FinalizeRollback => Some("state::write=return"),
            _ => None,
        }
    }

    fn prepare(self) -> Prepared {
        let env = TestEnv::new();
        let run_true = |env: &TestEnv| -> PathBuf {
            let out = env.run(&["run", "--format", "json", "--", "true"]);
            assert!(out.status.success(), "setup run: {out:?}");
            newest_session(env)
        };
        let (args, session): (Vec<&str>, Option<PathBuf>) = match self {
            Scenario::Reconcile | Scenario::ReconcileRollback => {
                let s = env.session();
                s.daemon_pid(dead_pid(), 1);
                (vec!["session", "reconcile"], Some(s.dir))
            }
            Scenario::Run | Scenario::FinalizeRollback => {
                (vec!["run", "--", "sh", "-c", AGENT], None)
            }
            Scenario::RunDetached => (vec!["run", "--detach", "--", "sh", "-c", AGENT], None),
            Scenario::LaunchFailure => (vec!["run", "--", "/nonexistent/agent"], None),
            Scenario::Kill => {
                let out = env.run(&["run", "--detach", "--", "sleep", "1000"]);
                assert!(out.status.success(), "setup detach: {out:?}");
                let dir = newest_session(&env);
                (vec!["session", "kill", "--grace", "5s"], Some(dir))
            }
            Scenario::Resume => {
                let dir = run_true(&env);
                (vec!["session", "resume"], Some(dir))
            }
            Scenario::Delete => {
                let dir = run_true(&env);
                (vec!["session", "delete"], Some(dir))
            }
            Scenario::Clean => {
                let dir = run_true(&env);
                // A crashed deletion's leftover, so that clean's sweep runs too.
                let gone = run_true(&env);
                let aside = env.sessions_dir.join(format!(
                    ".deleting-{}",
                    gone.file_name().expect("name").to_string_lossy()
                ));
                fs_err::rename(&gone, &aside).expect("rename aside");
                (vec!["session", "clean", "--older-than", "0s"], Some(dir))
            }
            Scenario::Quarantine => {
                let dir = run_true(&env);
                fs_err::write(dir.join("state.toml"), "phase = [").expect("corrupt");
                (vec!["session", "delete", "--force"], Some(dir))
            }
        };
        let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        if let Some(dir) = &session {
            if matches!(
                self,
                Scenario::Kill | Scenario::Resume | Scenario::Delete | Scenario::Quarantine
            ) {
                args.push(dir.file_name().expect("id").to_string_lossy().into_owned());
            }
            if self == Scenario::Resume {
                args.extend(["--", "sh", "-c", AGENT].map(str::to_owned));
            }
        }
        Prepared { env, args, session }
    }
}

impl Scenario {
    /// Whether `v` is a violation the scenario starts with: the unparsable state.toml of the
    /// session to quarantine, which stays (byte-identical) until the move is done.
    fn expects(self, v: &serde_json::Value) -> bool {
        self == Scenario::Quarantine
            && v["problem"]
                .as_str()
                .is_some_and(|p| p.contains("invalid state.toml"))
    }
}

/// A pid that names no process: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("reap");
    pid
}

fn newest_session(env: &TestEnv) -> PathBuf {
    let mut ids: Vec<PathBuf> = fs_err::read_dir(&env.sessions_dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    ids.sort();
    ids.pop().expect("a session")
}

/// Every `failpoint!("…")` name in the workspace's sources (comments excluded).
fn points_in_sources() -> BTreeSet<String> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut stack = vec![crates];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).expect("ls") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            if path.is_dir() && name != "target" && name != "tests" {
                stack.push(path);
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    let mut points = BTreeSet::new();
    for file in files {
        let text = fs_err::read_to_string(&file).expect("read source");
        for line in text.lines() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let mut rest = code;
            while let Some(at) = rest.find("failpoint!(\"") {
                rest = &rest[at + "failpoint!(\"".len()..];
                let end = rest.find('"').expect("closing quote");
                points.insert(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    points
}

/// How one run of a scenario's command went.
struct Case {
    out: Output,
    /// Per point, the most hits in one process (fail points count per process).
    hits: BTreeMap<String, usize>,
    /// Per point, the hits in the command's own process.
    own: BTreeMap<String, usize>,
}

/// Runs the scenario's command with `failpoint` (joined to the scenario's base ones) and a
/// trace file; waits until every process it started has finished (the directory claim is
/// free), and returns how it went.
fn run_case(scenario: Scenario, prepared: &Prepared, failpoint: Option<String>) -> Case {
    let env = &prepared.env;
    let trace = env.project.join("trace");
    let args: Vec<&str> = prepared.args.iter().map(String::as_str).collect();
    let mut cmd = env.csa(&args);
    cmd.env("CSA_FAILPOINT_TRACE", &trace)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let config: Vec<String> = scenario
        .base_failpoints()
        .map(str::to_owned)
        .into_iter()
        .chain(failpoint)
        .collect();
    if !config.is_empty() {
        cmd.env("FAILPOINTS", config.join(";"));
    }
    let child = cmd.spawn().expect("run csa");
    let pid = child.id().to_string();
    let out = child.wait_with_output().expect("wait for csa");
    if scenario == Scenario::Kill {
        // A crashed kill may leave the agent running: end it here, so that its supervisor
        // finalizes and every process of the session finishes.
        kill_agent(prepared.session.as_deref().expect("session"));
    }
    wait_quiet(env);
    let mut per_process: BTreeMap<(String, String), usize> = BTreeMap::new();
    if let Ok(text) = fs_err::read_to_string(&trace) {
        for line in text.lines() {
            let (name, pid) = line.split_once(' ').expect("NAME PID");
            *per_process
                .entry((name.to_owned(), pid.to_owned()))
                .or_default() += 1;
        }
        fs_err::remove_file(&trace).expect("remove trace");
    }
    let mut hits: BTreeMap<String, usize> = BTreeMap::new();
    let mut own = BTreeMap::new();
    for ((name, p), n) in per_process {
        if p == pid {
            own.insert(name.clone(), n);
        }
        let m = hits.entry(name).or_default();
        *m = (*m).max(n);
    }
    Case { out, hits, own }
}

/// SIGKILLs the process group of the agent named in the session's lock body (a `sleep` the
/// scenario started), if it still runs.
fn kill_agent(session: &Path) {
    let Ok(body) = fs_err::read_to_string(session.join("locks/sleep.lock")) else {
        return;
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
        return;
    };
    let Some(pid) = json["pid"].as_u64().and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    if csa_process::cmdline_contains(pid.unsigned_abs(), &[b"sleep"]) == Some(true) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Waits (polling, 20 s at most) until no process holds the directory claim: every supervisor
/// and agent of the project has exited. The claim is inherited by agents, so this also waits
/// for an agent whose supervisor was killed.
fn wait_quiet(env: &TestEnv) {
    let claim = env.sessions_dir.join(".csa-claim.lock");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let free = match fs_err::File::open(&claim) {
            Err(_) => true,
            Ok(file) => nix::fcntl::Flock::lock(
                file.into_parts().0,
                nix::fcntl::FlockArg::LockExclusiveNonblock,
            )
            .is_ok(),
        };
        if free {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the directory claim is still held after 20 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `csa debug check --format json`: the violations.
fn violations(env: &TestEnv) -> Vec<serde_json::Value> {
    let out = env.run(&["debug", "check", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check output ({e}): {out:?}"));
    json.as_array()
        .unwrap_or_else(|| panic!("an array of violations: {json}"))
        .clone()
}

/// What a scenario found.
#[derive(Debug, Default)]
struct Tally {
    points: BTreeSet<String>,
    cases: usize,
    violations: Vec<String>,
}

/// A leftover that the checker reports until a later command sweeps it.
fn is_leftover(v: &serde_json::Value) -> bool {
    let p = v["problem"].as_str().unwrap_or_default();
    p.contains("left behind")
}

fn crash_scenario(scenario: Scenario) -> Tally {
    let mut tally = Tally::default();
    let Case { out, hits, .. } = run_case(scenario, &scenario.prepare(), None);
    assert!(
        !hits.is_empty(),
        "{scenario:?}: the trace run reached no point: {out:?}"
    );
    for (point, count) in hits {
        for k in 1..=count.min(MAX_HITS) {
            let prepared = scenario.prepare();
            let config = format!("{point}={}return(kill)", off_prefix(k));
            let Case {
                out, hits: reached, ..
            } = run_case(scenario, &prepared, Some(config.clone()));
            assert!(
                reached.get(&point).copied().unwrap_or(0) >= k,
                "{scenario:?} {config}: the point was not reached {k} times: {out:?}"
            );
            let first = violations(&prepared.env);
            let _ = prepared.env.run(&["session", "reconcile"]);
            let second = violations(&prepared.env);
            for v in first
                .iter()
                .filter(|v| !is_leftover(v))
                .chain(&second)
                .filter(|v| !scenario.expects(v))
            {
                tally.violations.push(format!("{scenario:?} {config}: {v}"));
            }
            tally.cases += 1;
        }
        tally.points.insert(point);
    }
    tally
}

/// Runs `run` for every scenario, one thread each, and adds up their tallies (printing each
/// scenario's counts, `kind` naming its cases).
fn every_scenario(run: fn(Scenario) -> Tally, kind: &str) -> Tally {
    let tallies: Vec<(Scenario, Tally)> = std::thread::scope(|s| {
        let handles: Vec<_> = SCENARIOS
            .iter()
            .map(|&sc| s.spawn(move || (sc, run(sc))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scenario thread"))
            .collect()
    });
    let mut total = Tally::default();
    for (sc, t) in tallies {
        eprintln!(
            "{sc:?}: {} points, {} {kind} cases",
            t.points.len(),
            t.cases
        );
        total.points.extend(t.points);
        total.cases += t.cases;
        total.violations.extend(t.violations);
    }
    total
}

/// `N*off->` before the action, to act at the k-th hit.
fn off_prefix(k: usize) -> String {
    if k == 1 {
        String::new()
    } else {
        format!("{}*off->", k - 1)
    }
}

#[test]
fn a_crash_at_every_point_leaves_no_violation_after_one_more_reconcile() {
    let started = Instant::now();
    let Tally {
        points: covered,
        cases,
        violations,
    } = every_scenario(crash_scenario, "crash");
    let all = points_in_sources();
    let missed: Vec<_> = all.difference(&covered).collect();
    assert!(missed.is_empty(), "points no scenario reaches: {missed:?}");
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    csa_reliability::record(&csa_reliability::Row {
        key: "1-crash-points".into(),
        area: "crash points (SIGKILL at each step)".into(),
        cases: cases as u64,
        failure_kind: "invariant violations".into(),
        failures: violations.len() as u64,
        detail: format!(
            "{} points in the sources, all reached, over {} paths; each hit up to {MAX_HITS} per path; {:.0} s",
            all.len(),
            SCENARIOS.len(),
            started.elapsed().as_secs_f64()
        ),
    });
}

/// The injected errors and how the OS words them.
const ERRNOS: [(&str, &str); 3] = [
    ("enospc", "No space left on device"),
    ("eacces", "Permission denied"),
    ("eio", "Input/output error"),
];

/// Whether `point` is a step of the store that writes (faults are injected there); the others
/// are crash-only points (sending a signal, the supervisor's own steps).
fn is_write(point: &str) -> bool {
    !(point == "kill::signal" || point.starts_with("run::"))
}

/// The files of a session that a failed command must leave as they were.
fn session_files(dir: &Path) -> Vec<(&'static str, Option<Vec<u8>>)> {
    [
        "state.toml",
        "result.toml",
        "run.toml",
        "metadata.toml",
        "daemon.pid",
    ]
    .into_iter()
    .map(|n| (n, fs_err::read(dir.join(n)).ok()))
    .collect()
}

fn fault_scenario(scenario: Scenario) -> Tally {
    let mut tally = Tally::default();
    let Case { hits, .. } = run_case(scenario, &scenario.prepare(), None);
    // Whether a failed command must leave the session under test as it was: not when a second
    // fault is configured (the rollback scenarios), nor for kill, whose agent's supervisor
    // finalizes the session by itself.
    let unchanged_on_failure = scenario.base_failpoints().is_none() && scenario != Scenario::Kill;
    for (point, count) in hits.into_iter().filter(|(p, _)| is_write(p)) {
        for k in 1..=count.min(MAX_HITS) {
            for (errno, text) in ERRNOS {
                let prepared = scenario.prepare();
                let before = prepared.session.as_deref().map(session_files);
                // Fails once, at the k-th hit: the rollback's own writes go through.
                let config = format!("{point}={}1*return({errno})->off", off_prefix(k));
                let case = run_case(scenario, &prepared, Some(config.clone()));
                // Reports go to stdout (per-session errors in a command's report) or stderr.
                let stderr = format!(
                    "{}{}",
                    String::from_utf8_lossy(&case.out.stdout),
                    String::from_utf8_lossy(&case.out.stderr)
                );
                let what = format!("{scenario:?} {config}");
                let code = case.out.status.code();
                if code.is_none() || code == Some(101) || stderr.contains("panicked") {
                    tally
                        .violations
                        .push(format!("{what}: crashed or panicked: {:?}", case.out));
                }
                if case.own.get(&point).copied().unwrap_or(0) >= k
                    && !(stderr.contains(text)
                        && stderr.contains(&*prepared.env.state_root.to_string_lossy()))
                {
                    tally.violations.push(format!(
                        "{what}: the error is not reported with its path: {stderr}"
                    ));
                }
                // A failed write inside the session's directory: the command must have rolled
                // back what it published there.
                if let (Some(before), Some(dir)) = (&before, &prepared.session) {
                    // A resumed turn that started ("csa: session … (turn 2)") changed the
                    // session legitimately; a failure after it is finalize's (checked below).
                    let failed_here = stderr.contains(&format!("{}/", dir.display()))
                        && !stderr.contains("(turn 2)");
                    if unchanged_on_failure && code != Some(0) && failed_here && dir.exists() {
                        let after = session_files(dir);
                        if &after != before {
                            tally.violations.push(format!(
                                "{what}: exit {code:?} but the session changed: {stderr}"
                            ));
                        }
                    }
                }
                let first = violations(&prepared.env);
                let _ = prepared.env.run(&["session", "reconcile"]);
                let second = violations(&prepared.env);
                for v in first
                    .iter()
                    .filter(|v| !is_leftover(v))
                    .chain(&second)
                    .filter(|v| !scenario.expects(v))
                {
                    tally.violations.push(format!("{what}: {v}"));
                }
                tally.cases += 1;
            }
        }
        tally.points.insert(point);
    }
    tally
}

#[test]
fn a_failed_write_at_every_point_is_reported_and_leaves_the_session_consistent() {
    let started = Instant::now();
    let Tally {
        points: covered,
        cases,
        violations,
    } = every_scenario(fault_scenario, "fault");
    let writes: BTreeSet<String> = points_in_sources()
        .into_iter()
        .filter(|p| is_write(p))
        .collect();
    let missed: Vec<_> = writes.difference(&covered).collect();
    assert!(
        missed.is_empty(),
        "write points no scenario reaches: {missed:?}"
    );
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    csa_reliability::record(&csa_reliability::Row {
        key: "2-faults".into(),
        area: "injected faults (ENOSPC, EACCES, EIO at each write)".into(),
        cases: cases as u64,
        failure_kind: "unreported errors, changed sessions or violations".into(),
        failures: violations.len() as u64,
        detail: format!(
            "{} write points over {} paths, each hit up to {MAX_HITS} per path; {:.0} s",
            writes.len(),
            SCENARIOS.len(),
            started.elapsed().as_secs_f64()
        ),
    });
}
