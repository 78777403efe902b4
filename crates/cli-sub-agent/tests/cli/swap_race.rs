//! Regression (issue 11, case 1): a symbolic link swapped in mid-command. A process of the same
//! user exchanged `sessions/<ULID>` with a link to a directory outside the state root
//! (`renameat2(RENAME_EXCHANGE)` in a loop), and 300 `reconcile <ULID>` runs wrote
//! `result.toml`, `.tmp-*` and `state.toml` into the outside directory while 200 `delete` runs
//! emptied it: the session directory was checked with `O_NOFOLLOW` when its lock was taken, but
//! every later step used path strings, and the delete sweep's `read_dir` followed the link.
//!
//! Here a swapper thread exchanges, in a loop, a directory of the state root with a link (inside
//! the root) to a canary directory outside it, while `reconcile`, `run` (whose supervisor
//! finalizes the turn), `kill`, `resume`, `delete` and `clean` run [`runs`] times each, for three
//! targets: a session directory, the project's key directory, and its `sessions/`. The canary
//! (a copy of what the command would act on, so that a command that followed the link finds
//! something to act on) must stay byte-identical, and nothing may appear or disappear outside
//! the root. The swaps counted between a command's start and its exit are the swaps that
//! landed mid-command; commands may refuse (a link where a directory was), never escape.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rustix::fs::{renameat_with, RenameFlags, CWD};

use crate::harness::{Session, TestEnv};

/// Runs of each command, per swap target, unless `CSA_SWAP_RUNS` says otherwise: a few, so that
/// the suite stays within CI's time budget. The figures in docs/reliability.md are of
/// `CSA_SWAP_RUNS=100` (1,800 commands).
const RUNS: usize = 10;

