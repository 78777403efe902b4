//! Starting the agent: resolving the command (so "not found" and "not executable" are told
//! apart, as a shell would with 127 and 126), and spawning it in its own session and process
//! group with the fds it must inherit. No shell is involved: the command line is passed to
//! `execve` as given.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::unistd::{access, AccessFlags};

use crate::exit::Exit;

/// Why the agent could not be started.
#[derive(Debug)]
pub struct SpawnError {
    /// 127 (not found), 126 (not executable), or 1 (anything else).
    pub exit: Exit,
    /// What happened, naming the command or directory.
    pub message: String,
}

/// Resolves `program` like `execvp` would: a name with a `/` is a path (relative to `cwd`);
/// otherwise the first executable file of that name in `$PATH`.
///
/// # Errors
/// [`SpawnError`] with 127 when nothing of that name exists, 126 when what exists cannot be
/// executed.
pub fn resolve(program: &str, cwd: &Path) -> Result<PathBuf, SpawnError> {
    let not_found = |what: String| SpawnError {
        exit: Exit::CommandNotFound,
        message: what,
    };
    let not_executable = |path: &Path| SpawnError {
        exit: Exit::CannotExecute,
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
pub enum Output {
    /// Pipes, read by the supervisor (foreground: streamed to the terminal and the logs).
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
    pub output: Output,
    /// Whether its stdin is /dev/null (otherwise csa's own).
    pub stdin_null: bool,
    /// Open files it must inherit (the session's tool lock and the directory claim).
    pub inherit: &'a [BorrowedFd<'a>],
}

/// Spawns `launch.program` in a new session (`setsid`: its own process group, no controlling
/// terminal), with the environment changes and inherited files of `launch`.
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
        inherit,
    } = launch;
    for fd in inherit {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| SpawnError {
            exit: Exit::Negative,
            message: format!("cannot pass fd {} to the agent: {e}", fd.as_raw_fd()),
        })?;
    }
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd);
    for key in env_remove {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    if stdin_null {
        cmd.stdin(Stdio::null());
    }
    match output {
        Output::Piped => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        Output::Files { stdout, stderr } => {
            cmd.stdout(stdout).stderr(stderr);
        }
    }
    new_session(&mut cmd);
    let spawned = cmd.spawn();
    // The fds go back to close-on-exec, so later children do not inherit them.
    for fd in inherit {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    spawned.map_err(|e| SpawnError {
        exit: match e.kind() {
            io::ErrorKind::NotFound => Exit::CommandNotFound,
            io::ErrorKind::PermissionDenied => Exit::CannotExecute,
            _ if e.raw_os_error() == Some(nix::libc::ENOEXEC) => Exit::CannotExecute,
            _ => Exit::Negative,
        },
        message: format!("cannot start {}: {e}", program.display()),
    })
}

/// Makes the child call `setsid()` between fork and exec: a new session and process group
/// whose id is the child's pid, so signals can be sent to the whole group with `killpg`.
#[allow(unsafe_code)]
pub fn new_session(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; it only calls setsid(2), which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_a_shell() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cwd = dir.path().to_owned();
        fs_err::write(cwd.join("plain"), "#!/bin/sh\n").expect("write");
        assert!(resolve("sh", &cwd).is_ok());
        assert_eq!(
            resolve("/nonexistent", &cwd).expect_err("must fail").exit,
            Exit::CommandNotFound
        );
        assert_eq!(
            resolve("no-such-cmd-x1", &cwd).expect_err("must fail").exit,
            Exit::CommandNotFound
        );
        assert_eq!(
            resolve("./plain", &cwd).expect_err("must fail").exit,
            Exit::CannotExecute
        );
        assert_eq!(
            resolve("/", &cwd).expect_err("must fail").exit,
            Exit::CannotExecute
        );
    }
}
