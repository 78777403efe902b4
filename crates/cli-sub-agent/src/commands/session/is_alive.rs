//! `csa session is-alive`: exit 0 when the session's agent is alive, 1 when dead (read-only).

use std::io::Write;

use csa_session::inventory::Status;
use csa_session::liveness::{assess, LivenessContext, Verdict};
use csa_session::paths::StateRoots;
use csa_session::state::{Phase, SessionState};
use serde_json::json;

use super::locate;
use crate::cli::{Format, IsAliveArgs};
use crate::exit::Exit;
use crate::CommandResult;

/// Runs the command. A foreign owner counts as alive (it cannot be checked from here).
pub fn run(roots: &StateRoots, args: &IsAliveArgs) -> CommandResult {
    let session = locate(roots, args.cd.as_deref(), &args.session)?;
    let dir = session.project.open_session(&session.id)?;
    let state = SessionState::load(&dir)?;
    let phase = state.view.phase;
    let assessment = assess(
        &LivenessContext::new(),
        &dir,
        &session.id,
        phase == Phase::Active,
    );
    for w in &assessment.warnings {
        eprintln!("warning: {w}");
    }
    let verdict = &assessment.verdict;
    let (word, signal) = match verdict {
        Verdict::Alive(why) => ("alive", why.clone()),
        Verdict::Foreign(why) => ("foreign", why.clone()),
        Verdict::Dead { reason, .. } => ("dead", reason.clone()),
    };
    let status = Status::derive(phase, (phase == Phase::Active).then_some(verdict));
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let value = json!({
                "session_id": session.id,
                "alive": verdict.is_alive(),
                "verdict": word,
                "signal": signal,
                "phase": phase,
                "status": status,
            });
            writeln!(out, "{value:#}")?;
        }
        Format::Text => writeln!(out, "{word}: {signal}")?,
    }
    Ok(if verdict.is_alive() {
        Exit::Success
    } else {
        Exit::Negative
    })
}
