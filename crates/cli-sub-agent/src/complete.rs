//! Dynamic shell completion (clap_complete's `CompleteEnv`): when csa runs with `COMPLETE=SHELL`
//! in its environment, it prints the shell's registration script, or completes the command line
//! the shell hands it, and exits. Besides commands and flags, SESSION arguments complete to the
//! session ids under the state roots that start with what was typed (case-insensitively: the
//! candidates are the ids as written, upper case). docs/cli.md says how to enable it per shell.
//!
//! The command line being completed is not parsed, so `--state-dir` on it is not seen: the
//! roots are `CSA_STATE_DIR`'s, else the default ones. Reads directory listings only (no
//! session file), and never fails: what cannot be read completes to nothing.

use std::ffi::OsStr;

use clap_complete::engine::CompletionCandidate;
use csa_session::paths::{self, StateRoots};

/// Handles a completion request (`COMPLETE=SHELL` in the environment) and exits; returns at
/// once otherwise. Call first, before anything is written to stdout.
pub fn handle_request() {
    use clap::CommandFactory as _;
    clap_complete::CompleteEnv::with_factory(crate::cli::Cli::command).complete();
}

/// The session ids that start with `current` (a ULID prefix, any case), each with its project
/// directory as help, newest first.
pub fn session_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(prefix) = current.to_str().map(str::to_ascii_uppercase) else {
        return Vec::new();
    };
    if !prefix.is_empty() && !paths::is_ulid_prefix(&prefix) {
        return Vec::new();
    }
    let state_dir = std::env::var_os("CSA_STATE_DIR").map(std::path::PathBuf::from);
    let Ok(roots) = StateRoots::resolve(state_dir.as_deref()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for root in roots.iter() {
        for project in paths::all_projects(root).unwrap_or_default() {
            for id in project.session_ids().unwrap_or_default() {
                if id.starts_with(&prefix) {
                    found.push((id, format!("/{}", project.key)));
                }
            }
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found
        .into_iter()
        .map(|(id, project)| CompletionCandidate::new(id).help(Some(project.into())))
        .collect()
}
