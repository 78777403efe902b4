//! `csa session result`: print a session's result (read-only).

use std::io::Write;

use anyhow::anyhow;
use csa_session::paths::StateRoots;
use csa_session::result::SessionResult;
use csa_session::state::SessionState;

use super::{locate, observed, result_json, NOT_OBSERVED};
use crate::cli::{Format, ResultArgs};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command. Exits 75 when the session has no result yet, 3 when result.toml does not
/// parse or, without a result, state.toml cannot be read.
pub fn run(roots: &StateRoots, args: &ResultArgs) -> CommandResult {
    let session = locate(roots, args.cd.as_deref(), &args.session)?;
    let dir = session.project.open_session(&session.id)?;
    let Some(result) = SessionResult::load(&dir)? else {
        // Without a result, the state says whether one is still to come; an unreadable state
        // is reported as such (exit 3, naming the file), not as "no result yet".
        let phase = SessionState::load(&dir)?.view.phase.as_str();
        return Err(CommandError::new(
            Exit::Busy,
            anyhow!("session {} has no result yet (phase {phase})", session.id),
        )
        .with_hint(format!(
            "wait for it with `csa session wait {}`",
            session.id
        )));
    };
    let observed = observed(&dir, &result);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &result_json(&session.id, &result, observed)?)
                .map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Text => print_text(&mut out, &session.id, &result, observed)?,
    }
    Ok(Exit::Success)
}

fn print_text(
    out: &mut impl Write,
    id: &str,
    r: &SessionResult,
    observed: bool,
) -> std::io::Result<()> {
    writeln!(out, "session:      {id}")?;
    if observed {
        writeln!(out, "status:       {}", r.status)?;
    } else {
        writeln!(
            out,
            "status:       {} ({NOT_OBSERVED}: the agent's owner died without writing a result)",
            r.status
        )?;
    }
    writeln!(out, "exit_code:    {}", r.exit_code)?;
    writeln!(out, "tool:         {}", r.tool)?;
    writeln!(out, "started_at:   {}", r.started_at.to_rfc3339())?;
    writeln!(out, "completed_at: {}", r.completed_at.to_rfc3339())?;
    for a in &r.artifacts {
        writeln!(out, "artifact:     {}", a.path)?;
    }
    writeln!(out, "summary:")?;
    // The summary quotes the agent's output: no escape sequence of it reaches the terminal.
    for line in crate::output::text::plain(&r.summary).lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}
