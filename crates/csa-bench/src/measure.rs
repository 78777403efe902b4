//! Running the binary under test: wall time per run, and peak RSS of one child.
//!
//! Wall time is taken with [`Instant`] from just before `spawn` to the return of `wait`, with
//! stdin, stdout and stderr on `/dev/null`, so it includes exec, dynamic loading and process
//! teardown: what a hook or a shell prompt pays.
//!
//! Peak RSS: std cannot give a child's resource usage and the workspace denies `unsafe`, so the
//! harness re-executes itself as a helper (`csa-bench peak-rss PROGRAM ARGS…`, [`peak_rss_child`])
//! that runs the program once, waits, and prints `getrusage(RUSAGE_CHILDREN).ru_maxrss` (KiB on
//! Linux). A fresh helper per measurement means the figure covers exactly one child (plus any
//! grandchild it waited for), never an earlier run.
//!
//! The figure fails high, never low: at `exec`, Linux folds the high-water RSS of the memory the
//! child had before `exec` into its `ru_maxrss`. With std's default `posix_spawn` (a vfork that
//! shares the helper's memory) that is the whole helper, about 3 MiB; the helper therefore sets
//! the child's gid to its current value, which makes std use fork + exec, where only the forked
//! copy's anonymous pages count (about 1 MiB: `/bin/true` reads as about 1 MiB, as with GNU
//! `time -f %M`). The report prints that floor ([`Invocation::peak_rss_kib`] of `/bin/true`).

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};

use crate::BenchError;

/// One command line of the program under test.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The program (for csa, the `--csa` path).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment variables set for it (besides the harness's own environment).
    pub env: Vec<(OsString, OsString)>,
}

