//! One module per command group, one file per subcommand; what several of them share lives
//! here.

pub mod completions;
pub mod debug;
pub mod doctor;
pub mod man;
pub mod run;
pub mod session;

use anyhow::anyhow;
use csa_session::secure;

use crate::cli::GlobalArgs;
use crate::diagnostics::CommandError;
use crate::exit::Exit;

/// Refuses a state directory given explicitly (`--state-dir` or `CSA_STATE_DIR`) that does not
/// exist: every command but `csa run` (which creates it) calls this first, so a mistyped
/// directory is an error rather than an empty listing that lets every hook pass. The default
/// root missing on a fresh machine is not checked here: there, "nothing to do" is the truth.
///
/// # Errors
/// Exit 3, naming the directory and where it came from, with the fix as a hint.
pub(crate) fn require_explicit_state_dir(global: &GlobalArgs) -> Result<(), CommandError> {
    match missing_state_dir(global) {
        Some((message, hint)) => {
            Err(CommandError::new(Exit::Partial, anyhow!(message)).with_hint(hint))
        }
        None => Ok(()),
    }
}

/// The error and hint of [`require_explicit_state_dir`], if the explicit state directory is
/// missing (`doctor` reports them as a problem). A path that exists but is not a directory, or
/// cannot be examined, is left to the checks of `secure`, which name that problem (a dangling
/// symbolic link counts as missing).
pub(crate) fn missing_state_dir(global: &GlobalArgs) -> Option<(String, String)> {
    let dir = global.state_dir.as_deref()?;
    match fs_err::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return None,
    }
    let text = dir.to_string_lossy();
    let quoted = secure::shell_quote(&text);
    let (source, fix) = if global.state_dir_from_env {
        (
            "CSA_STATE_DIR",
            "correct CSA_STATE_DIR (or unset it for the default)",
        )
    } else {
        ("--state-dir", "correct --state-dir")
    };
    Some((
        format!(
            "the state directory {} ({source}) does not exist",
            dir.display()
        ),
        format!("{fix}; or create it with `mkdir -m 700 -p {quoted}` (`csa run` creates it)"),
    ))
}
