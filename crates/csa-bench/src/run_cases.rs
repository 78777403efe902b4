//! The `csa run` cases: the cost of launching a command through csa, against running it
//! directly, and how fast `--detach` returns.
//!
//! - `true` run directly and `csa run -- true` (in a fresh project and state root), median of the
//!   suite's run count each, interleaved so both see the same machine load. Requirement: at most
//!   10 ms more than `true` itself.
//! - `csa run --detach -- sleep 60`, each in its own project directory (a directory runs one
//!   session at a time), timed until it returns. Requirement: under 20 ms. The agents are
//!   killed afterwards through the pids their sessions record.

use std::path::Path;
use std::time::Duration;

use crate::measure::{Invocation, Summary};
use crate::report::{self, Check, Figures, Report, Row};
use crate::BenchError;

/// Highest allowed median overhead of `csa run -- true` over `true`, in milliseconds.
pub const RUN_OVERHEAD_MAX_MS: f64 = 10.0;
/// Highest allowed median time for `csa run --detach` to return, in milliseconds.
pub const DETACH_MAX_MS: f64 = 20.0;

/// Measures the cases into `report`, working under `dir` (emptied first).
///
/// Errors: [`BenchError::Io`] preparing `dir`. Failures of csa are reported in the rows.
pub fn measure(csa: &Path, dir: &Path, runs: usize, report: &mut Report) -> Result<(), BenchError> {
    if dir.exists() {
        fs_err::remove_dir_all(dir)?;
    }
    let state = dir.join("state");
    let project = dir.join("project");
    fs_err::create_dir_all(&project)?;
    let direct = Invocation::new("true", Vec::<String>::new());
    let through = Invocation::new(
        csa,
        [
            "--state-dir".into(),
            state.clone().into_os_string(),
            "run".into(),
            "--cd".into(),
            project.clone().into_os_string(),
            "--".into(),
            "true".into(),
        ],
    );
    let mut direct_times = Vec::new();
    let mut through_times = Vec::new();
    let interleaved = (|| -> Result<(), BenchError> {
        for i in 0..runs + 2 {
            let d = direct.time_once()?;
            let t = through.time_once()?;
            if i >= 2 {
                direct_times.push(d);
                through_times.push(t);
            }
        }
        Ok(())
    })();
    let mut detach_times = Vec::new();
    let detached = (|| -> Result<(), BenchError> {
        for i in 0..runs + 2 {
            let project = dir.join(format!("detached-{i}"));
            fs_err::create_dir_all(&project)?;
            let detach = Invocation::new(
                csa,
                [
                    "--state-dir".into(),
                    state.clone().into_os_string(),
                    "run".into(),
                    "--detach".into(),
                    "--cd".into(),
                    project.into_os_string(),
                    "--".into(),
                    "sleep".into(),
                    "60".into(),
                ],
            );
            let t = detach.time_once()?;
            if i >= 2 {
                detach_times.push(t);
            }
        }
        Ok(())
    })();
    kill_agents(&state);

    let row = |case: &str, result: &Result<(), BenchError>, times: &[Duration]| Row {
        case: case.to_owned(),
        sessions: None,
        outcome: match result {
            Ok(()) => Summary::of(times)
                .map(|time| Figures {
                    time,
                    peak_rss_kib: None,
                })
                .ok_or_else(|| "no runs".to_owned()),
            Err(err) => Err(err.to_string()),
        },
    };
    report
        .rows
        .push(row("`true` (direct)", &interleaved, &direct_times));
    report
        .rows
        .push(row("`csa run -- true`", &interleaved, &through_times));
    report.rows.push(row(
        "`csa run --detach -- sleep 60` (until it returns)",
        &detached,
        &detach_times,
    ));
    let median = |times: &[Duration]| Summary::of(times).map(|s| s.median.as_secs_f64() * 1e3);
    let overhead = median(&through_times)
        .zip(median(&direct_times))
        .map(|(a, b)| a - b);
    report.checks.push(Check::at_most(
        "`csa run -- true` minus `true`, medians",
        format!("≤ {RUN_OVERHEAD_MAX_MS} ms"),
        overhead,
        RUN_OVERHEAD_MAX_MS,
        |ms| format!("{} ms", report::millis(ms)),
    ));
    report.checks.push(Check::at_most(
        "`csa run --detach` returns, median",
        format!("< {DETACH_MAX_MS} ms"),
        median(&detach_times),
        DETACH_MAX_MS,
        |ms| format!("{} ms", report::millis(ms)),
    ));
    Ok(())
}

/// Kills every detached agent this run started: their pids are in their sessions' lock bodies
/// (`<state>/<key>/sessions/<ULID>/locks/*.lock`); each agent leads its own process group, so
/// the group goes.
fn kill_agents(state: &Path) {
    let mut stack = vec![state.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if dir.ends_with("locks") {
                let pid = fs_err::read_to_string(&path)
                    .ok()
                    .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
                    .and_then(|v| v["pid"].as_i64())
                    .and_then(|p| i32::try_from(p).ok());
                if let Some(pid) = pid.filter(|&p| p > 1) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}
