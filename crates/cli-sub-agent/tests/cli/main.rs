//! Integration tests of the `csa` binary: one test binary, driving the real `csa` on real
//! processes in a hermetic temp state root (see `harness`).

mod check;
#[cfg(feature = "failpoints")]
mod crash;
mod delete_clean;
mod fixtures;
mod harness;
mod kill;
mod progress;
mod real_faults;
mod reconcile;
mod resume;
mod run;
mod security;
mod session_commands;
mod stress;
mod wait_logs;
