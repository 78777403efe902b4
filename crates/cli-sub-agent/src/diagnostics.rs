//! Errors as users see them: `error: <what happened>`, then one `caused by:` line per source,
//! then `hint: <what to run>`. The exit code and the hint come from the error's type.

use std::fmt::Write as _;

use csa_session::StoreError;

use crate::exit::Exit;

/// A command's failure: the error, its exit code, and a hint when there is a fix to suggest.
#[derive(Debug)]
pub struct CommandError {
    /// What failed.
    pub error: anyhow::Error,
    /// How csa exits.
    pub exit: Exit,
    /// The command or action that fixes it.
    pub hint: Option<String>,
}

impl CommandError {
    /// An error with an explicit exit code and no hint.
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        CommandError {
            error: error.into(),
            exit,
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The text printed on stderr.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}\n", self.error);
        for cause in self.error.chain().skip(1) {
            let _ = writeln!(out, "caused by: {cause}");
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "hint: {hint}");
        }
        out
    }
}

/// Prints `warning: <message>` on stderr, unless warnings are off (`-q`, or a `RUST_LOG` that
/// drops them): a warning is neither an error nor data, the two things `-q` keeps.
pub fn warning(message: impl std::fmt::Display) {
    if tracing::enabled!(tracing::Level::WARN) {
        eprintln!("warning: {message}");
    }
}

impl From<StoreError> for CommandError {
    fn from(err: StoreError) -> Self {
        let (exit, hint) = match &err {
            StoreError::MalformedSessionId(_) => (Exit::Usage, None),
            StoreError::NoSuchSession(_) => (
                Exit::NotFound,
                Some("list sessions with `csa session list --all-projects`".to_owned()),
            ),
            StoreError::AmbiguousSession { .. } => (
                Exit::NotFound,
                Some("give more characters of the session id".to_owned()),
            ),
            StoreError::InvalidState { .. } | StoreError::MissingState { .. } => (
                Exit::Partial,
                Some(
                    "csa never rewrites a file it cannot parse: repair or remove it by hand"
                        .to_owned(),
                ),
            ),
            StoreError::InvalidResult { .. } => (Exit::Partial, None),
            StoreError::LockTimeout { holders, .. } => (Exit::Busy, Some(lock_hint(holders))),
            StoreError::NoStateRoot => (Exit::Usage, None),
            StoreError::Insecure(insecure) => (Exit::Partial, Some(insecure.hint())),
            StoreError::Io(_) => (Exit::Partial, None),
        };
        CommandError {
            error: err.into(),
            exit,
            hint,
        }
    }
}

/// The hint for a lock another process kept: who it is, and what to do.
fn lock_hint(holders: &[u32]) -> String {
    let who = match holders {
        [] => "see who holds it with `cat /proc/locks`".to_owned(),
        pids => {
            let list = pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            format!("see what holds it with `ps -o pid,args -p {list}`")
        }
    };
    format!("{who}; run the command again once it is done, or wait longer with --lock-timeout")
}

impl From<anyhow::Error> for CommandError {
    fn from(error: anyhow::Error) -> Self {
        CommandError::new(Exit::Partial, error)
    }
}

impl From<std::io::Error> for CommandError {
    fn from(error: std::io::Error) -> Self {
        CommandError::new(Exit::Partial, error)
    }
}
