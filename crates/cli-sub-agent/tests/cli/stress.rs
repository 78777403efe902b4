//! The 16-process stress test (issue 5, "Races"): 16 worker threads each issue random `csa`
//! commands (the real binary: `run` foreground and `--detach`, `session reconcile`, `list`,
//! `kill`, `resume`, `wait`, `delete`, `clean`) over about 100 sessions in four shared project
//! directories, with agents that exit 0 or non-zero, crash (kill -9 themselves), ignore SIGTERM
//! or fork grandchildren. Two more threads: one plays upstream's reconciler by holding random
//! sessions' `.reconcile.lock` (flock, as upstream does) for a short while, one SIGKILLs a
//! detached supervisor now and then. Upstream-format sessions (some with dead owners, some with
//! a live one holding its tool lock) are laid out before it starts.
//!
//! Every command's exit code and stderr are judged against docs/cli.md: only success, the
//! documented busy / not-resumable / refused answers (75), not found after a concurrent delete
//! (4), timeout (124), the documented negative (1 from `wait`) and, for foreground runs and
//! resumes, the agent's own exit code are accepted. At the end the test stops issuing commands,
//! kills every agent it started, waits for every supervisor to exit, reconciles everything and
//! runs the invariant checker: 0 unexpected answers and 0 violations.
//!
//! Knobs: `CSA_STRESS_DURATION` (humantime, default 20s; `just stress 10m`) and
//! `CSA_STRESS_SEED` (replays the random choices of a run whose seed was printed; the
//! interleaving itself is up to the scheduler).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::{Agent, TestEnv};

/// Concurrent workers, each running one csa command at a time.
const WORKERS: usize = 16;
/// The session population the workers steer towards (more runs below, more deletes above).
const TARGET_SESSIONS: usize = 100;
/// Upstream-format sessions laid out before the workers start.
const UPSTREAM_SESSIONS: usize = 30;
/// How many recently started sessions `kill`, `wait` and `resume` favour.
const RECENT: usize = 32;

/// A command kind, as counted in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Run,
    RunDetach,
    Reconcile,
    List,
    Kill,
    Resume,
    ResumeDetach,
    Wait,
    Delete,
    Clean,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Run => "run",
            Op::RunDetach => "run --detach",
            Op::Reconcile => "reconcile",
            Op::List => "list",
            Op::Kill => "kill",
            Op::Resume => "resume",
            Op::ResumeDetach => "resume --detach",
            Op::Wait => "wait",
            Op::Delete => "delete",
            Op::Clean => "clean",
        }
    }

    /// Exit codes docs/cli.md allows for this command in this test (besides a foreground
    /// agent's own code), and the `error:` texts each non-zero one may come with.
    fn accepted(self) -> &'static [(i32, &'static [&'static str])] {
        const BUSY_DIR: &str = " is busy: ";
        const NOT_FOUND: &[&str] = &[
            "no session matches",
            "was deleted by another process meanwhile",
        ];
        // Most specific first: the report counts each answer by the first text it matches.
        const RESUME_REFUSED: &[&str] = &[
            "is already being resumed",
            "still has a live process",
            "not resumable: ",
            BUSY_DIR,
        ];
        match self {
            Op::Run | Op::RunDetach => &[(0, &[]), (75, &[BUSY_DIR])],
            Op::Reconcile => &[(0, &[]), (4, NOT_FOUND)],
            Op::List | Op::Clean => &[(0, &[])],
            Op::Kill => &[
                (0, &[]),
                (4, NOT_FOUND),
                (
                    75,
                    &[
                        "is alive, but no process can be verified as its own",
                        "is not owned from this machine",
                    ],
                ),
            ],
            Op::Resume | Op::ResumeDetach => &[(0, &[]), (4, NOT_FOUND), (75, RESUME_REFUSED)],
            Op::Wait => &[
                (0, &[]),
                (1, &[]),
                (5, &[]),
                (4, NOT_FOUND),
                (75, &["and has no result"]),
                (124, &["has no result after"]),
            ],
            Op::Delete => &[
                (0, &[]),
                (4, NOT_FOUND),
                (
                    75,
                    &[
                        "is active and its agent is alive",
                        "is still active, though its agent is dead",
                        "but a process of it is still alive",
                        "is busy: another process holds its .reconcile.lock",
                    ],
                ),
            ],
        }
    }
}

