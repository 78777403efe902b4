//! `csa session retry`: run an ended session's last command again, as a new session of the same
//! project with the same tool and description, whose parent (`[genealogy]`) is the original. For
//! any ended session (a killed or failed one included, which `resume` refuses); the original is
//! left as it is.

use anyhow::anyhow;
use csa_session::create::RunRecord;
use csa_session::paths::StateRoots;
use csa_session::state::SessionState;

use super::locate;
use crate::cli::{GlobalArgs, RetryArgs, RunArgs};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command.
pub fn run(global: &GlobalArgs, roots: &StateRoots, args: &RetryArgs) -> CommandResult {
    let session = locate(roots, args.cd.as_deref(), &args.session)?;
    let dir = session.project.open_session(&session.id)?;
    let state = SessionState::load(&dir)?;
    if !state.view.phase.is_ended() {
        return Err(CommandError::new(
            Exit::Busy,
            anyhow!("session {} is still active: it has not ended", session.id),
        )
        .with_hint(format!(
            "wait for it (csa session wait {0}) or stop it (csa session kill {0}) first",
            session.id
        )));
    }
    let command = if args.command.is_empty() {
        RunRecord::load(&dir)?
            .turns
            .last()
            .map(|t| t.command.clone())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                CommandError::new(
                    Exit::Usage,
                    anyhow!(
                        "session {} has no recorded command (it was not started by csa run)",
                        session.id
                    ),
                )
                .with_hint(format!(
                    "give one: csa session retry {} -- COMMAND…",
                    session.id
                ))
            })?
    } else {
        args.command.clone()
    };
    let run = RunArgs {
        tool: state.view.latest_tool().map(str::to_owned),
        description: state.view.description.clone(),
        cd: Some(state.view.project_path.clone().into()),
        detach: args.detach,
        allow_concurrent: false,
        wait_for_dir: None,
        parent: Some(session.id.clone()),
        leave_running: false,
        grace: std::time::Duration::from_secs(5),
        terminal: args.terminal.clone(),
        format: args.format,
        command,
    };
    crate::launching::run_turn(global, &run)
}
