//! Choosing the backend: `CSA_PROCESS_BACKEND=procfs|portable`, else procfs where
//! `/proc/self/stat` can be read, else portable. Chosen once per process, with the reason,
//! which `csa doctor` reports.

use std::ffi::OsStr;
use std::sync::OnceLock;

/// The environment variable that forces a backend: `procfs` or `portable`.
pub const ENV: &str = "CSA_PROCESS_BACKEND";

/// A process backend: where csa reads what it knows about processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Linux `/proc`: start ticks, `/proc/locks`, boot id, PID namespace ([`crate::platform`]).
    Procfs,
    /// No `/proc` of its own: sysinfo, `getpgid(2)`/`getsid(2)`, and on macOS `proc_pidinfo`
    /// (see [`crate::backend`]).
    Portable,
}

impl Backend {
    /// Its name, as `CSA_PROCESS_BACKEND` and `csa doctor` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Procfs => "procfs",
            Backend::Portable => "portable",
        }
    }
}

/// The backend in use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The backend.
    pub backend: Backend,
    /// Why it was chosen, one sentence: `CSA_PROCESS_BACKEND=portable`, `/proc/self/stat is
    /// readable`, …
    pub reason: String,
    /// What was wrong with the request, when it could not be followed (an unknown value, or
    /// `procfs` where `/proc` cannot be read); the default was used instead.
    pub problem: Option<String>,
}

/// Chooses a backend from the value of [`ENV`] (`requested`) and whether `/proc/self/stat`
/// can be read (`proc_readable`, called only when needed: `Err` holds why not).
pub fn select(
    requested: Option<&OsStr>,
    proc_readable: impl FnOnce() -> Result<(), String>,
) -> Selection {
    let requested = requested.filter(|v| !v.is_empty());
    match requested.map(|v| v.to_str()) {
        Some(Some("portable")) => Selection {
            backend: Backend::Portable,
            reason: format!("{ENV}=portable"),
            problem: None,
        },
        Some(Some("procfs")) => match proc_readable() {
            Ok(()) => Selection {
                backend: Backend::Procfs,
                reason: format!("{ENV}=procfs"),
                problem: None,
            },
            Err(why) => Selection {
                backend: Backend::Portable,
                reason: format!("{ENV}=procfs, but /proc/self/stat cannot be read ({why})"),
                problem: Some(format!(
                    "{ENV}=procfs cannot be followed: /proc/self/stat cannot be read ({why})"
                )),
            },
        },
        Some(other) => {
            let value = other.map_or_else(
                || requested.unwrap_or_default().to_string_lossy().into_owned(),
                str::to_owned,
            );
            let mut chosen = default(proc_readable);
            chosen.problem = Some(format!(
                "{ENV}={value:?} is neither procfs nor portable; ignored"
            ));
            chosen
        }
        None => default(proc_readable),
    }
}

fn default(proc_readable: impl FnOnce() -> Result<(), String>) -> Selection {
    match proc_readable() {
        Ok(()) => Selection {
            backend: Backend::Procfs,
            reason: "/proc/self/stat is readable".to_owned(),
            problem: None,
        },
        Err(why) => Selection {
            backend: Backend::Portable,
            reason: format!("/proc/self/stat cannot be read ({why})"),
            problem: None,
        },
    }
}

/// The selection of this process, made at first use from the environment and kept for the
/// process's life (a backend never changes under a running command).
pub fn selection() -> &'static Selection {
    static SELECTION: OnceLock<Selection> = OnceLock::new();
    SELECTION.get_or_init(|| {
        select(std::env::var_os(ENV).as_deref(), || {
            crate::platform::stat(std::process::id())
                .map(drop)
                .map_err(|e| e.to_string())
        })
    })
}

/// The backend in use ([`selection`]).
pub fn current() -> Backend {
    selection().backend
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_first_then_proc() {
        let ok = || Ok(());
        let no = || Err("ENOENT".to_owned());
        let sel = |v: Option<&str>, readable: bool| {
            let v = v.map(OsStr::new);
            if readable {
                select(v, ok)
            } else {
                select(v, no)
            }
        };
        assert_eq!(sel(None, true).backend, Backend::Procfs);
        assert_eq!(sel(None, false).backend, Backend::Portable);
        assert_eq!(sel(Some(""), true).backend, Backend::Procfs);
        let forced = sel(Some("portable"), true);
        assert_eq!(forced.backend, Backend::Portable);
        assert_eq!(forced.reason, "CSA_PROCESS_BACKEND=portable");
        assert_eq!(forced.problem, None);
        assert_eq!(sel(Some("procfs"), true).backend, Backend::Procfs);
        let refused = sel(Some("procfs"), false);
        assert_eq!(refused.backend, Backend::Portable);
        assert!(refused.problem.is_some_and(|p| p.contains("ENOENT")));
        let unknown = sel(Some("kqueue"), true);
        assert_eq!(unknown.backend, Backend::Procfs);
        assert!(unknown.problem.is_some_and(|p| p.contains("\"kqueue\"")));
    }
}