/// What an agent does; each is a small `sh -c` script owned by the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Works a little, exits 0.
    Succeeds,
    /// Works a little, exits 3.
    Fails,
    /// Works a little, then `kill -9` itself.
    Crashes,
    /// Ignores SIGTERM (and so do its children), exits 0 after a few seconds.
    IgnoresSigterm,
    /// Leaves a grandchild behind in its process group, exits 0. The grandchild is a member
    /// of the session: the end of the turn stops it; if the supervisor is killed, it keeps
    /// the session alive and the directory claimed until it exits.
    Forks,
    /// Starts a background child (`&`) that outlives it, exits 0: stopped at the end of the
    /// turn.
    Backgrounds,
    /// Closes every inherited descriptor (as node-based agents' tools start), then works: only
    /// membership, not a descriptor, marks it.
    ClosesDescriptors,
    /// Starts a child that calls setsid (leaves the agent's process session; keeps the marker)
    /// and outlives it.
    Setsid,
    /// Its main thread calls pthread_exit while another thread works: `/proc/<pid>/stat` reads
    /// `Z` until the last thread exits.
    MainThreadExits,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Succeeds,
        Kind::Fails,
        Kind::Crashes,
        Kind::IgnoresSigterm,
        Kind::Forks,
        Kind::Backgrounds,
        Kind::ClosesDescriptors,
        Kind::Setsid,
        Kind::MainThreadExits,
    ];

    /// The `sh -c` script, which first records its pid (its process group: csa makes every
    /// agent a group leader) in `pgids`.
    /// `claims_dir`: the run holds the directory claim, which a grandchild inherits; it then
    /// lives shortly (so that killed supervisors do not keep the directories claimed long),
    /// else for seconds.
    fn script(self, rng: &mut fastrand::Rng, pgids: &Path, claims_dir: bool) -> String {
        let ms = |rng: &mut fastrand::Rng, lo: u32, hi: u32| {
            format!("{:.3}", f64::from(rng.u32(lo..hi)) / 1000.0)
        };
        let body = match self {
            Kind::Succeeds => format!("echo working; sleep {}; exit 0", ms(rng, 0, 2500)),
            Kind::Fails => format!("echo failing >&2; sleep {}; exit 3", ms(rng, 0, 2500)),
            Kind::Crashes => format!("echo crashing; sleep {}; kill -9 $$", ms(rng, 0, 2500)),
            Kind::IgnoresSigterm => {
                format!(
                    "trap '' TERM; echo stubborn; sleep {}; exit 0",
                    ms(rng, 500, 3000)
                )
            }
            Kind::Forks => format!(
                "(sleep {} </dev/null >/dev/null 2>&1 &); echo forked; sleep {}; exit 0",
                if claims_dir {
                    ms(rng, 100, 1500)
                } else {
                    ms(rng, 1000, 6000)
                },
                ms(rng, 0, 600)
            ),
            Kind::Backgrounds => format!(
                "sleep {} & echo backgrounded; sleep {}; exit 0",
                ms(rng, 500, 6000),
                ms(rng, 0, 600)
            ),
            Kind::ClosesDescriptors => format!(
                "exec python3 -c \"import os,time; os.closerange(3,1024); print('closed', flush=True); time.sleep({})\"",
                ms(rng, 0, 2500)
            ),
            Kind::Setsid => format!(
                "setsid sleep {} </dev/null >/dev/null 2>&1 & echo escaped; sleep {}; exit 0",
                ms(rng, 500, 6000),
                ms(rng, 0, 600)
            ),
            Kind::MainThreadExits => format!(
                "exec python3 -c \"import threading,time,ctypes; threading.Thread(target=lambda: time.sleep({})).start(); ctypes.CDLL(None).pthread_exit(None)\"",
                ms(rng, 0, 2500)
            ),
        };
        format!("echo $$ >> {}; {body}", pgids.display())
    }

    /// The exit code of a foreground run that nobody disturbs.
    fn natural_code(self) -> i32 {
        match self {
            Kind::Fails => 3,
            Kind::Crashes => 128 + 9,
            _ => 0,
        }
    }
}

/// Exit codes a foreground run or resume may end with when its agent is killed by someone else
/// (`csa session kill`: SIGTERM, then SIGKILL; the final sweep: SIGKILL).
const KILLED: [i32; 2] = [128 + 9, 128 + 15];

/// What the workers share.
struct World {
    env: TestEnv,
    /// The shared project directories (the harness's project first).
    dirs: Vec<PathBuf>,
    /// Their `sessions/` directories under the state root.
    sessions_dirs: Vec<PathBuf>,
    /// `STRESS_TOKEN=<unique>`: in the environment of every process the test starts, so that
    /// the final sweep finds exactly them (and their descendants) in /proc.
    token: String,
    /// Where agents record their pid (= process group id).
    pgids: PathBuf,
    /// Recently started sessions (favoured by kill, wait and resume).
    recent: Mutex<VecDeque<String>>,
    /// Sessions some command deleted (sometimes picked again: "not found").
    deleted: Mutex<Vec<String>>,
    stop: AtomicBool,
    /// What each worker is running now, and since when (printed if the stop hangs).
    inflight: Mutex<BTreeMap<usize, (String, Instant)>>,
    report: Mutex<Report>,
    /// Times the upstream reconciler held a session's `.reconcile.lock`.
    lock_holds: AtomicU64,
    /// Detached supervisors the test SIGKILLed.
    supervisor_kills: AtomicU64,
}

#[derive(Default)]
struct Report {
    /// (op, exit code) -> count.
    counts: BTreeMap<(Op, i32), u64>,
    /// Each unexpected answer: the command line, its exit code and stderr.
    failures: Vec<String>,
    /// Documented non-zero answers, by the text that identified them.
    answers: BTreeMap<(Op, i32, &'static str), u64>,
    /// What successful commands did (from their output), e.g. "kill: killed".
    notes: BTreeMap<&'static str, u64>,
    /// `warning:` lines (not failures; reported).
    warnings: BTreeMap<String, u64>,
}

/// One command to issue, and how to judge it.
struct Planned {
    op: Op,
    args: Vec<String>,
    /// A foreground run's agent: its natural exit code.
    agent: Option<Kind>,
    /// A foreground resume of an unknown previous command: any agent code is acceptable.
    any_agent: bool,
    /// The session (of a `wait`) was run by csa (it had run.toml when picked): every turn of
    /// it that has ended has a result.
    csa_run: bool,
}

impl World {
    fn csa(&self, args: &[String]) -> Command {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.env.csa(&args);
        let (key, value) = self.token.split_once('=').expect("token");
        cmd.env(key, value);
        // Both membership mechanisms (auto is a cgroup where this machine allows one).
        let mechanism = if fastrand::bool() {
            "auto"
        } else {
            "process-session"
        };
        cmd.env("CSA_MEMBERSHIP", mechanism);
        cmd
    }