impl Invocation {
    /// `program` with `args`.
    pub fn new<I, S>(program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
        }
    }

    /// The same invocation with `key=value` in its environment.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// The command with stdin, stdout and stderr on `/dev/null`.
    fn quiet_command(&self) -> Command {
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    fn spawn_error(&self, source: std::io::Error) -> BenchError {
        BenchError::Spawn {
            program: self.program.clone(),
            source,
        }
    }

    /// Runs once with stdout and stderr captured; returns stdout.
    ///
    /// Errors: [`BenchError::Spawn`]; [`BenchError::Failed`] with the first stderr line when the
    /// exit status is not success.
    pub fn run_captured(&self) -> Result<String, BenchError> {
        let output = self
            .command()
            .stdin(Stdio::null())
            .output()
            .map_err(|err| self.spawn_error(err))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(BenchError::Failed {
                command: self.to_string(),
                status: output.status,
                stderr: stderr.lines().next().unwrap_or_default().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs once with all standard streams on `/dev/null`; returns the wall time from spawn to
    /// wait.
    ///
    /// Errors: [`BenchError::Spawn`]; [`BenchError::Failed`] (without stderr) on failure.
    pub fn time_once(&self) -> Result<Duration, BenchError> {
        let mut command = self.quiet_command();
        let start = Instant::now();
        let status = command
            .spawn()
            .map_err(|err| self.spawn_error(err))?
            .wait()
            .map_err(|err| self.spawn_error(err))?;
        let elapsed = start.elapsed();
        if !status.success() {
            return Err(BenchError::Failed {
                command: self.to_string(),
                status,
                stderr: String::new(),
            });
        }
        Ok(elapsed)
    }

    /// Peak RSS of one run, in KiB, measured by a fresh `csa-bench peak-rss` helper (this
    /// executable re-run).
    ///
    /// Errors: [`BenchError::Io`] when this executable cannot be located; [`BenchError::Spawn`]
    /// or [`BenchError::Failed`] from the helper (whose stderr line carries the child's
    /// failure); [`BenchError::HelperOutput`] when it prints no number.
    pub fn peak_rss_kib(&self) -> Result<u64, BenchError> {
        let mut args = vec![OsString::from(PEAK_RSS_SUBCOMMAND), OsString::from("--")];
        args.push(self.program.clone().into_os_string());
        args.extend(self.args.iter().cloned());
        let mut helper = Invocation::new(std::env::current_exe()?, args);
        // The helper's child inherits it.
        helper.env.clone_from(&self.env);
        let output = helper.run_captured()?;
        output
            .trim()
            .parse()
            .map_err(|_| BenchError::HelperOutput { output })
    }
}

impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.env {
            write!(f, "{}={} ", key.to_string_lossy(), value.to_string_lossy())?;
        }
        write!(f, "{}", self.program.display())?;
        for arg in &self.args {
            write!(f, " {}", arg.to_string_lossy())?;
        }
        Ok(())
    }
}

/// The hidden subcommand name of the peak-RSS helper.
pub const PEAK_RSS_SUBCOMMAND: &str = "peak-rss";

/// The helper's work: runs `invocation` once (fork + exec, standard streams on `/dev/null`),
/// waits, and returns `ru_maxrss` of the waited-for children of this process, in KiB (Linux's
/// unit).
///
/// Errors: [`BenchError::Spawn`], [`BenchError::Failed`] when the child fails,
/// [`BenchError::Rusage`] when `getrusage` does.
pub fn peak_rss_child(invocation: &Invocation) -> Result<u64, BenchError> {
    let mut command = invocation.quiet_command();
    // Setting the gid (to its current value: a no-op) makes std fork + exec instead of
    // posix_spawn; see the module docs for why.
    command.gid(nix::unistd::getgid().as_raw());
    let status = command
        .spawn()
        .map_err(|err| invocation.spawn_error(err))?
        .wait()
        .map_err(|err| invocation.spawn_error(err))?;
    if !status.success() {
        return Err(BenchError::Failed {
            command: invocation.to_string(),
            status,
            stderr: String::new(),
        });
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(BenchError::Rusage)?;
    Ok(u64::try_from(usage.max_rss()).unwrap_or(0))
}

/// Order statistics of a set of wall-time samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median (mean of the two middle samples for an even count).
    pub median: Duration,
    /// Fastest sample.
    pub min: Duration,
    /// Slowest sample.
    pub max: Duration,
    /// Number of samples.
    pub runs: usize,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2
        } else {
            sorted[mid]
        };
        Some(Self {
            median,
            min,
            max,
            runs: sorted.len(),
        })
    }
}

/// Runs `once` `warmup` times unmeasured, then `runs` times, and summarises the measured runs.
///
/// Errors: the first error `once` returns.
pub fn sample(
    warmup: usize,
    runs: usize,
    mut once: impl FnMut() -> Result<Duration, BenchError>,
) -> Result<Option<Summary>, BenchError> {
    for _ in 0..warmup {
        once()?;
    }
    let samples = (0..runs).map(|_| once()).collect::<Result<Vec<_>, _>>()?;
    Ok(Summary::of(&samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Summary::of(&ms(&[5, 1, 3])).expect("samples");
        assert_eq!(
            (odd.median, odd.min, odd.max),
            (
                Duration::from_millis(3),
                Duration::from_millis(1),
                Duration::from_millis(5)
            )
        );
        let even = Summary::of(&ms(&[4, 1, 2, 3])).expect("samples");
        assert_eq!(even.median, Duration::from_micros(2500));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let inv = Invocation::new("/bin/sh", ["-c", "echo boom >&2; exit 3"]);
        let err = inv.run_captured().expect_err("fails");
        let text = err.to_string();
        assert!(text.contains("/bin/sh -c"), "{text}");
        assert!(text.ends_with(": boom"), "{text}");
        assert!(inv.time_once().is_err());
    }

    #[test]
    fn peak_rss_of_a_child_is_positive() {
        let kib = peak_rss_child(&Invocation::new("/bin/true", Vec::<OsString>::new()))
            .expect("measured");
        assert!(kib > 0);
    }
}
