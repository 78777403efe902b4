//! The benchmark suite: which cases run, in which order, and the requirements they are held to.
//!
//! Order: `csa --version`; then for each size, `session reconcile` after `sessions/` changed
//! (every run an incremental rescan), the no-op `session reconcile` (its warm-up runs build
//! csa's cache) and `session reconcile --full`; then `session list --format json`
//! and the two in-process baselines at the list size; then the no-op reconcile (at 10,000) and
//! `list` again with each process backend forced (`CSA_PROCESS_BACKEND=procfs|portable`). Each csa case starts with one captured run
//! (a warm-up that also reports csa's error if it fails), then settles the fixture's `sessions`
//! directory mtime ([`Fixture::settle`]), then the remaining warm-up runs (at least one), the
//! measured runs, and the peak-RSS helper runs. A failing case is reported in its row and the
//! suite goes on.
//!
//! Requirements (product targets): no-op reconcile median ≤ 5 ms at 10,000 ended sessions (with
//! the default backend, and with the portable one forced), its peak RSS ≤ 16 MiB at 100,000, and
//! list ≤ 1.5× the read-only baseline at 10,000. The `--full`
//! to no-op ratios and list against the read+parse baseline are reported without a target.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::baseline;
use crate::cli::RunArgs;
use crate::fixture::Fixture;
use crate::measure::{self, Invocation, Summary};
use crate::report::{self, Check, Figures, Report, Row};
use crate::BenchError;

/// Ended sessions at which the reconcile time target applies.
pub const RECONCILE_TIME_AT: usize = 10_000;
/// Median no-op reconcile target, in milliseconds.
pub const RECONCILE_TIME_MAX_MS: f64 = 5.0;
/// Ended sessions at which the reconcile memory target applies.
pub const RECONCILE_RSS_AT: usize = 100_000;
/// Peak RSS target of a no-op reconcile, in MiB.
pub const RECONCILE_RSS_MAX_MIB: f64 = 16.0;
/// Highest allowed ratio of `session list` to the read-only baseline.
pub const LIST_RATIO_MAX: f64 = 1.5;
/// The environment variable that forces csa's process backend (csa-process `backend`).
pub const BACKEND_ENV: &str = "CSA_PROCESS_BACKEND";
/// The process backends the no-op reconcile and list are measured with, each forced.
pub const BACKENDS: [&str; 2] = ["procfs", "portable"];

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The tables to print.
    pub report: Report,
    /// Cases that could not be measured.
    pub failed_cases: usize,
    /// Requirements not met.
    pub failed_requirements: usize,
}