    /// Every session directory on disk now: (its `sessions/` dir, ULID).
    fn sessions(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        for dir in &self.sessions_dirs {
            let Ok(entries) = fs_err::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.len() == 26 && !name.starts_with('.') {
                    out.push((dir.clone(), name));
                }
            }
        }
        out
    }

    /// A session to act on: recent ones when `favour_recent`, a deleted one now and then,
    /// else any session on disk. Returns its id and whether it has a recorded command.
    fn pick(&self, rng: &mut fastrand::Rng, favour_recent: bool) -> Option<(String, bool)> {
        let on_disk = self.sessions();
        let has_run = |id: &str| {
            on_disk
                .iter()
                .any(|(d, i)| i == id && d.join(id).join("run.toml").exists())
        };
        if rng.u8(0..100) < 4 {
            let deleted = self.deleted.lock().expect("deleted");
            if !deleted.is_empty() {
                return Some((deleted[rng.usize(0..deleted.len())].clone(), true));
            }
        }
        if favour_recent && rng.bool() {
            let recent = self.recent.lock().expect("recent");
            if !recent.is_empty() {
                let id = recent[rng.usize(0..recent.len())].clone();
                drop(recent);
                let run = has_run(&id);
                return Some((id, run));
            }
        }
        if on_disk.is_empty() {
            return None;
        }
        let (_, id) = &on_disk[rng.usize(0..on_disk.len())];
        Some((id.clone(), has_run(id)))
    }

    fn remember(&self, id: &str) {
        let mut recent = self.recent.lock().expect("recent");
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(id.to_owned());
    }

    fn scope(&self, rng: &mut fastrand::Rng, args: &mut Vec<String>) {
        if rng.u8(0..3) == 0 {
            args.push("--all-projects".into());
        } else {
            args.push("--cd".into());
            args.push(
                self.dirs[rng.usize(0..self.dirs.len())]
                    .display()
                    .to_string(),
            );
        }
    }

    fn agent_command(&self, rng: &mut fastrand::Rng, claims_dir: bool) -> (Kind, Vec<String>) {
        let kind = Kind::ALL[rng.usize(0..Kind::ALL.len())];
        let script = kind.script(rng, &self.pgids, claims_dir);
        (kind, vec!["sh".into(), "-c".into(), script])
    }

