//! Integration tests of the `csa` binary: one test binary, driving the real `csa` on real
//! processes in a hermetic temp state root (see `harness`).

mod btrfs;
mod check;
mod command_line;
mod corpus;
#[cfg(feature = "failpoints")]
mod crash;
mod delete_clean;
mod doctor;
mod exit_codes;
mod fixtures;
mod harness;
mod hooks;
mod interactive;
mod json;
mod kill;
mod list_output;
mod logs_turns;
mod membership;
mod nesting;
mod pid_reuse;
mod progress;
mod real_faults;
mod reconcile;
mod reference;
mod repo_scope;
mod resume;
mod run;
mod security;
mod session_commands;
mod shells;
mod snapshots;
mod stress;
mod swap_race;
mod synthetic;
mod verbosity;
mod wait_logs;
