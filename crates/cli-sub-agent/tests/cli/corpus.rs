//! The bad-input corpus (issue 5, "Bad input"): every file csa reads, generated here in every
//! broken form, under every command of the real `csa`, run under a data-size limit.
//!
//! Files: state.toml, result.toml, metadata.toml, daemon.pid, `locks/<tool>.lock`,
//! `.liveness.snapshot`, `.complete`, `daemon-completion.toml`, run.toml, output.log (per
//! session);
//! `cooldown-marker.toml`, `.csa-active/<ULID>`, `.csa-active/.scan.toml`, `.csa-active/.ended`
//! and `.csa-claim.lock` (per project). Forms: empty, truncated at every byte boundary of a valid
//! file, binary garbage, invalid UTF-8, wrong types, duplicate keys, 100 MB (a sparse file behind
//! a valid start), a directory, a symlink to a valid file elsewhere, to /dev/zero, a symlink
//! loop, mode 000 (root reads it anyway: these tests run as root, so it is only "unreadable"
//! for other users) and a FIFO (which blocks a plain `open` for reading).
//!
//! Every case is one session (or one project) of a state root that also holds healthy sessions.
//! Whole-root commands (`reconcile` with and without `--full`, `--dry-run`, `list`, `clean`,
//! `debug check`) run once over a root holding every case, every truncation included; the
//! per-session commands run on every form and on a sample of the truncations (every boundary is
//! parsed in-process by csa-session's `tests/store/parsers.rs`). For each run the test asserts:
//! no panic, no hang (a timeout), no abort under `prlimit --data` (bounded memory), the exit code
//! docs/cli.md gives, the broken file named on stdout or stderr where csa promises a diagnostic,
//! the broken file and the rest of its session byte-identical unless the command finalized (or
//! deleted, or resumed) the session as it would a healthy one, no write through a symlink, and the
//! healthy sessions next to the broken ones processed as usual.
//!
//! Documented exceptions: csa's own caches (`cooldown-marker.toml`, `.csa-active/…`) may be
//! replaced whole or (record entries) removed; `.csa-claim.lock` is rewritten in place by the
//! `csa run` that takes it; a file csa does not need to decide (metadata.toml, daemon.pid, a
//! lock body, `.liveness.snapshot`, `.complete`, `daemon-completion.toml`, the caches) does not
//! stop a dead session from being finalized, which rewrites state.toml and adds result.toml as
//! for a healthy session.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use chrono::{SecondsFormat, Utc};
use csa_session::claim::ClaimHolder;
use csa_session::completion;
use csa_session::create::RunRecord;
use csa_session::liveness::{DaemonPid, LockBody};
use csa_session::result::SessionResult;
use csa_session::state::StateView;
use fs_err::os::unix::fs::OpenOptionsExt;
use serde_json::Value;

use crate::harness::backdate_tree;

const MIB: u64 = 1 << 20;
/// Size of the "100 MB" form.
const HUGE: u64 = 100 * MIB;
/// `prlimit --data`: a healthy csa needs a few MiB; reading a 100 MB file whole cannot fit.
const MEMORY_LIMIT: u64 = 64 * MIB;
/// Far longer than any per-session command here needs (none waits for a live agent): a run
/// reaching it hung.
const TIMEOUT: Duration = Duration::from_secs(15);
/// The same for a command over a whole corpus root (a real reconcile finalizes about a thousand
/// sessions, each with its fsyncs).
const ROOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent csa processes for the per-session commands.
const WORKERS: usize = 4;
/// A pid above any `pid_max`: it never names a process.
const DEAD_PID: &str = "999999999";

mod forms;
mod judge;
mod root;
mod run;
mod tree;

use forms::*;
use judge::*;
use root::*;
use run::*;
use tree::*;

/// Sessions (cases) laid out, over every root.
#[derive(Default)]
struct Tally {
    cases: AtomicUsize,
}