    fn plan(&self, rng: &mut fastrand::Rng) -> Option<Planned> {
        let population = self.sessions().len();
        let (runs, deletes, cleans) = if population < TARGET_SESSIONS * 4 / 5 {
            (3, 2, 1)
        } else if population > TARGET_SESSIONS * 6 / 5 {
            (1, 12, 4)
        } else {
            (2, 6, 2)
        };
        let table = [
            (Op::Run, 4 * runs),
            (Op::RunDetach, 5 * runs),
            (Op::Reconcile, 8),
            (Op::List, 6),
            (Op::Kill, 7),
            (Op::Resume, 3),
            (Op::ResumeDetach, 4),
            (Op::Wait, 8),
            (Op::Delete, deletes),
            (Op::Clean, cleans),
        ];
        let total: u32 = table.iter().map(|(_, w)| w).sum();
        let mut roll = rng.u32(0..total);
        let op = table
            .iter()
            .find(|(_, w)| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .map(|(op, _)| *op)
            .expect("weights cover the roll");
        let s = |x: &str| x.to_owned();
        let mut args: Vec<String> = Vec::new();
        let mut agent = None;
        let mut any_agent = false;
        let mut csa_run = false;
        match op {
            Op::Run | Op::RunDetach => {
                args.push(s("run"));
                if op == Op::RunDetach {
                    args.push(s("--detach"));
                }
                args.push(s("--cd"));
                args.push(
                    self.dirs[rng.usize(0..self.dirs.len())]
                        .display()
                        .to_string(),
                );
                let claims_dir = match rng.u8(0..10) {
                    0..=4 => {
                        args.push(s("--allow-concurrent"));
                        false
                    }
                    5..=7 => {
                        args.push(format!("--wait-for-dir={}ms", rng.u32(100..2500)));
                        true
                    }
                    8 => {
                        args.push(s("--wait-for-dir"));
                        true
                    }
                    _ => true,
                };
                let (kind, command) = self.agent_command(rng, claims_dir);
                args.push(s("--"));
                args.extend(command);
                if op == Op::Run {
                    agent = Some(kind);
                }
            }
            Op::Reconcile => {
                args.extend([s("session"), s("reconcile"), s("--format"), s("json")]);
                if rng.u8(0..4) == 0 {
                    let (id, _) = self.pick(rng, true)?;
                    args.push(id);
                } else {
                    self.scope(rng, &mut args);
                }
            }
            Op::List => {
                args.extend([s("session"), s("list")]);
                self.scope(rng, &mut args);
                if rng.bool() {
                    args.extend([s("--format"), s("json")]);
                }
                match rng.u8(0..6) {
                    0 => args.extend([s("--status"), s("running")]),
                    1 => args.extend([s("--status"), s("orphaned")]),
                    2 => args.push(s("--resumable")),
                    _ => {}
                }
            }
            Op::Kill => {
                let (id, _) = self.pick(rng, true)?;
                args.extend([s("session"), s("kill"), id]);
                args.push(format!("--grace={}ms", rng.u32(50..800)));
            }
            Op::Resume | Op::ResumeDetach => {
                let (id, has_run) = self.pick(rng, true)?;
                args.extend([s("session"), s("resume"), id]);
                if op == Op::ResumeDetach {
                    args.push(s("--detach"));
                }
                // Without a command, the previous turn's (run.toml); upstream sessions have none.
                if !has_run || rng.bool() {
                    let (kind, command) = self.agent_command(rng, true);
                    args.push(s("--"));
                    args.extend(command);
                    if op == Op::Resume {
                        agent = Some(kind);
                    }
                } else if op == Op::Resume {
                    any_agent = true;
                }
            }
            Op::Wait => {
                let (id, has_run) = self.pick(rng, true)?;
                csa_run = has_run;
                args.extend([s("session"), s("wait"), id]);
                args.push(format!("--timeout={}ms", rng.u32(100..3000)));
                if rng.bool() {
                    args.extend([s("--format"), s("json")]);
                }
            }
            Op::Delete => {
                let (id, _) = self.pick(rng, false)?;
                args.extend([s("session"), s("delete"), id]);
                if rng.u8(0..4) == 0 {
                    args.push(s("--force"));
                }
            }
            Op::Clean => {
                args.extend([s("session"), s("clean"), s("--format"), s("json")]);
                args.push(format!("--older-than={}s", rng.u32(2..60)));
                if rng.u8(0..5) == 0 {
                    args.push(s("--dry-run"));
                }
                self.scope(rng, &mut args);
            }
        }
        Some(Planned {
            op,
            args,
            agent,
            any_agent,
            csa_run,
        })
    }

    /// Judges one command's outcome; returns why it is unexpected, if it is.
    fn judge(&self, planned: &Planned, out: &Output) -> Result<(), String> {
        let Some(code) = out.status.code() else {
            return Err(format!("csa itself was killed: {}", out.status));
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("panicked at") {
            return Err("panic".into());
        }
        if stderr.lines().any(|l| l.trim_start().starts_with("ERROR")) {
            return Err("an ERROR log line".into());
        }
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        let agent_codes: Vec<i32> = match (planned.agent, planned.any_agent) {
            (Some(kind), _) => [kind.natural_code()].into_iter().chain(KILLED).collect(),
            (None, true) => Kind::ALL
                .iter()
                .map(|k| k.natural_code())
                .chain(KILLED)
                .collect(),
            (None, false) => Vec::new(),
        };
        if agent_codes.contains(&code) {
            return if errors.is_empty() {
                Ok(())
            } else {
                Err(format!("the agent's exit code {code}, with errors"))
            };
        }
        let Some((_, texts)) = planned.op.accepted().iter().find(|(c, _)| *c == code) else {
            return Err(format!("exit code {code} is not documented for this case"));
        };
        if let Some(bad) = errors
            .iter()
            .find(|line| !texts.iter().any(|t| line.contains(t)))
        {
            return Err(format!("unexpected error line {bad:?}"));
        }
        if planned.op == Op::Wait && code == 75 && planned.csa_run {
            return Err("wait said a session run by csa ended without a result".into());
        }
        if code != 0 && !texts.is_empty() && errors.is_empty() {
            return Err(format!("exit code {code} without its error message"));
        }
        if planned.op == Op::Reconcile && code == 0 {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("reconcile printed no JSON report: {e}"))?;
            if json["counts"]["errors"].as_u64() != Some(0) {
                return Err("reconcile reported errors".into());
            }
        }
        Ok(())
    }

    fn record(&self, planned: &Planned, out: &Output, verdict: Result<(), String>) {
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut report = self.report.lock().expect("report");
        *report.counts.entry((planned.op, code)).or_default() += 1;
        if code == 0 {
            for (note, n) in notes(planned.op, &out.stdout) {
                *report.notes.entry(note).or_default() += n;
            }
        }
        let texts = planned.op.accepted().iter().find(|(c, _)| *c == code);
        let first_error = stderr.lines().find(|l| l.starts_with("error:"));
        if let (Some((_, texts)), Some(line)) = (texts, first_error) {
            if let Some(text) = texts.iter().find(|t| line.contains(*t)) {
                *report.answers.entry((planned.op, code, text)).or_default() += 1;
            }
        }
        for w in stderr.lines().filter(|l| l.starts_with("warning:")) {
            // Count by what the warning says, without the path that differs each time.
            let key = w.rsplit(": ").next().unwrap_or(w).to_owned();
            *report.warnings.entry(key).or_default() += 1;
        }
        if let Err(why) = verdict {
            report.failures.push(format!(
                "{why}\n  command: csa {}\n  exit: {:?}\n  stdout: {}\n  stderr: {}",
                planned.args.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).trim_end(),
                stderr.trim_end().replace('\n', "\n          ")
            ));
        }
    }

    fn worker(&self, index: usize, mut rng: fastrand::Rng) {
        while !self.stop.load(Ordering::Relaxed) {
            // Random think time between commands (not synchronisation).
            std::thread::sleep(Duration::from_millis(rng.u64(0..40)));
            let Some(planned) = self.plan(&mut rng) else {
                continue;
            };
            self.inflight.lock().expect("inflight").insert(
                index,
                (format!("csa {}", planned.args.join(" ")), Instant::now()),
            );
            let out = self.csa(&planned.args).output().expect("run csa");
            self.inflight.lock().expect("inflight").remove(&index);
            let verdict = self.judge(&planned, &out);
            if out.status.success() {
                let stdout = String::from_utf8_lossy(&out.stdout);
                match planned.op {
                    Op::RunDetach | Op::ResumeDetach => self.remember(stdout.trim()),
                    Op::Delete => {
                        let id = planned.args[2].clone();
                        self.deleted.lock().expect("deleted").push(id);
                    }
                    _ => {}
                }
            }
            self.record(&planned, &out, verdict);
        }
    }