/// [`RUNS`], or `CSA_SWAP_RUNS`.
fn runs() -> usize {
    std::env::var("CSA_SWAP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(RUNS)
}

/// The commands raced against the swapper.
const COMMANDS: [&str; 6] = ["reconcile", "finalize", "kill", "resume", "delete", "clean"];

// ---------------------------------------------------------------------------------------------
// The swapper

/// What the swapper exchanges.
#[derive(Debug, Clone)]
enum Target {
    /// Nothing: it waits.
    Idle,
    /// `dir` with `link`, back and forth.
    Pair { dir: PathBuf, link: PathBuf },
    /// The first session directory that appears in `sessions` and is not in `known`, with
    /// `link` (for `csa run`, whose session id is chosen when it runs).
    Discover {
        sessions: PathBuf,
        known: BTreeSet<String>,
        link: PathBuf,
        found: Option<PathBuf>,
    },
}

struct Shared {
    target: Mutex<Target>,
    wake: Condvar,
    stop: AtomicBool,
    swaps: AtomicU64,
}

/// A thread exchanging two names with `renameat2(RENAME_EXCHANGE)` as fast as it can. Each
/// exchange happens while it holds the target's mutex, so once [`Swapper::pause`] has the mutex
/// no exchange is in flight.
struct Swapper {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Swapper {
    fn start() -> Self {
        let shared = Arc::new(Shared {
            target: Mutex::new(Target::Idle),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            swaps: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::spawn(move || loop {
            let mut target = s
                .wake
                .wait_while(s.target.lock().expect("target"), |t| {
                    matches!(t, Target::Idle) && !s.stop.load(Ordering::Relaxed)
                })
                .expect("target");
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            let pair = match &mut *target {
                Target::Idle => None,
                Target::Pair { dir, link } => Some((dir.clone(), link.clone())),
                Target::Discover {
                    sessions,
                    known,
                    link,
                    found,
                } => {
                    if found.is_none() {
                        *found = new_session(sessions, known);
                    }
                    found.clone().map(|dir| (dir, link.clone()))
                }
            };
            if let Some((dir, link)) = pair {
                if renameat_with(CWD, &dir, CWD, &link, RenameFlags::EXCHANGE).is_ok() {
                    s.swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(target);
            std::thread::yield_now();
        });
        Swapper {
            shared,
            thread: Some(thread),
        }
    }

    fn swaps(&self) -> u64 {
        self.shared.swaps.load(Ordering::Relaxed)
    }

    fn set(&self, target: Target) {
        *self.shared.target.lock().expect("target") = target;
        self.shared.wake.notify_all();
    }

    /// Stops swapping (no exchange is in flight when it returns) and puts the real directory
    /// back at its name if the link is there. Returns the directory that was swapped, if any.
    fn pause(&self) -> Option<PathBuf> {
        let mut target = self.shared.target.lock().expect("target");
        let pair = match std::mem::replace(&mut *target, Target::Idle) {
            Target::Idle => None,
            Target::Pair { dir, link } => Some((dir, link)),
            Target::Discover { link, found, .. } => found.map(|dir| (dir, link)),
        };
        let (dir, link) = pair?;
        let is_link = |p: &Path| fs_err::symlink_metadata(p).is_ok_and(|m| m.is_symlink());
        if is_link(&dir) && !is_link(&link) {
            renameat_with(CWD, &dir, CWD, &link, RenameFlags::EXCHANGE).expect("swap back");
        }
        Some(dir)
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A session directory of `sessions` not in `known`.
fn new_session(sessions: &Path, known: &BTreeSet<String>) -> Option<PathBuf> {
    fs_err::read_dir(sessions)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.len() == 26 && !n.starts_with('.') && !known.contains(n))
        .map(|n| sessions.join(n))
}

fn session_names(sessions: &Path) -> BTreeSet<String> {
    fs_err::read_dir(sessions)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Snapshots of what lies outside the root

/// Everything under `dir`, never following a link: relative path to (mode, content).
type Snapshot = BTreeMap<PathBuf, (u32, Option<Vec<u8>>)>;

fn snapshot(dir: &Path) -> Snapshot {
    fn walk(root: &Path, path: &Path, out: &mut Snapshot) {
        let Ok(meta) = fs_err::symlink_metadata(path) else {
            return;
        };
        let rel = path.strip_prefix(root).expect("under root").to_owned();
        let content = if meta.is_symlink() {
            Some(
                fs_err::read_link(path)
                    .map_or_else(|_| Vec::new(), |p| p.into_os_string().into_encoded_bytes()),
            )
        } else if meta.is_file() {
            Some(fs_err::read(path).unwrap_or_default())
        } else {
            None
        };
        out.insert(rel, (meta.mode(), content));
        if meta.is_dir() {
            for entry in fs_err::read_dir(path).expect("ls").flatten() {
                walk(root, &entry.path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What changed from `before` to `after`, in a few words per path.
fn diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (path, entry) in before {
        match after.get(path) {
            None => out.push(format!("removed {}", path.display())),
            Some(now) if now != entry => out.push(format!("changed {}", path.display())),
            Some(_) => {}
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) {
            out.push(format!("created {}", path.display()));
        }
    }
    out
}

/// Copies the tree `from` to `to` (files and directories; modes 0700/0600).
fn copy_tree(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).expect("mkdir");
    for entry in fs_err::read_dir(from).expect("ls").flatten() {
        let kind = entry.file_type().expect("type");
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else if kind.is_file() {
            fs_err::copy(entry.path(), &dest).expect("copy");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The race

/// Which directory the swapper exchanges with a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swapped {
    /// `sessions/<ULID>`.
    Session,
    /// The project's key directory (`<root>/<key>`).
    Project,
    /// `<root>/<key>/sessions`.
    Sessions,
}

impl Swapped {
    fn name(self) -> &'static str {
        match self {
            Swapped::Session => "session directory",
            Swapped::Project => "project directory",
            Swapped::Sessions => "sessions/",
        }
    }
}

/// What the race found, per (target, command).
#[derive(Debug, Default, Clone)]
struct Tally {
    runs: u64,
    /// Swaps that landed while the command ran.
    swaps: u64,
    /// Runs during which at least one swap landed.
    hit: u64,
    /// Exit codes seen, with counts.
    exits: BTreeMap<Option<i32>, u64>,
    /// Runs after which something outside the root had changed.
    breaches: u64,
    /// The first few breaches, described.
    examples: Vec<String>,
}

struct Race<'a> {
    env: &'a TestEnv,
    swapper: &'a Swapper,
    outside: PathBuf,
    /// The FIFO a `csa run` agent waits on (outside the root and the project).
    fifo: PathBuf,
    /// Directories found at the link's name, set aside (see [`Race::canary`]).
    displaced: AtomicU64,
    tallies: BTreeMap<(&'static str, &'static str), Tally>,
}

impl Race<'_> {
    fn csa(&self, args: &[&str]) -> Command {
        self.env.csa(args)
    }

    /// The directory `which` exchanges and the link it exchanges it with (inside the root).
    fn pair(&self, which: Swapped, session: &Path) -> (PathBuf, PathBuf) {
        let dir = match which {
            Swapped::Session => session.to_owned(),
            Swapped::Sessions => self.env.sessions_dir.clone(),
            Swapped::Project => self.env.sessions_dir.parent().expect("key dir").to_owned(),
        };
        let link = dir.parent().expect("parent").join(".swap-link");
        (dir, link)
    }

    /// Lays out the canary for a command about to act on `session`: a copy of the directory
    /// the swapper exchanges (for a project or `sessions/`, only the part leading to
    /// `session`), and the link to it. Returns the canary and its snapshot.
    fn canary(&self, which: Swapped, session: &Path, link: &Path) -> (PathBuf, Snapshot) {
        let canary = self.outside.join("canary");
        if canary.exists() {
            fs_err::remove_dir_all(&canary).expect("rm canary");
        }
        let id = session.file_name().expect("id");
        let inner = match which {
            Swapped::Session => canary.clone(),
            Swapped::Sessions => canary.join(id),
            Swapped::Project => canary.join("sessions").join(id),
        };
        copy_tree(session, &inner);
        fs_err::write(canary.join("keep.txt"), "precious\n").expect("write");
        // A directory at the link's name is a session directory the swapper had moved there
        // when a command renamed the link in its place (csa before issue 11 did): set aside.
        if fs_err::symlink_metadata(link).is_ok_and(|m| m.is_dir()) {
            let n = self.displaced.fetch_add(1, Ordering::Relaxed);
            let aside = link.with_file_name(format!(".swap-displaced-{n}"));
            fs_err::rename(link, aside).expect("set aside");
        }
        let _ = fs_err::remove_file(link);
        std::os::unix::fs::symlink(&canary, link).expect("symlink");
        (canary.clone(), snapshot(&self.outside))
    }

    /// Runs `cmd` with the swapper on `target`, then pauses it and checks outside the root.
    fn run(
        &mut self,
        which: Swapped,
        command: &'static str,
        target: Target,
        before: &Snapshot,
        cmd: &mut Command,
    ) {
        self.measure(which, command, target, before, |_| {
            cmd.output().expect("run csa")
        });
    }

    /// Sets the swapper on `target`, runs `body` (which runs csa), pauses the swapper and
    /// counts what happened: the swaps that landed while `body` ran, the exit code, and any
    /// change outside the root (the project directory and `outside/`, against `before`).
    fn measure(
        &mut self,
        which: Swapped,
        command: &'static str,
        target: Target,
        before: &Snapshot,
        body: impl FnOnce(&Self) -> Output,
    ) {
        let project_before = snapshot(&self.env.project);
        let swaps_before = self.swapper.swaps();
        self.swapper.set(target);
        let out = body(self);
        let swaps = self.swapper.swaps() - swaps_before;
        self.swapper.pause();
        let mut changed = diff(before, &snapshot(&self.outside));
        changed.extend(diff(&project_before, &snapshot(&self.env.project)));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("panicked") {
            changed.push(format!("panicked: {stderr}"));
        }
        let tally = self.tallies.entry((which.name(), command)).or_default();
        tally.runs += 1;
        tally.swaps += swaps;
        tally.hit += u64::from(swaps > 0);
        *tally.exits.entry(out.status.code()).or_default() += 1;
        if !changed.is_empty() {
            tally.breaches += 1;
            if tally.examples.len() < 3 {
                tally.examples.push(format!(
                    "{} swapped, {command} (exit {:?}, {swaps} swaps mid-command): {}; stderr: {}",
                    which.name(),
                    out.status.code(),
                    changed.join(", "),
                    stderr.lines().take(3).collect::<Vec<_>>().join(" | ")
                ));
            }
        }
    }

    /// One run of `command` against a fresh session, with `which` swapped.
    fn once(&mut self, which: Swapped, command: &'static str) {
        let env = self.env;
        match command {
            "reconcile" => {
                let s = env.session();
                let (dir, link) = self.pair(which, &s.dir);
                let (_, before) = self.canary(which, &s.dir, &link);
                let mut cmd = self.csa(&["session", "reconcile", &s.id]);
                self.run(
                    which,
                    command,
                    Target::Pair { dir, link },
                    &before,
                    &mut cmd,
                );
            }
            "finalize" => {
                // A template session gives the canary its shape; `csa run` makes its own.
                let s = ended(env, "retired");
                let (dir, link) = self.pair(which, &s.dir);
                let (_, before) = self.canary(which, &s.dir, &link);
                let go = self.fifo.clone();
                let _ = fs_err::remove_file(&go);
                nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .expect("mkfifo");
                let target = match which {
                    Swapped::Session => Target::Discover {
                        sessions: env.sessions_dir.clone(),
                        known: session_names(&env.sessions_dir),
                        link: link.clone(),
                        found: None,
                    },
                    _ => Target::Pair { dir, link },
                };
                // The agent ends when the test lets it: once the supervisor has published the
                // session and the swapper has exchanged it, so the finalize runs among swaps.
                let fifo = go.display().to_string();
                let mut cmd = self.csa(&["run", "--", "sh", "-c", "read x < \"$0\"", &fifo]);
                cmd.stdout(Stdio::null()).stderr(Stdio::piped());
                self.measure(which, command, target, &before, |race| {
                    let mut child = cmd.spawn().expect("spawn csa run");
                    race.release_when_swapping(&go, &mut child);
                    child.wait_with_output().expect("wait csa run")
                });
                let _ = fs_err::remove_file(&go);
            }
            "kill" => {
                let out = self
                    .csa(&["run", "--detach", "--", "sleep", "1000"])
                    .output();
                let out = out.expect("run --detach");
                assert_eq!(out.status.code(), Some(0), "{out:?}");
                let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                let s = Session {
                    dir: env.sessions_dir.join(&id),
                    id,
                };
                let (dir, link) = self.pair(which, &s.dir);
                let (_, before) = self.canary(which, &s.dir, &link);
                let mut cmd = self.csa(&["session", "kill", &s.id, "--grace", "2s"]);
                self.run(
                    which,
                    command,
                    Target::Pair { dir, link },
                    &before,
                    &mut cmd,
                );
                // Whatever the kill did, stop the session before the next run.
                let out = self
                    .csa(&["session", "kill", &s.id])
                    .output()
                    .expect("kill");
                let ended = self
                    .csa(&["session", "wait", &s.id, "--timeout", "20s"])
                    .output()
                    .expect("wait");
                assert!(
                    ended.status.code().is_some_and(|c| c != 124),
                    "the session ended after the race: {out:?} {ended:?}"
                );
            }
            "resume" => {
                let s = ended(env, "available");
                let (dir, link) = self.pair(which, &s.dir);
                let (_, before) = self.canary(which, &s.dir, &link);
                let mut cmd = self.csa(&["session", "resume", &s.id, "--", "true"]);
                self.run(
                    which,
                    command,
                    Target::Pair { dir, link },
                    &before,
                    &mut cmd,
                );
            }
            "delete" => {
                let s = ended(env, "retired");
                let (dir, link) = self.pair(which, &s.dir);
                let (_, before) = self.canary(which, &s.dir, &link);
                let mut cmd = self.csa(&["session", "delete", &s.id]);
                self.run(
                    which,
                    command,
                    Target::Pair { dir, link },
                    &before,
                    &mut cmd,
                );
            }
            "clean" => {
                let s = ended(env, "retired");
                let (dir, link) = self.pair(which, &s.dir);
                let (_, before) = self.canary(which, &s.dir, &link);
                let mut cmd = self.csa(&["session", "clean", "--older-than", "1s"]);
                self.run(
                    which,
                    command,
                    Target::Pair { dir, link },
                    &before,
                    &mut cmd,
                );
            }
            other => unreachable!("{other}"),
        }
    }

    /// Lets the agent of the `csa run` `child` end (writes a line to its FIFO `go`) once the
    /// swapper has exchanged its session at least once; returns early if the run ends first.
    fn release_when_swapping(&self, go: &Path, child: &mut std::process::Child) {
        use std::os::unix::fs::OpenOptionsExt;
        let swaps_before = self.swapper.swaps();
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return;
            }
            if self.swapper.swaps() == swaps_before {
                std::thread::yield_now();
                continue;
            }
            // Non-blocking: ENXIO until the agent has opened the FIFO for reading.
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(go)
            {
                Ok(mut fifo) => {
                    let _ = fifo.write_all(b"go\n");
                    return;
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// An ended session of `env` in `phase`, resumable, with a result and a run record.
fn ended(env: &TestEnv, phase: &str) -> Session {
    let s = env.session();
    let state = String::from_utf8(s.read("state.toml"))
        .expect("utf8")
        .replace("phase = \"active\"", &format!("phase = \"{phase}\""));
    s.write("state.toml", state);
    s.write(
        "result.toml",
        "status = \"success\"\nexit_code = 0\nsummary = \"x\"\ntool = \"codex\"\n\
         started_at = \"2026-01-01T00:00:00Z\"\ncompleted_at = \"2026-01-01T00:00:00Z\"\n",
    );
    s.backdate();
    s
}

#[test]
fn a_symlink_swapped_in_mid_command_never_sends_a_write_outside_the_root() {
    let env = TestEnv::new();
    let outside = env.state_root.parent().expect("base").join("outside");
    fs_err::create_dir_all(&outside).expect("mkdir");
    let fifo_dir = env.state_root.parent().expect("base").join("fifo");
    fs_err::create_dir_all(&fifo_dir).expect("mkdir");
    let top_before: BTreeSet<_> = session_names(env.state_root.parent().expect("base"));
    let swapper = Swapper::start();
    let mut race = Race {
        env: &env,
        swapper: &swapper,
        outside,
        fifo: fifo_dir.join("go"),
        displaced: AtomicU64::new(0),
        tallies: BTreeMap::new(),
    };
    let started = Instant::now();
    let rounds = runs();
    for which in [Swapped::Session, Swapped::Project, Swapped::Sessions] {
        for i in 0..rounds {
            for command in COMMANDS {
                race.once(which, command);
            }
            if i % 10 == 9 {
                eprintln!(
                    "swap race: {}: {} rounds, {:.0} s",
                    which.name(),
                    i + 1,
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    let elapsed = started.elapsed();
    let tallies = std::mem::take(&mut race.tallies);
    let displaced = race.displaced.load(Ordering::Relaxed);
    drop(swapper);
    let top_after: BTreeSet<_> = session_names(env.state_root.parent().expect("base"));

    let mut runs = 0;
    let mut swaps = 0;
    let mut hit = 0;
    let mut breaches = 0;
    let mut examples = Vec::new();
    for ((which, command), t) in &tallies {
        eprintln!(
            "swap race: {which} swapped, {command}: {} runs, {} swaps mid-command in {} runs, \
             exits {:?}, {} breaches",
            t.runs, t.swaps, t.hit, t.exits, t.breaches
        );
        runs += t.runs;
        swaps += t.swaps;
        hit += t.hit;
        breaches += t.breaches;
        examples.extend(t.examples.iter().cloned());
    }
    eprintln!(
        "swap race: {runs} commands in {:.0} s, {swaps} swaps mid-command in {hit} of them, \
         {breaches} breaches; {displaced} session directories left at the link's name",
        elapsed.as_secs_f64()
    );
    assert_eq!(
        top_before, top_after,
        "nothing created or removed beside the root"
    );
    assert!(
        breaches == 0,
        "{breaches} commands changed something outside the state root:\n{}",
        examples.join("\n")
    );
    // The race must have raced: most commands saw the link come and go.
    assert!(
        hit * 2 > runs,
        "only {hit} of {runs} commands saw a swap: the race did not race"
    );
    let per_target = [Swapped::Session, Swapped::Project, Swapped::Sessions]
        .iter()
        .map(|w| {
            let (n, h) = tallies
                .iter()
                .filter(|((which, _), _)| *which == w.name())
                .fold((0, 0), |(n, h), (_, t)| (n + t.swaps, h + t.hit));
            format!("{} {n} swaps in {h} commands", w.name())
        })
        .collect::<Vec<_>>()
        .join("; ");
    csa_reliability::record(&csa_reliability::Row {
        key: "7-symlink-swap".into(),
        area: "symlink swap mid-command (renameat2 exchange)".into(),
        cases: runs,
        failure_kind: "writes, renames or deletions outside the root".into(),
        failures: breaches,
        detail: format!(
            "{} commands ({}) x {rounds} x 3 targets; {swaps} swaps landed mid-command, in {hit} \
             commands ({per_target}); {:.0} s",
            COMMANDS.len(),
            COMMANDS.join(", "),
            elapsed.as_secs_f64()
        ),
    });
}
