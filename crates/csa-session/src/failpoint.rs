//! Named crash and fault points, for the reliability tests (docs/reliability.md).
//!
//! Every step of every mutating path (each durable effect: a temp file, a write, an fsync, a
//! rename or link, a lock, a signal) is preceded by a [`failpoint!`](crate::failpoint!) naming
//! it, e.g. `failpoint!("atomic::publish")`. The macro is an expression of type
//! `std::io::Result<()>`, so a call site chains it in front of the operation it names and an
//! injected error flows through the same path-naming and rollback code as a real one:
//!
//! ```ignore
//! failpoint!("atomic::write").and_then(|()| temp.write_all(bytes)).map_err(named)?;
//! ```
//!
//! Without the `failpoints` cargo feature (release builds) [`eval`] is an inlined `Ok(())` and
//! the names are not in the binary. With it, each point is a `fail` crate fail point,
//! configured by name in-process (`fail::cfg`) or for the `csa` binary through the
//! `FAILPOINTS` environment variable (`FAILPOINTS='atomic::publish=2*off->return(kill)'`: pass
//! twice, then act). The `return` action's argument chooses what happens:
//! - `kill`: the process sends itself SIGKILL (a crash at exactly that instant);
//! - `enospc`, `eacces`, `eio`: the operation fails with that errno;
//! - anything else, or none: it fails with an "injected fault at NAME" error.
//!
//! With `CSA_FAILPOINT_TRACE=FILE`, every point reached is appended to FILE as a line `NAME PID`
//! (`O_APPEND`, so concurrent processes interleave whole lines): the crash test learns from it
//! which points a scenario reaches and how often. The list of all points is read from the
//! source (`failpoint!("…")` literals), so a new step cannot be left out of the crash test.

/// Declares a crash/fault point (module docs); an expression of type `std::io::Result<()>`.
/// With an operation and a path (`failpoint!("state::write", "write", &path)`), an injected
/// error names them as the real operation's error would.
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        $crate::failpoint::eval($name)
    };
    ($name:literal, $op:literal, $path:expr) => {
        $crate::failpoint::eval($name).map_err(|e| $crate::failpoint::named(e, $op, $path))
    };
}

/// An injected error, named like a real one: ``failed to OP `PATH`: ERROR``.
pub fn named(err: std::io::Error, op: &str, path: &std::path::Path) -> std::io::Error {
    crate::atomic::with_path(err, op, path)
}

/// Evaluates the point `name` (see the module docs).
///
/// # Errors
/// The injected error, when the point is configured with a `return` action.
#[cfg(feature = "failpoints")]
pub fn eval(name: &'static str) -> std::io::Result<()> {
    trace(name);
    match fail::eval(name, |arg| injected(name, arg.as_deref())) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Evaluates the point `name`: without the `failpoints` feature, nothing.
///
/// # Errors
/// Never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn eval(_name: &'static str) -> std::io::Result<()> {
    Ok(())
}

#[cfg(feature = "failpoints")]
fn injected(name: &str, arg: Option<&str>) -> std::io::Error {
    use nix::errno::Errno;
    let errno = match arg {
        Some("kill") => {
            // Best effort: if raising fails, the injected error below still stops the step.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            None
        }
        Some("enospc") => Some(Errno::ENOSPC),
        Some("eacces") => Some(Errno::EACCES),
        Some("eio") => Some(Errno::EIO),
        _ => None,
    };
    match errno {
        Some(e) => std::io::Error::from_raw_os_error(e as i32),
        None => std::io::Error::other(format!("injected fault at {name}")),
    }
}

#[cfg(feature = "failpoints")]
// The trace file is the test's, outside any state root.
#[allow(clippy::disallowed_methods)]
fn trace(name: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("CSA_FAILPOINT_TRACE") else {
        return;
    };
    if let Ok(mut file) = fs_err::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        let _ = file.write_all(format!("{name} {}\n", std::process::id()).as_bytes());
    }
}