    /// Now and then SIGKILLs a detached supervisor (one whose `--detach` client has returned:
    /// its parent is no longer a process of the test), as a crash or the OOM killer would.
    /// Its agent lives on, holding the session's tool lock and the directory claim; once the
    /// agent exits, the session is Active with a dead owner, for reconcile (or wait, kill,
    /// resume, delete --force) to find.
    fn supervisor_crasher(&self, mut rng: fastrand::Rng) {
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(rng.u64(200..2000)));
            let procs = our_processes(&self.token);
            let ours: BTreeSet<u32> = procs.iter().map(|p| p.pid).collect();
            let supervisors: Vec<&Proc> = procs
                .iter()
                .filter(|p| !p.agent && p.pgrp == p.pid && !ours.contains(&p.ppid))
                .collect();
            if supervisors.is_empty() {
                continue;
            }
            sigkill(supervisors[rng.usize(0..supervisors.len())].pid);
            self.supervisor_kills.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Plays upstream's reconciler: takes a session's `.reconcile.lock` (flock, exclusive,
    /// non-blocking, as upstream does), holds it a little, lets go.
    fn upstream_reconciler(&self, mut rng: fastrand::Rng) {
        use fs_err::os::unix::fs::OpenOptionsExt;
        use nix::fcntl::{Flock, FlockArg};
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(rng.u64(0..30)));
            let Some((id, _)) = self.pick(&mut rng, true) else {
                continue;
            };
            let Some((sessions, _)) = self.sessions().into_iter().find(|(_, i)| *i == id) else {
                continue;
            };
            // Upstream creates the lock file if missing; a session deleted meanwhile is gone.
            let Ok(file) = fs_err::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(sessions.join(&id).join(".reconcile.lock"))
            else {
                continue;
            };
            if let Ok(held) = Flock::lock(file.into_parts().0, FlockArg::LockExclusiveNonblock) {
                self.lock_holds.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(rng.u64(5..250)));
                drop(held);
            }
        }
    }
}

/// What a successful command did, from its output: kill's action, and the counts of the
/// reconcile and clean JSON reports that show real work or a lost race.
fn notes(op: Op, stdout: &[u8]) -> Vec<(&'static str, u64)> {
    let text = String::from_utf8_lossy(stdout);
    let json = || serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
    let count = |json: &serde_json::Value, key: &str| json["counts"][key].as_u64().unwrap_or(0);
    match op {
        Op::Kill if text.contains("nothing to kill") => vec![("kill: nothing to kill", 1)],
        Op::Kill if text.contains("owner was already dead") => {
            vec![("kill: owner dead, reconciled", 1)]
        }
        Op::Kill => vec![("kill: killed", 1)],
        Op::Reconcile => {
            let json = json();
            vec![
                ("reconcile: synthesized", count(&json, "synthesized")),
                (
                    "reconcile: retired with result",
                    count(&json, "retired_with_result"),
                ),
                ("reconcile: skipped busy", count(&json, "skipped_busy")),
            ]
        }
        Op::Clean => {
            let json = json();
            vec![
                ("clean: deleted", count(&json, "deleted")),
                ("clean: skipped busy", count(&json, "skipped_busy")),
                ("clean: skipped alive", count(&json, "skipped_alive")),
            ]
        }
        _ => Vec::new(),
    }
}

/// A running process the test started (it carries the token).
struct Proc {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    /// An agent or an agent's descendant (it carries `CSA_SESSION_ID`); otherwise a csa
    /// process (a supervisor or a command).
    agent: bool,
    cmdline: String,
}

/// The processes the test started that are still running (zombies have exited).
fn our_processes(token: &str) -> Vec<Proc> {
    let mut out = Vec::new();
    for pid in csa_process::platform::pids().unwrap_or_default() {
        let Ok(environ) = csa_process::platform::environ(pid) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        if !vars.contains(&token.as_bytes()) {
            continue;
        }
        let Ok(stat) = csa_process::platform::stat(pid) else {
            continue;
        };
        if stat.has_exited() {
            continue;
        }
        let cmdline = csa_process::platform::cmdline(pid)
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        out.push(Proc {
            pid,
            ppid: stat.ppid,
            pgrp: stat.pgrp,
            agent: vars.iter().any(|v| v.starts_with(b"CSA_SESSION_ID=")),
            cmdline,
        });
    }
    out
}

/// `pid (parent ppid, group pgrp): command line` of each process, for a failure message.
fn describe(procs: &[Proc]) -> Vec<String> {
    procs
        .iter()
        .map(|p| {
            format!(
                "{} (parent {}, group {}): {}",
                p.pid, p.ppid, p.pgrp, p.cmdline
            )
        })
        .collect()
}

fn sigkill(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
}

/// SIGKILLs every agent process (and descendant) the test started; returns their groups.
fn kill_agents(token: &str) -> BTreeSet<u32> {
    let mut groups = BTreeSet::new();
    for p in our_processes(token) {
        if p.agent {
            sigkill(p.pid);
            groups.insert(p.pgrp);
        }
    }
    groups
}

/// SIGKILLs every process the test started, csa included (only when the stop hangs).
fn kill_all(token: &str) {
    for p in our_processes(token) {
        sigkill(p.pid);
    }
}