/// Runs the whole suite with `args`; progress goes to stderr, the report is returned.
///
/// Errors: only harness failures: [`BenchError::Io`] or [`BenchError::NoStartTicks`] while
/// preparing a fixture, [`BenchError::Parse`] from a baseline. Failures of csa itself are
/// reported in the affected rows.
pub fn run(args: &RunArgs) -> Result<Outcome, BenchError> {
    let started = Instant::now();
    let suite = Suite { args };
    let mut report = Report::default();

    let version = Invocation::new(&args.csa, ["--version"]);
    let version_text = match version.run_captured() {
        Ok(out) => out.lines().next().unwrap_or_default().trim().to_owned(),
        Err(err) => format!("`--version` failed: {}", chain(&err)),
    };
    let floor = Invocation::new("/bin/true", Vec::<OsString>::new())
        .peak_rss_kib()
        .map_or_else(
            |_| "unknown".to_owned(),
            |kib| format!("{} MiB", report::mebibytes(report::kib_to_mib(kib))),
        );
    report.header = vec![
        "## csa benchmark".to_owned(),
        String::new(),
        format!(
            "Binary: `{}` ({version_text}). Wall time: median of {} runs after {} warm-up runs, \
             spawn to wait, output to /dev/null. Peak RSS: max `ru_maxrss` of {} runs \
             (floor of the method: `/bin/true` reads as {floor}). CPUs: {}.",
            args.csa.display(),
            args.runs,
            args.warmup.max(2),
            args.rss_runs,
            std::thread::available_parallelism().map_or(1, usize::from),
        ),
    ];

    progress("csa --version");
    report.rows.push(Row {
        case: "`csa --version` (spawn cost)".to_owned(),
        sessions: None,
        outcome: suite.measure(&version, None),
    });

    let mut sizes = args.sizes.clone();
    sizes.push(args.list_size);
    sizes.sort_unstable();
    sizes.dedup();
    let mut fixtures = BTreeMap::new();
    for &size in &sizes {
        fixtures.insert(size, suite.fixture(size)?);
    }

    let mut noop = BTreeMap::new();
    let mut full = BTreeMap::new();
    let mut rescan = BTreeMap::new();
    for &size in &args.sizes {
        let fixture = &fixtures[&size];
        let case = "`session reconcile` after `sessions/` changed (incremental rescan)";
        progress(&format!("{case} at {} sessions", report::thousands(size)));
        let invocation = Invocation::new(&args.csa, session_args(fixture, "reconcile"));
        let outcome = suite.measure_rescan(&invocation, fixture);
        rescan.insert(size, outcome.clone().ok());
        report.rows.push(Row {
            case: case.to_owned(),
            sessions: Some((size, fixture.live.len())),
            outcome,
        });
        for (full_scan, results) in [(false, &mut noop), (true, &mut full)] {
            let mut argv = session_args(fixture, "reconcile");
            let case = if full_scan {
                argv.push("--full".into());
                "`session reconcile --full`"
            } else {
                "`session reconcile` (no-op)"
            };
            progress(&format!("{case} at {} sessions", report::thousands(size)));
            let outcome = suite.measure(&Invocation::new(&args.csa, argv), Some(fixture));
            results.insert(size, outcome.clone().ok());
            report.rows.push(Row {
                case: case.to_owned(),
                sessions: Some((size, fixture.live.len())),
                outcome,
            });
        }
    }

    let fixture = &fixtures[&args.list_size];
    let sessions = Some((args.list_size, fixture.live.len()));
    let mut argv = session_args(fixture, "list");
    argv.extend(["--format".into(), "json".into()]);
    progress(&format!(
        "session list at {} sessions",
        report::thousands(args.list_size)
    ));
    let list = suite.measure(&Invocation::new(&args.csa, argv), Some(fixture));
    report.rows.push(Row {
        case: "`session list --format json`".to_owned(),
        sessions,
        outcome: list.clone(),
    });
    progress("baselines");
    let read = suite.in_process(|| baseline::read_states(&fixture.sessions_dir))?;
    let parse = suite.in_process(|| baseline::parse_states(&fixture.sessions_dir))?;
    for (case, time) in [
        ("baseline: read every `state.toml` (in-process)", read),
        (
            "baseline: read + parse into `toml::Table` (in-process)",
            parse,
        ),
    ] {
        report.rows.push(Row {
            case: case.to_owned(),
            sessions,
            outcome: Ok(Figures {
                time,
                peak_rss_kib: None,
            }),
        });
    }

    // The no-op reconcile and list once more with each process backend forced
    // (docs/platforms.md); procfs only where it can be used.
    let backend_size = if args.sizes.contains(&RECONCILE_TIME_AT) {
        RECONCILE_TIME_AT
    } else {
        args.list_size
    };
    let mut backend_noop = BTreeMap::new();
    for backend in BACKENDS {
        if backend == "procfs" && !Path::new("/proc/self/stat").exists() {
            continue;
        }
        for (fixture_size, subcommand) in [(backend_size, "reconcile"), (args.list_size, "list")] {
            let fixture = &fixtures[&fixture_size];
            let mut argv = session_args(fixture, subcommand);
            let case = if subcommand == "list" {
                argv.extend(["--format".into(), "json".into()]);
                format!("`session list --format json`, {BACKEND_ENV}={backend}")
            } else {
                format!("`session reconcile` (no-op), {BACKEND_ENV}={backend}")
            };
            progress(&format!(
                "{case} at {} sessions",
                report::thousands(fixture_size)
            ));
            let invocation = Invocation::new(&args.csa, argv).with_env(BACKEND_ENV, backend);
            let outcome = suite.measure(&invocation, Some(fixture));
            if subcommand == "reconcile" {
                backend_noop.insert(backend, outcome.clone().ok());
            }
            report.rows.push(Row {
                case,
                sessions: Some((fixture_size, fixture.live.len())),
                outcome,
            });
        }
    }

    progress("csa run");
    crate::run_cases::measure(
        &args.csa,
        &args.cache_dir.join("run"),
        args.runs.into(),
        &mut report,
    )?;

    let median_ms = |figures: Option<&Figures>| figures.map(|f| f.time.median.as_secs_f64() * 1e3);
    let noop_at = |size| noop.get(&size).and_then(Option::as_ref);
    report.checks.push(Check::at_most(
        format!(
            "no-op reconcile median at {} ended sessions",
            report::thousands(RECONCILE_TIME_AT)
        ),
        format!("≤ {RECONCILE_TIME_MAX_MS} ms"),
        median_ms(noop_at(RECONCILE_TIME_AT)),
        RECONCILE_TIME_MAX_MS,
        |ms| format!("{} ms", report::millis(ms)),
    ));
    report.checks.push(Check::at_most(
        format!(
            "no-op reconcile peak RSS at {} ended sessions",
            report::thousands(RECONCILE_RSS_AT)
        ),
        format!("≤ {RECONCILE_RSS_MAX_MIB} MiB"),
        noop_at(RECONCILE_RSS_AT)
            .and_then(|f| f.peak_rss_kib)
            .map(report::kib_to_mib),
        RECONCILE_RSS_MAX_MIB,
        |mib| format!("{} MiB", report::mebibytes(mib)),
    ));
    if backend_size == RECONCILE_TIME_AT {
        report.checks.push(Check::at_most(
            format!(
                "no-op reconcile median at {} ended sessions, portable backend",
                report::thousands(RECONCILE_TIME_AT)
            ),
            format!("≤ {RECONCILE_TIME_MAX_MS} ms"),
            median_ms(backend_noop.get("portable").and_then(Option::as_ref)),
            RECONCILE_TIME_MAX_MS,
            |ms| format!("{} ms", report::millis(ms)),
        ));
    }
    let list_ms = median_ms(list.as_ref().ok());
    let ratio_to = |base: Summary| list_ms.map(|ms| ms / (base.median.as_secs_f64() * 1e3));
    report.checks.push(Check::at_most(
        format!(
            "list ÷ read-only baseline at {}",
            report::thousands(args.list_size)
        ),
        format!("≤ {LIST_RATIO_MAX}x"),
        ratio_to(read),
        LIST_RATIO_MAX,
        report::ratio,
    ));
    report.checks.push(Check::info(
        format!(
            "list ÷ read+parse baseline at {}",
            report::thousands(args.list_size)
        ),
        ratio_to(parse).map(report::ratio),
    ));
    for &size in &args.sizes {
        let rescan_ms = median_ms(rescan.get(&size).and_then(Option::as_ref));
        report.checks.push(Check::info(
            format!("reconcile rescan ÷ no-op at {}", report::thousands(size)),
            rescan_ms
                .zip(median_ms(noop_at(size)))
                .map(|(rescan, noop)| report::ratio(rescan / noop)),
        ));
        let full_ms = median_ms(full.get(&size).and_then(Option::as_ref));
        let ratio = full_ms
            .zip(median_ms(noop_at(size)))
            .map(|(full, noop)| report::ratio(full / noop));
        report.checks.push(Check::info(
            format!("reconcile --full ÷ no-op at {}", report::thousands(size)),
            ratio,
        ));
    }

    let failed_cases = report.rows.iter().filter(|r| r.outcome.is_err()).count();
    let failed_requirements = report
        .checks
        .iter()
        .filter(|c| c.verdict == report::Verdict::Fail)
        .count();
    progress(&format!(
        "finished in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(Outcome {
        report,
        failed_cases,
        failed_requirements,
    })
}

