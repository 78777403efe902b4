//! Benchmark harness for the `csa` binary (`just bench`).
//!
//! `csa-bench` drives a built `csa` as a subprocess against generated state roots and prints one
//! markdown table on stdout (progress goes to stderr). It links neither `csa-session` nor
//! `cli-sub-agent`: session directories are written directly in the upstream on-disk format
//! ([`layout`]), so the figures measure the binary exactly as users run it.
//!
//! What is measured ([`suite`]):
//! - `csa session reconcile --cd PROJECT` (a no-op: every session is ended or alive) on a project
//!   with N ended sessions plus 10 live ones, for N = 1,000, 10,000 and 100,000, and the same with
//!   `--full` (a full scan, bypassing any cache). Requirements: median ≤ 5 ms at 10,000 and peak
//!   RSS ≤ 16 MiB at 100,000.
//! - `csa session list --cd PROJECT --format json` at 10,000 sessions against two in-process
//!   baselines ([`baseline`]): reading every `state.toml` of the project, and reading plus parsing
//!   each into a `toml::Table`. Requirement: list ≤ 1.5× the read-only baseline.
//! - `csa --version`, the fixed cost of spawning the binary.
//! - `csa run -- true` against `true`, and `csa run --detach` ([`run_cases`]).
//!
//! Units: wall times are milliseconds, from just before `spawn` to the return of `wait`, with
//! stdin, stdout and stderr on `/dev/null`; each case reports the median of at least 20 runs after
//! unmeasured warm-up runs (the page cache and csa's own cache are warm). Peak RSS is mebibytes
//! (MiB): `ru_maxrss` of exactly one `csa` child, read by a fresh helper process ([`measure`]),
//! the maximum over a few runs.
//!
//! Generated state roots are cached under `target/bench-state/<N>/` ([`fixture`]) and reused while
//! their completion marker is present; only the live sessions are refreshed on each run, since
//! their liveness points at the running `csa-bench` process.

#![warn(missing_docs)]

pub mod baseline;
pub mod cli;
mod error;
pub mod fixture;
pub mod layout;
pub mod measure;
pub mod report;
pub mod run_cases;
pub mod suite;

pub use error::BenchError;
