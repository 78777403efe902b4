//! Integration tests of the `csa` binary: one test binary, driving the real `csa` on real
//! processes in a hermetic temp state root (see `harness`).

mod check;
mod delete_clean;
mod fixtures;
mod harness;
mod kill;
mod reconcile;
mod resume;
mod run;
mod session_commands;
mod wait_logs;
