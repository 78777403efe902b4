//! Starting the agent: resolving the command (so "not found" and "not executable" are told
//! apart, as a shell would with 127 and 126), and spawning it in its own process session and
//! process group. No shell is involved: the command line is passed to `execve` as given.
//!
//! The agent inherits no descriptor of csa's beyond its standard streams: the session's tool
//! lock and the directory claim stay the supervisor's (their descriptors are close-on-exec; the
//! forked child holds them only until it executes the agent, which keeps the session visibly
//! alive through a supervisor killed in that instant). What marks the agent and its descendants
//! as the session's is its membership (its cgroup, or its process session and the
//! `CSA_SESSION_ID` marker in its environment).

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::unistd::{access, AccessFlags};

/// Why the agent could not be started, with the exit code a shell would give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnFailure {
    /// 127: nothing of that name exists.
    NotFound,
    /// 126: what exists cannot be executed.
    NotExecutable,
    /// 1: anything else (the project directory is gone, the logs cannot be opened, fork
    /// failed).
    Other,
}

impl SpawnFailure {
    /// The exit code: 127, 126 or 1.
    pub fn code(self) -> u8 {
        match self {
            SpawnFailure::NotFound => 127,
            SpawnFailure::NotExecutable => 126,
            SpawnFailure::Other => 1,
        }
    }
}

/// Why the agent could not be started.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SpawnError {
    /// The kind of failure (and its exit code).
    pub failure: SpawnFailure,
    /// What happened, naming the command or directory.
    pub message: String,
}

impl SpawnError {
    /// A failure of kind [`SpawnFailure::Other`].
    pub fn other(message: impl Into<String>) -> Self {
        SpawnError {
            failure: SpawnFailure::Other,
            message: message.into(),
        }
    }
}

/// Resolves `program` like `execvp` would: a name with a `/` is a path (relative to `cwd`);
/// otherwise the first executable file of that name in `$PATH`.
///
/// # Errors
/// [`SpawnError`] with [`SpawnFailure::NotFound`] when nothing of that name exists,
/// [`SpawnFailure::NotExecutable`] when what exists cannot be executed.
// The agent's program on $PATH or in its working directory: outside the state root.
#[allow(clippy::disallowed_methods)]
pub fn resolve(program: &str, cwd: &Path) -> Result<PathBuf, SpawnError> {
    let not_found = |what: String| SpawnError {
        failure: SpawnFailure::NotFound,
        message: what,
    };
    let not_executable = |path: &Path| SpawnError {
        failure: SpawnFailure::NotExecutable,
        message: format!("{} is not executable", path.display()),
    };
    if program.is_empty() {
        return Err(not_found("empty command".to_owned()));
    }
    let executable = |p: &Path| p.is_file() && access(p, AccessFlags::X_OK).is_ok();
    if program.contains('/') {
        let path = cwd.join(program);
        if !path.exists() {
            return Err(not_found(format!("{}: no such file", path.display())));
        }
        return if executable(&path) {
            Ok(path)
        } else {
            Err(not_executable(&path))
        };
    }
    let mut found_unexecutable = None;
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let path = cwd.join(dir).join(program);
        if executable(&path) {
            return Ok(path);
        }
        if path.exists() && found_unexecutable.is_none() {
            found_unexecutable = Some(path);
        }
    }
    match found_unexecutable {
        Some(path) => Err(not_executable(&path)),
        None => Err(not_found(format!("{program}: command not found in PATH"))),
    }
}

/// Where the agent's output goes.
#[derive(Debug)]
pub enum Output<'a> {
    /// A pseudo-terminal: the slave is the agent's stdin, stdout, stderr and controlling
    /// terminal (an interactive session: csa-terminal).
    Terminal(&'a csa_terminal::Pty),
    /// Pipes, read by the supervisor (streamed to csa's own stdout/stderr and the logs).
    Piped,
    /// Straight into these files (detached).
    Files {
        /// For stdout.
        stdout: std::fs::File,
        /// For stderr.
        stderr: std::fs::File,
    },
}

/// What to spawn, and how.
#[derive(Debug)]
pub struct Launch<'a> {
    /// The resolved program ([`resolve`]).
    pub program: &'a Path,
    /// Its arguments (after argv\[0\]).
    pub args: &'a [String],
    /// Its working directory.
    pub cwd: &'a Path,
    /// Environment variables to add.
    pub env: &'a [(String, String)],
    /// Environment variables to remove.
    pub env_remove: &'a [&'a str],
    /// Where its output goes.
    pub output: Output<'a>,
    /// Whether its stdin is /dev/null (otherwise csa's own).
    pub stdin_null: bool,
}

/// Spawns `launch.program` in a new process session (`setsid`: its own process group, no
/// controlling terminal), with the environment changes of `launch`.
///
/// # Errors
/// [`SpawnError`]: 127 / 126 for `ENOENT` / `EACCES` and `ENOEXEC`, 1 otherwise.
pub fn spawn(launch: Launch<'_>) -> Result<Child, SpawnError> {
    let Launch {
        program,
        args,
        cwd,
        env,
        env_remove,
        output,
        stdin_null,
    } = launch;
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd);
    for key in env_remove {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    match output {
        Output::Terminal(pty) => {
            // stdio on the slave, and a new session with it as the controlling terminal.
            pty.configure(&mut cmd).map_err(|e| {
                SpawnError::other(format!("cannot set up the pseudo-terminal: {e}"))
            })?;
        }
        Output::Piped => {
            if stdin_null {
                cmd.stdin(Stdio::null());
            }
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            new_session(&mut cmd);
        }
        Output::Files { stdout, stderr } => {
            if stdin_null {
                cmd.stdin(Stdio::null());
            }
            cmd.stdout(stdout).stderr(stderr);
            new_session(&mut cmd);
        }
    }
    cmd.spawn().map_err(|e| SpawnError {
        failure: match e.kind() {
            io::ErrorKind::NotFound => SpawnFailure::NotFound,
            io::ErrorKind::PermissionDenied => SpawnFailure::NotExecutable,
            _ if e.raw_os_error() == Some(nix::libc::ENOEXEC) => SpawnFailure::NotExecutable,
            _ => SpawnFailure::Other,
        },
        message: format!("cannot start {}: {e}", program.display()),
    })
}

/// Makes the child call `setsid()` between fork and exec: a new process session and process
/// group whose id is the child's pid, so signals can be sent to the whole group with `killpg`.
#[allow(unsafe_code)]
pub fn new_session(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; it only calls setsid(2), which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
}

#[cfg(test)]
// Tests lay out and inspect their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_a_shell() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cwd = dir.path().to_owned();
        fs_err::write(cwd.join("plain"), "#!/bin/sh\n").expect("write");
        assert!(resolve("sh", &cwd).is_ok());
        let failure = |p: &str| resolve(p, &cwd).expect_err("must fail").failure;
        assert_eq!(failure("/nonexistent"), SpawnFailure::NotFound);
        assert_eq!(failure("no-such-cmd-x1"), SpawnFailure::NotFound);
        assert_eq!(failure("./plain"), SpawnFailure::NotExecutable);
        assert_eq!(failure("/"), SpawnFailure::NotExecutable);
        assert_eq!(SpawnFailure::NotFound.code(), 127);
    }
}
