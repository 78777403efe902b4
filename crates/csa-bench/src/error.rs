//! The one error type of the harness.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can stop a benchmark case or the whole run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file system operation failed; the message names the path (`fs-err`, or the path added
    /// by the harness where `fs-err` has no wrapper).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The program under test (or the peak-RSS helper) could not be started.
    #[error("cannot start `{program}`")]
    Spawn {
        /// The program that failed to start.
        program: PathBuf,
        /// Why `spawn` failed.
        #[source]
        source: io::Error,
    },
    /// The program under test ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}){}", stderr_suffix(stderr))]
    Failed {
        /// The command line, for display.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// The first line of its stderr, when it was captured (empty otherwise).
        stderr: String,
    },
    /// The peak-RSS helper printed something other than one number of KiB.
    #[error("the peak-RSS helper printed {output:?}, not a number of KiB")]
    HelperOutput {
        /// What it printed.
        output: String,
    },
    /// `getrusage(RUSAGE_CHILDREN)` failed in the peak-RSS helper.
    #[error("getrusage(RUSAGE_CHILDREN) failed")]
    Rusage(#[source] nix::Error),
    /// A generated `state.toml` (or the fixture marker) is not valid TOML.
    #[error("cannot parse {path} as TOML")]
    Parse {
        /// The file that failed to parse.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// A live session of the fixture ended during a case (it has a `result.toml` or its
    /// `state.toml` changed): csa did not see its daemon as alive, so the case was not a no-op.
    #[error("csa ended live session {id} (its daemon.pid names the running csa-bench), so the run was not a no-op")]
    LiveSessionEnded {
        /// The session id.
        id: String,
    },
    /// The platform cannot give the start ticks of this process (no `/proc`), so the live
    /// sessions of a fixture cannot be made to read as alive.
    #[error("cannot read the start ticks of this process (pid {pid}) from /proc")]
    NoStartTicks {
        /// This process's pid.
        pid: u32,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}