/// Every whole-root command, on one root holding every case (every truncation included): the
/// read-only ones first (nothing may change), then `clean` (only the old healthy session goes),
/// then `reconcile` (every dead session is finalized, the rest left as it was), then again.
fn whole_root_phase(csa: &Csa, all: &[Spec], t: &Times, findings: &Findings, tally: &Tally) {
    let fx = Corpus::build(all, t);
    tally.cases.fetch_add(fx.cases.len(), Ordering::Relaxed);
    let root_before = tree(&fx.root);
    let run = |args: &[&str]| csa.run_root(&fx, args);
    let list_text = run(&["session", "list", "--all-projects"]);
    judge_list(&fx, &list_text, false, findings);
    let list_json = run(&["session", "list", "--all-projects", "--format", "json"]);
    judge_list(&fx, &list_json, true, findings);
    let dry_text = run(&["session", "reconcile", "--all-projects", "--dry-run"]);
    if dry_text.sane() != Ok(3) {
        findings.push(format!(
            "reconcile --dry-run (text): expected exit 3\n  {}",
            dry_text.describe()
        ));
    }
    let check_run = run(&["session", "reconcile", "--all-projects", "--check"]);
    if check_run.sane() != Ok(3) {
        findings.push(format!(
            "reconcile --check: expected exit 3\n  {}",
            check_run.describe()
        ));
    }
    let dry_json = run(&[
        "session",
        "reconcile",
        "--all-projects",
        "--dry-run",
        "--format",
        "json",
    ]);
    judge_reconcile_report(&fx, &dry_json, true, None, findings);
    let clean_dry = run(&[
        "session",
        "clean",
        "--older-than",
        "30d",
        "--all-projects",
        "--dry-run",
        "--format",
        "json",
    ]);
    judge_clean(&fx, &clean_dry, true, findings);
    let check = run(&["debug", "check", "--format", "json"]);
    judge_check(&fx, &check, &BTreeSet::new(), findings);
    root_unchanged(&fx, &root_before, findings);

    let before = before_of(&fx);
    let clean = run(&[
        "session",
        "clean",
        "--older-than",
        "30d",
        "--all-projects",
        "--format",
        "json",
    ]);
    judge_clean(&fx, &clean, false, findings);
    judge_sessions_after(&fx, &before, &clean.args, false, |_| Delta::None, findings);
    if fx.main_sessions.join(&fx.neighbour_old).exists() {
        findings.push("clean: the old healthy session is still there".into());
    }
    let clean_again = run(&["session", "clean", "--older-than", "30d", "--all-projects"]);
    if clean_again.sane() != Ok(3) {
        findings.push(format!(
            "second clean: expected exit 3\n  {}",
            clean_again.describe()
        ));
    }
    reconcile_for_real(csa, &fx, false, findings);
}

/// A real reconcile (`--full` or not) of a corpus root, judged by its report and by the files;
/// then a second one, which must find nothing more to do, and the invariant checker.
fn reconcile_for_real(csa: &Csa, fx: &Corpus, full: bool, findings: &Findings) {
    let before = before_of(fx);
    let mut args = vec!["session", "reconcile", "--all-projects", "--format", "json"];
    if full {
        args.push("--full");
    }
    let ran = csa.run_root(fx, &args);
    judge_reconcile_report(fx, &ran, false, None, findings);
    if let Some(json) = ran.json() {
        judge_sessions_after(
            fx,
            &before,
            &ran.args,
            false,
            delta_of_report(&json),
            findings,
        );
    }
    let settled = before_of(fx);
    let again = csa.run_root(fx, &["session", "reconcile", "--all-projects"]);
    match again.sane() {
        Ok(3) if again.out().contains("reconcile: 0 synthesized, 0 retired") => {}
        _ => findings.push(format!(
            "second reconcile: expected exit 3 and nothing done\n  {}",
            again.describe()
        )),
    }
    judge_sessions_after(fx, &settled, &again.args, false, |_| Delta::None, findings);
    let check = csa.run_root(fx, &["debug", "check", "--format", "json"]);
    judge_check(fx, &check, &BTreeSet::new(), findings);
}

