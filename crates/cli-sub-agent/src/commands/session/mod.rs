//! `csa session …`: reconcile, list, result, is-alive.

mod clean;
mod delete;
mod is_alive;
mod kill;
mod list;
mod logs;
mod reconcile;
mod result;
mod resume;
mod wait;

use std::path::Path;

use anyhow::Context as _;
use csa_session::inventory::{find_session, SessionRef};
use csa_session::paths::{self, Project, StateRoots};

use crate::cli::{GlobalArgs, ScopeArgs, SessionCommand};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs a `csa session` subcommand.
pub fn run(global: &GlobalArgs, cmd: &SessionCommand) -> CommandResult {
    if let SessionCommand::Resume(args) = cmd {
        return resume::run(global, args);
    }
    let roots = StateRoots::resolve(global.state_dir.as_deref())?;
    match cmd {
        SessionCommand::Reconcile(args) => reconcile::run(&roots, args, global.verbose > 0),
        SessionCommand::List(args) => list::run(&roots, args),
        SessionCommand::Result(args) => result::run(&roots, args),
        SessionCommand::IsAlive(args) => is_alive::run(&roots, args),
        SessionCommand::Wait(args) => wait::run(&roots, args),
        SessionCommand::Logs(args) => logs::run(&roots, args),
        SessionCommand::Kill(args) => kill::run(&roots, args),
        SessionCommand::Resume(_) => unreachable!("handled above"),
        SessionCommand::Delete(args) => delete::run(&roots, args),
        SessionCommand::Clean(args) => clean::run(&roots, args),
    }
}

/// The projects a command covers: the `--cd` (or current) directory's project under each root,
/// or with `--all-projects` every project under each root.
fn scope_projects(roots: &StateRoots, scope: &ScopeArgs) -> Result<Vec<Project>, CommandError> {
    if scope.all_projects {
        let mut projects = Vec::new();
        for root in roots.iter() {
            projects.extend(paths::all_projects(root)?);
        }
        return Ok(projects);
    }
    project_of(roots, scope.cd.as_deref())
}

fn project_of(roots: &StateRoots, cd: Option<&Path>) -> Result<Vec<Project>, CommandError> {
    let dir = match cd {
        Some(dir) => dir.to_owned(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let key = paths::project_key(&dir).map_err(|e| {
        CommandError::new(
            Exit::Usage,
            anyhow::Error::new(e).context("--cd: no such directory"),
        )
    })?;
    Ok(roots.iter().map(|root| Project::new(root, &key)).collect())
}

/// Finds SESSION in the `--cd` project, or else in any project.
fn locate(roots: &StateRoots, cd: Option<&Path>, arg: &str) -> Result<SessionRef, CommandError> {
    let scope = project_of(roots, cd)?;
    Ok(find_session(roots, &scope, arg)?)
}

/// A result as JSON, with the session's id added (`result --format json`, `wait --format json`).
fn result_json(
    id: &str,
    result: &csa_session::result::SessionResult,
) -> Result<serde_json::Value, std::io::Error> {
    let mut value = serde_json::to_value(result)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("session_id".into(), id.into());
    }
    Ok(value)
}