/// Lays out upstream-format sessions in the harness's project: dead owners (daemon.pid of a
/// process that is gone, with and without start ticks), live owners (a process in its own
/// group holding its tool lock, named with its start ticks), ended ones with and without a
/// result, a result beside an `active` phase whose owner died, and legacy `.complete` markers.
/// Returns the live owners, killed and reaped on drop.
fn upstream_sessions(env: &TestEnv, token: &str, rng: &mut fastrand::Rng) -> Vec<Agent> {
    let result = |status: &str, code: i32| {
        format!(
            "status = \"{status}\"\nexit_code = {code}\nsummary = \"upstream run\"\ntool = \"codex\"\n\
             started_at = \"2026-01-01T00:00:00Z\"\ncompleted_at = \"2026-01-01T00:00:00Z\"\n"
        )
    };
    let mut owners = Vec::new();
    for i in 0..UPSTREAM_SESSIONS {
        let s = env.session();
        let set_phase = |phase: &str, reason: Option<&str>| {
            let text = String::from_utf8(s.read("state.toml")).expect("utf8");
            let mut line = format!("phase = \"{phase}\"");
            if let Some(r) = reason {
                line.push_str(&format!("\ntermination_reason = \"{r}\""));
            }
            s.write("state.toml", text.replace("phase = \"active\"", &line));
        };
        match i % 10 {
            0..=2 => {
                let mut dead = Agent::spawn();
                let (pid, ticks) = (dead.pid(), dead.ticks());
                dead.kill9();
                if rng.bool() {
                    s.write("daemon.pid", format!("{pid} {ticks}\n"));
                } else {
                    s.write("daemon.pid", format!("{pid}\n"));
                }
            }
            3 => {
                let lock = s.path("locks/codex.lock");
                s.write("locks/codex.lock", "");
                let (key, value) = token.split_once('=').expect("token");
                let owner = Agent::spawn_cmd(
                    Command::new("sh")
                        .args(["-c", "exec 9>>\"$1\"; flock -x 9; exec sleep 100000", "sh"])
                        .arg(&lock)
                        .env(key, value)
                        .env("CSA_SESSION_ID", &s.id)
                        .process_group(0),
                );
                s.write(
                    "locks/codex.lock",
                    serde_json::json!({
                        "pid": owner.pid(),
                        "pid_start_time_ticks": owner.ticks(),
                        "tool_name": "codex",
                    })
                    .to_string(),
                );
                owners.push(owner);
            }
            4 | 5 => {
                set_phase("available", None);
                s.write("result.toml", result("success", 0));
            }
            6 => {
                set_phase("retired", Some("completed"));
                s.write("result.toml", result("failure", 2));
            }
            7 => {
                if rng.bool() {
                    set_phase("tool_exhausted", None);
                } else {
                    // Upstream leaves available sessions without a result too.
                    set_phase("available", None);
                }
            }
            8 => s.write("result.toml", result("success", 0)),
            _ => s.write(".complete", format!("{}\n", rng.u8(0..2))),
        }
        if rng.bool() {
            // Used just now: `clean --older-than` keeps it for a while.
            let text = String::from_utf8(s.read("state.toml")).expect("utf8");
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            s.write(
                "state.toml",
                text.replace(
                    "last_accessed = \"2026-11-21T06:33:50.574231058Z\"",
                    &format!("last_accessed = \"{now}\""),
                ),
            );
        }
        s.backdate();
    }
    owners
}