/// The per-session read-only commands on a root holding the sample, and a dry run that must
/// agree with `is-alive` on every session; nothing may change. Then a real `reconcile --full`.
fn read_only_phase(csa: &Csa, sample: &[Spec], t: &Times, findings: &Findings, tally: &Tally) {
    let fx = Corpus::build(sample, t);
    tally.cases.fetch_add(fx.cases.len(), Ordering::Relaxed);
    let root_before = tree(&fx.root);
    let alive = liveness_of(csa, &fx, findings);
    per_session(csa, &fx, &Cmd::READ_ONLY, &alive, findings, false);
    let dry = csa.run_root(
        &fx,
        &[
            "session",
            "reconcile",
            "--all-projects",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    judge_reconcile_report(&fx, &dry, true, Some(&alive), findings);
    root_unchanged(&fx, &root_before, findings);
    reconcile_for_real(csa, &fx, true, findings);
}

/// Read-only commands left the whole root as it was, and every symlink's target.
fn root_unchanged(fx: &Corpus, before: &Tree, findings: &Findings) {
    let after = tree(&fx.root);
    if &after != before {
        let changed: Vec<_> = before
            .keys()
            .chain(after.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| before.get(*k) != after.get(*k))
            .take(10)
            .collect();
        findings.push(format!(
            "read-only commands changed the state root: {changed:?}"
        ));
    }
    fx.outside_intact(findings, "read-only commands");
}

/// Each mutating per-session command on its own root holding the sample.
fn per_session_phase(csa: &Csa, sample: &[Spec], t: &Times, findings: &Findings, tally: &Tally) {
    for cmd in Cmd::MUTATING {
        let fx = Corpus::build(sample, t);
        tally.cases.fetch_add(fx.cases.len(), Ordering::Relaxed);
        let alive = liveness_of(csa, &fx, findings);
        // Resume claims the project directory: one at a time, so no resume is refused as busy.
        per_session(csa, &fx, &[cmd], &alive, findings, cmd == Cmd::Resume);
        fx.outside_intact(findings, &format!("{cmd:?}"));
    }
}

/// The claim holder record is only read while the claim is held: hold each claim here (through
/// a symlink where there is one), then `csa run` must say busy (or refuse a claim file it cannot
/// lock without following a link) without rewriting it, and `debug check` must not read an
/// endless or huge body; released, `csa run` takes it (or refuses the same way).
fn claim_phase(
    csa: &Csa,
    all: &[Spec],
    sample: &[Spec],
    t: &Times,
    findings: &Findings,
    tally: &Tally,
) {
    use nix::fcntl::{Flock, FlockArg};
    let specs: Vec<Spec> = all
        .iter()
        .copied()
        .filter(|s| s.target == Target::Claim)
        .collect();
    let fx = Corpus::build(&specs, t);
    tally.cases.fetch_add(fx.cases.len(), Ordering::Relaxed);
    let mut held = Vec::new();
    let mut held_ids = BTreeSet::new();
    for case in &fx.cases {
        let file = fs_err::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&case.path);
        let Ok(file) = file else { continue };
        if let Ok(lock) = Flock::lock(file.into_parts().0, FlockArg::LockExclusiveNonblock) {
            held.push(lock);
            held_ids.insert(case.id.clone());
        }
    }
    // A held claim whose record parses names a dead session: a true violation.
    let extra: BTreeSet<PathBuf> = fx
        .cases
        .iter()
        .filter(|c| held_ids.contains(&c.id) && c.valid)
        .map(|c| c.path.clone())
        .collect();
    let check = csa.run_root(&fx, &["debug", "check", "--format", "json"]);
    judge_check(&fx, &check, &extra, findings);
    // `csa run` on the sample only: each loser of an unreadable record retries it for 1 s.
    let sampled: Vec<&Case> = fx
        .cases
        .iter()
        .filter(|c| sample.contains(&c.spec))
        .collect();
    let runs = |held_now: bool| {
        par_each(&sampled, |case| {
            let before = node(&case.path);
            let sessions_before = tree(&case.sessions_dir).len();
            let cd = case.project_dir.display().to_string();
            let ran = csa.run(&fx, &case.project_dir, &["run", "--cd", &cd, "--", "true"]);
            let held_here = held_now && held_ids.contains(&case.id);
            let openable = matches!(
                case.spec.form,
                Form::Empty
                    | Form::Truncated(_)
                    | Form::Garbage
                    | Form::InvalidUtf8
                    | Form::WrongTypes
                    | Form::DuplicateKeys
                    | Form::Huge
                    | Form::NoPermissions
                    | Form::Fifo
            );
            let mut bad = Vec::new();
            match ran.sane() {
                Err(why) => bad.push(why),
                Ok(code) => {
                    let want = match (openable, held_here) {
                        (false, _) => 3,
                        (true, true) => 75,
                        (true, false) => 0,
                    };
                    if code != want {
                        bad.push(format!("expected exit {want}"));
                    }
                    if code == 3 && !ran.stderr.contains(&case.path_str()) {
                        bad.push("expected the error to name the claim file".into());
                    }
                    if code != 0 {
                        if node(&case.path) != before {
                            bad.push("a claim csa did not take was changed".into());
                        }
                        if tree(&case.sessions_dir).len() != sessions_before {
                            bad.push("a refused run created files".into());
                        }
                    }
                }
            }
            for b in bad {
                findings.push(format!(
                    "{} (held {held_here}): {b}\n  {}",
                    case.name(),
                    ran.describe()
                ));
            }
        });
    };
    runs(true);
    drop(held);
    runs(false);
    fx.outside_intact(findings, "csa run");
}

#[test]
fn every_command_survives_every_broken_file() {
    let started = Instant::now();
    let t = Times::now();
    let csa = Csa::new();
    let findings = Findings::default();
    let tally = Tally::default();
    let all = all_specs(&t);
    let sample = sampled_specs(&all, &t);
    let timed = |name: &str, phase: &dyn Fn()| {
        let start = Instant::now();
        phase();
        println!(
            "corpus: {name} phase took {:.1}s",
            start.elapsed().as_secs_f64()
        );
    };
    thread::scope(|s| {
        s.spawn(|| {
            timed("whole-root", &|| {
                whole_root_phase(&csa, &all, &t, &findings, &tally)
            })
        });
        s.spawn(|| {
            timed("read-only", &|| {
                read_only_phase(&csa, &sample, &t, &findings, &tally)
            })
        });
        s.spawn(|| {
            timed("per-session", &|| {
                per_session_phase(&csa, &sample, &t, &findings, &tally)
            })
        });
    });
    // Alone: it holds a flock on /dev/zero, which other roots' claim symlinks point to.
    timed("claim", &|| {
        claim_phase(&csa, &all, &sample, &t, &findings, &tally)
    });
    let found = findings.take();
    let runs = csa.runs.load(Ordering::Relaxed);
    let forms: BTreeSet<_> = all
        .iter()
        .map(|s| match s.form {
            Form::Truncated(_) => "truncated".to_owned(),
            f => format!("{f:?}"),
        })
        .collect();
    let summary = format!(
        "{} files x {} forms: {} cases ({} in the per-session sample; {} laid out over all roots), {} csa runs in {:.1}s, memory limit {}",
        Target::ALL.len(),
        forms.len(),
        all.len(),
        sample.len(),
        tally.cases.load(Ordering::Relaxed),
        runs,
        started.elapsed().as_secs_f64(),
        if csa.prlimit {
            format!("{} MiB", MEMORY_LIMIT / MIB)
        } else {
            "none (prlimit missing)".to_owned()
        }
    );
    println!("corpus: {summary}");
    let per_file: Vec<String> = Target::ALL
        .iter()
        .map(|t| {
            let n = all.iter().filter(|s| s.target == *t).count();
            format!("{} {n}", t.label())
        })
        .collect();
    println!("corpus: cases per file: {}", per_file.join(", "));
    assert!(
        found.is_empty(),
        "{} findings ({summary}):\n{}",
        found.len(),
        found.join("\n")
    );
    csa_reliability::record(&csa_reliability::Row {
        key: "4-corpus".into(),
        area: "bad-input corpus".into(),
        cases: u64::try_from(runs).expect("count"),
        failure_kind: "panics, hangs or wrong exits".into(),
        failures: u64::try_from(found.len()).expect("count"),
        detail: summary,
    });
}

/// The memory bound is real: under the same `prlimit --data`, reading a 100 MB file whole fails
/// (this test binary re-run as `read_whole_helper`), while reading a small one succeeds.
#[test]
fn the_memory_limit_catches_a_whole_read() {
    let csa = Csa::new();
    if !csa.prlimit {
        eprintln!("skipped: prlimit not found");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let small = dir.path().join("small");
    fs_err::write(&small, vec![b'x'; 1 << 20]).expect("write");
    let huge = dir.path().join("huge");
    fs_err::File::create(&huge)
        .expect("create")
        .set_len(HUGE)
        .expect("sparse");
    let exe = std::env::current_exe().expect("test binary");
    let read = |path: &Path| {
        Command::new("prlimit")
            .arg(format!("--data={MEMORY_LIMIT}"))
            .arg(&exe)
            .args([
                "--exact",
                "corpus::read_whole_helper",
                "--ignored",
                "--test-threads",
                "1",
            ])
            .env("CSA_CORPUS_READ_WHOLE", path)
            .output()
            .expect("run helper")
    };
    let ok = read(&small);
    assert!(
        ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("1 passed"),
        "a 1 MiB read must fit: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let over = read(&huge);
    assert!(
        !over.status.success(),
        "a 100 MB whole read must not fit under {} MiB",
        MEMORY_LIMIT / MIB
    );
}

/// Reads the file named by `CSA_CORPUS_READ_WHOLE` whole (run by the test above).
#[test]
#[ignore = "run by the_memory_limit_catches_a_whole_read under prlimit"]
fn read_whole_helper() {
    if let Some(path) = std::env::var_os("CSA_CORPUS_READ_WHOLE") {
        let bytes = fs_err::read(path).expect("read");
        assert!(!bytes.is_empty());
    }
}