struct Suite<'a> {
    args: &'a RunArgs,
}

impl Suite<'_> {
    /// The cached fixture with `ended` ended sessions, generated if needed, live sessions made
    /// alive.
    fn fixture(&self, ended: usize) -> Result<Fixture, BenchError> {
        let dir = self.args.cache_dir.join(ended.to_string());
        let fixture = match Fixture::open_cached(&dir, ended, self.args.live)? {
            Some(fixture) => fixture,
            None => {
                progress(&format!(
                    "generating {} + {} sessions in {}",
                    report::thousands(ended),
                    self.args.live,
                    dir.display()
                ));
                let start = Instant::now();
                let fixture = Fixture::generate(&dir, ended, self.args.live)?;
                progress(&format!(
                    "generated in {:.1} s",
                    start.elapsed().as_secs_f64()
                ));
                fixture
            }
        };
        fixture.refresh_live()?;
        Ok(fixture)
    }

    /// Measures one csa invocation (on `fixture`, if any); on failure returns why, as shown in
    /// the table. The first warm-up run is captured, for csa's error message; then the
    /// fixture's `sessions` directory is [settled](Fixture::settle), since that run may have
    /// changed it, and the remaining warm-up runs (at least one) follow so csa's cache is warm.
    /// Afterwards the fixture's live sessions must still be live ([`Fixture::check_live`]).
    fn measure(
        &self,
        invocation: &Invocation,
        fixture: Option<&Fixture>,
    ) -> Result<Figures, String> {
        let measured = || -> Result<Figures, BenchError> {
            invocation.run_captured()?;
            if let Some(fixture) = fixture {
                fixture.settle()?;
            }
            let warmup = usize::from(self.args.warmup.max(2)) - 1;
            let time = measure::sample(warmup, self.args.runs.into(), || invocation.time_once())?;
            let mut peak_rss_kib = None;
            for _ in 0..self.args.rss_runs {
                let kib = invocation.peak_rss_kib()?;
                peak_rss_kib = Some(peak_rss_kib.map_or(kib, |max: u64| max.max(kib)));
            }
            if let Some(fixture) = fixture {
                fixture.check_live()?;
            }
            Ok(Figures {
                time: time.unwrap_or_else(zero_summary),
                peak_rss_kib,
            })
        };
        measured().map_err(|err| {
            let reason = chain(&err);
            progress(&format!("error: {reason}"));
            reason
        })
    }

    /// Like [`Suite::measure`], but before every run (outside the timed span) the fixture's
    /// `sessions` directory mtime moves, as when a session is created: each run is the rescan a
    /// reconcile does after a new session appeared.
    fn measure_rescan(
        &self,
        invocation: &Invocation,
        fixture: &Fixture,
    ) -> Result<Figures, String> {
        let measured = || -> Result<Figures, BenchError> {
            invocation.run_captured()?;
            let warmup = usize::from(self.args.warmup.max(2)) - 1;
            let time = measure::sample(warmup, self.args.runs.into(), || {
                fixture.touch_sessions()?;
                invocation.time_once()
            })?;
            fixture.check_live()?;
            fixture.settle()?;
            Ok(Figures {
                time: time.unwrap_or_else(zero_summary),
                peak_rss_kib: None,
            })
        };
        measured().map_err(|err| {
            let reason = chain(&err);
            progress(&format!("error: {reason}"));
            reason
        })
    }

    /// Times an in-process baseline with the same warm-up and run counts as the csa cases.
    fn in_process(
        &self,
        mut once: impl FnMut() -> Result<usize, BenchError>,
    ) -> Result<Summary, BenchError> {
        let time = measure::sample(
            self.args.warmup.max(2).into(),
            self.args.runs.into(),
            || {
                let start = Instant::now();
                std::hint::black_box(once()?);
                Ok(start.elapsed())
            },
        )?;
        Ok(time.unwrap_or_else(zero_summary))
    }
}

/// `--state-dir ROOT session <subcommand> --cd PROJECT`.
fn session_args(fixture: &Fixture, subcommand: &str) -> Vec<OsString> {
    vec![
        "--state-dir".into(),
        fixture.state_dir.clone().into_os_string(),
        "session".into(),
        subcommand.into(),
        "--cd".into(),
        path_arg(&fixture.project),
    ]
}

fn path_arg(path: &Path) -> OsString {
    path.as_os_str().to_owned()
}

fn zero_summary() -> Summary {
    Summary {
        median: Duration::ZERO,
        min: Duration::ZERO,
        max: Duration::ZERO,
        runs: 0,
    }
}

/// `err` and its causes on one line, joined by `: `.
fn chain(err: &BenchError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn progress(message: &str) {
    eprintln!("csa-bench: {message}");
}