#[test]
fn sixteen_processes_of_random_commands_leave_no_violation_and_no_unexpected_error() {
    let duration = std::env::var("CSA_STRESS_DURATION").map_or(Duration::from_secs(20), |d| {
        humantime::parse_duration(&d).expect("CSA_STRESS_DURATION: a duration such as 20s or 10m")
    });
    let seed = std::env::var("CSA_STRESS_SEED").map_or_else(
        |_| fastrand::u64(..),
        |s| s.parse().expect("CSA_STRESS_SEED: an integer"),
    );
    println!("stress: seed {seed} (replay with CSA_STRESS_SEED={seed}), duration {duration:?}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let env = TestEnv::new();
    let extra = tempfile::tempdir().expect("tempdir");
    let mut dirs = vec![env.project.clone()];
    for name in ["a", "b", "c"] {
        let dir = extra.path().join(name);
        fs_err::create_dir(&dir).expect("mkdir");
        dirs.push(dir);
    }
    let sessions_dirs = dirs
        .iter()
        .map(|d| {
            let key = fs_err::canonicalize(d).expect("canonicalize");
            env.state_root
                .join(key.to_string_lossy().trim_start_matches('/'))
                .join("sessions")
        })
        .collect();
    let token = format!("STRESS_TOKEN={}-{seed}", std::process::id());
    let pgids = extra.path().join("agent-pgids");
    let mut owners = upstream_sessions(&env, &token, &mut rng);
    let world = World {
        env,
        dirs,
        sessions_dirs,
        token,
        pgids,
        recent: Mutex::new(VecDeque::new()),
        deleted: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        inflight: Mutex::new(BTreeMap::new()),
        report: Mutex::new(Report::default()),
        lock_holds: AtomicU64::new(0),
        supervisor_kills: AtomicU64::new(0),
    };

    let started = Instant::now();
    let mut groups = BTreeSet::new();
    let mut stuck: Option<String> = None;
    std::thread::scope(|scope| {
        let world = &world;
        let mut handles = Vec::new();
        for index in 0..WORKERS {
            let rng = fastrand::Rng::with_seed(rng.u64(..));
            handles.push(scope.spawn(move || world.worker(index, rng)));
        }
        let upstream_rng = fastrand::Rng::with_seed(rng.u64(..));
        handles.push(scope.spawn(move || world.upstream_reconciler(upstream_rng)));
        let crasher_rng = fastrand::Rng::with_seed(rng.u64(..));
        handles.push(scope.spawn(move || world.supervisor_crasher(crasher_rng)));
        let every = Duration::from_secs(10);
        let mut next_progress = every;
        while started.elapsed() < duration {
            std::thread::sleep(Duration::from_millis(200).min(duration - started.elapsed()));
            if started.elapsed() >= next_progress {
                let report = world.report.lock().expect("report");
                println!(
                    "stress: {:.0?}: {} commands, {} unexpected, {} sessions",
                    started.elapsed(),
                    report.counts.values().sum::<u64>(),
                    report.failures.len(),
                    world.sessions().len()
                );
                next_progress += every;
            }
        }
        // Stop issuing commands; kill the agents so in-flight runs, resumes and waits end,
        // until every worker has returned.
        world.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !handles.iter().all(|h| h.is_finished()) {
            groups.extend(kill_agents(&world.token));
            if stuck.is_none() && Instant::now() >= deadline {
                // Say what hangs, then kill csa too so that the workers return and the test
                // fails instead of hanging.
                let inflight = world.inflight.lock().expect("inflight");
                stuck = Some(format!(
                    "commands still running 60 s after the stop: {:#?}\nprocesses: {:#?}",
                    inflight
                        .values()
                        .map(|(cmd, since)| format!("{cmd} (for {:?})", since.elapsed()))
                        .collect::<Vec<_>>(),
                    describe(&our_processes(&world.token))
                ));
            }
            if stuck.is_some() {
                kill_all(&world.token);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(stuck.is_none(), "{}", stuck.unwrap_or_default());
    let ran_for = started.elapsed();
    let population = world.sessions().len();

    // Every agent group gone, and every supervisor exited on its own once its agent died.
    for owner in &mut owners {
        owner.kill9();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        groups.extend(kill_agents(&world.token));
        let left = our_processes(&world.token);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes still running 60 s after every agent was killed: {:#?}",
            describe(&left)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let started_groups: BTreeSet<u32> = fs_err::read_to_string(&world.pgids)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();

    // Every process is gone. Let the 30 s fresh-output rule lapse, as time would, so that the
    // final reconcile judges by processes alone: a session whose supervisor was killed right
    // after its agent exited (result published, state not yet written) is otherwise alive by
    // its fresh logs, skipped, and reported by the checker as active with a result while its
    // owner lives. Regression: seed 5656525406155704077 failed that way.
    crate::harness::backdate_tree(&world.env.state_root, 120);
    let out = world.csa(&[
        "session".into(),
        "reconcile".into(),
        "--all-projects".into(),
        "--format".into(),
        "json".into(),
    ]);
    let out = { out }.output().expect("final reconcile");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reconcile JSON");
    let final_errors = json["counts"]["errors"].as_u64().unwrap_or(u64::MAX);
    let out_check = world
        .csa(&[
            "debug".into(),
            "check".into(),
            "--format".into(),
            "json".into(),
        ])
        .output()
        .expect("debug check");
    let violations: Vec<serde_json::Value> =
        serde_json::from_slice(&out_check.stdout).expect("check JSON");

    let report = world.report.lock().expect("report");
    let mut per_op: BTreeMap<Op, (u64, Vec<String>)> = BTreeMap::new();
    for ((op, code), n) in &report.counts {
        let entry = per_op.entry(*op).or_default();
        entry.0 += n;
        entry.1.push(format!("{code}:{n}"));
    }
    let total: u64 = per_op.values().map(|(n, _)| n).sum();
    println!(
        "stress: {total} commands in {ran_for:.1?} by {WORKERS} workers; {} agent process groups; \
         {} upstream-reconciler lock holds; {} supervisors SIGKILLed; {population} sessions left",
        started_groups.len(),
        world.lock_holds.load(Ordering::Relaxed),
        world.supervisor_kills.load(Ordering::Relaxed)
    );
    for (op, (n, codes)) in &per_op {
        println!(
            "  {:<16} {n:>6}   exit codes {}",
            op.name(),
            codes.join(" ")
        );
    }
    for ((op, code, text), n) in &report.answers {
        println!("  {:<16} {code:>3} x{n:<5} {text:?}", op.name());
    }
    for (note, n) in &report.notes {
        println!("  {note:<40} {n}");
    }
    for (w, n) in &report.warnings {
        println!("  warning x{n}: {w}");
    }
    for f in &report.failures {
        println!("UNEXPECTED: {f}");
    }
    println!(
        "stress: final reconcile exit {:?}, {final_errors} errors; {} violations",
        out.status.code(),
        violations.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} unexpected answers (printed above; seed {seed})",
        report.failures.len()
    );
    assert_eq!(
        (out.status.code(), final_errors),
        (Some(0), 0),
        "final reconcile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        violations.is_empty(),
        "invariant violations after the stress (seed {seed}): {violations:#?}"
    );
    let failures = report.failures.len() as u64 + violations.len() as u64;
    assert_eq!(failures, 0);
    csa_reliability::record(&csa_reliability::Row {
        key: "3-stress".into(),
        area: "stress (16 processes)".into(),
        cases: total,
        failure_kind: "violations or unexpected errors".into(),
        failures,
        detail: format!(
            "{total} commands in {:.0} s ({}); {} agents, {} upstream lock holds, \
             {} supervisors SIGKILLed",
            ran_for.as_secs_f64(),
            per_op
                .iter()
                .map(|(op, (n, _))| format!("{} {n}", op.name()))
                .collect::<Vec<_>>()
                .join(", "),
            started_groups.len(),
            world.lock_holds.load(Ordering::Relaxed),
            world.supervisor_kills.load(Ordering::Relaxed)
        ),
    });
}

/// Regression (found by the stress test): `csa session kill` waited for the owner's process
/// group with `killpg(pgid, 0)`, which succeeds while an unreaped zombie is left in it, so it
/// hung forever on an owner whose parent does not reap it (here: the test, until the end).
#[test]
fn kill_returns_when_only_an_unreaped_zombie_is_left_in_the_group() {
    let env = TestEnv::new();
    let s = env.session();
    // Upstream gives its tools the session's marker, which kill requires.
    let mut owner = Agent::spawn_cmd(
        Command::new("sh")
            .args(["-c", "exec sleep 100000"])
            .env("CSA_SESSION_ID", &s.id)
            .process_group(0),
    );
    s.write(
        "locks/codex.lock",
        serde_json::json!({"pid": owner.pid(), "pid_start_time_ticks": owner.ticks()}).to_string(),
    );
    s.backdate();
    let mut kill = env
        .csa(&["session", "kill", &s.id, "--grace", "100ms"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn kill");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = kill.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = kill.kill();
            let _ = kill.wait();
            panic!("kill still waiting 30 s after its target became a zombie");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        matches!(
            csa_process::probe(owner.pid()),
            csa_process::Probe::Exited { zombie: true }
        ),
        "the owner is still an unreaped zombie while kill returned"
    );
    assert_eq!(s.phase(), "retired");
    owner.kill9();
}

/// Regression (found by the stress test): a `wait` whose session was deleted under it exited 3
/// with "state.toml is missing"; a concurrent delete is "not found" (4).
#[test]
fn wait_on_a_session_deleted_meanwhile_is_not_found() {
    use std::io::{BufRead, BufReader};
    let env = TestEnv::new();
    let s = env.session();
    let owner = Agent::spawn();
    s.daemon_pid(owner.pid(), owner.ticks());
    let mut wait = env
        .csa(&["session", "wait", &s.id, "--timeout", "60s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wait");
    let mut stderr = BufReader::new(wait.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read");
    assert!(line.starts_with("csa: waiting for session"), "{line:?}");
    // What `csa session delete` does first: rename the directory away.
    let aside = env.sessions_dir.join(format!(".deleting-{}", s.id));
    fs_err::rename(&s.dir, &aside).expect("rename");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("read");
    let status = wait.wait().expect("wait");
    assert_eq!(status.code(), Some(4), "{rest}");
    assert!(
        rest.contains("was deleted by another process meanwhile"),
        "{rest}"
    );
    fs_err::remove_dir_all(&aside).expect("cleanup");
}

/// Regression (found with the stress test's upstream sessions): resuming a session that
/// upstream had ended without a result (as it leaves `available` sessions) made the checker
/// report turn 1's result missing from the turn history, though no such result ever existed.
/// The turns csa ran must still keep theirs.
#[test]
fn resuming_an_upstream_session_ended_without_a_result_leaves_no_violation() {
    let env = TestEnv::new();
    let s = env.session();
    let state = String::from_utf8(s.read("state.toml")).expect("utf8");
    s.write(
        "state.toml",
        state.replace("phase = \"active\"", "phase = \"available\""),
    );
    let check = |env: &TestEnv| {
        let out = env.run(&["debug", "check", "--format", "json"]);
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), list)
    };
    let out = env.run(&["session", "resume", &s.id, "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(s.state()["turn_count"].as_integer(), Some(2));
    assert_eq!(check(&env), (Some(0), vec![]));
    // Turn 2 was csa's: resuming again archives its result, which must then stay.
    let out = env.run(&["session", "resume", &s.id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let archived = s.path("output/turns/turn-000002/result.toml");
    assert!(archived.exists());
    assert_eq!(check(&env), (Some(0), vec![]));
    fs_err::remove_file(&archived).expect("remove");
    let (code, list) = check(&env);
    assert_eq!(code, Some(1));
    assert_eq!(list.len(), 1, "{list:#?}");
    assert!(list[0]["path"]
        .as_str()
        .expect("path")
        .ends_with("turn-000002/result.toml"));
}

/// Regression (found by the stress test, which SIGKILLs detached supervisors): when every
/// process a session's locks name had exited and nobody held its locks (its supervisor was
/// killed, its agent then exited, its fresh logs still counting as progress), `csa session
/// kill` waited 10 s for a turn end that could not come, then failed with an undocumented
/// error. It now refuses at once, as docs/cli.md says for a session with no verifiable process.
#[test]
fn kill_refuses_at_once_when_the_owner_died_without_finalizing() {
    let env = TestEnv::new();
    let s = env.session();
    let mut agent = Agent::spawn();
    s.write(
        "locks/codex.lock",
        serde_json::json!({"pid": agent.pid(), "pid_start_time_ticks": agent.ticks()}).to_string(),
    );
    agent.kill9();
    s.backdate();
    // Written just now: progress, so the session still reads as alive.
    s.write("output.log", "last words\n");
    let started = Instant::now();
    let out = env.run(&["session", "kill", &s.id, "--grace", "100ms"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("is alive, but no process can be verified as its own")
            && stderr.contains("died without finalizing"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "kill waited {:?} for a turn end that cannot come",
        started.elapsed()
    );
    assert_eq!(s.phase(), "active", "refused: nothing changed");
}
