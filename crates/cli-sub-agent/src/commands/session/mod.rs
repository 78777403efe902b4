//! `csa session …`: reconcile, list, result, is-alive, wait, logs, kill, resume, delete, clean.
//!
//! Every subcommand resolves its state roots, projects and sessions here, and each of them is
//! checked on the way (csa-session `secure`): the roots, then the directories of every project
//! the command covers, so a command never reads or writes below a directory that another user
//! owns or can write, or that is a symbolic link inside the root (exit 3, with the fix as a
//! hint). A session directory is checked when a command is about to change it, under its lock.

pub(crate) mod attach;
mod clean;
mod delete;
mod is_alive;
mod kill;
mod list;
mod log_lines;
mod logs;
mod reconcile;
mod result;
mod resume;
mod retry;
mod wait;

use std::path::Path;

use anyhow::Context as _;
use csa_session::inventory::{find_session, SessionRef};
use csa_session::paths::{self, Project, StateRoots};
use csa_session::secure;

use crate::cli::{GlobalArgs, ScopeArgs, SessionCommand};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs a `csa session` subcommand.
pub fn run(global: &GlobalArgs, cmd: &SessionCommand) -> CommandResult {
    super::require_explicit_state_dir(global)?;
    let outcome = dispatch(global, cmd);
    session_deleted_meanwhile(global, cmd, outcome)
}

fn dispatch(global: &GlobalArgs, cmd: &SessionCommand) -> CommandResult {
    if let SessionCommand::Resume(args) = cmd {
        return resume::run(global, args);
    }
    let roots = StateRoots::resolve(global.state_dir.as_deref())?;
    check_roots(&roots)?;
    match cmd {
        SessionCommand::Reconcile(args) => {
            reconcile::run(&roots, args, global.verbose > 0, global.quiet)
        }
        SessionCommand::List(args) => list::run(global, &roots, args),
        SessionCommand::Result(args) => result::run(&roots, args),
        SessionCommand::IsAlive(args) => is_alive::run(&roots, args),
        SessionCommand::Wait(args) => wait::run(&roots, args, global.quiet),
        SessionCommand::Logs(args) => logs::run(&roots, args, global.quiet),
        SessionCommand::Kill(args) => kill::run(&roots, args, global.quiet),
        SessionCommand::Attach(args) => attach::run(&roots, args, global.quiet),
        SessionCommand::Retry(args) => retry::run(global, &roots, args),
        SessionCommand::Resume(_) => unreachable!("handled above"),
        SessionCommand::Delete(args) => delete::run(&roots, args),
        SessionCommand::Clean(args) => clean::run(&roots, args, global.quiet),
    }
}

/// Checks every state root that exists ([`secure::check_root`]): one `stat` each.
pub(crate) fn check_roots(roots: &StateRoots) -> Result<(), CommandError> {
    for root in roots.iter() {
        secure::check_root(root)?;
    }
    Ok(())
}

/// Checks the directories of `project` ([`secure::check_project`]), from its state root
/// (checked by [`check_roots`]).
pub(crate) fn check_project(project: &Project) -> Result<(), CommandError> {
    Ok(secure::check_project(project)?)
}

/// The projects a command covers: the `--cd` (or current) directory's project under each root;
/// with `--repo` the project of that directory's git top level and of every directory below it
/// ([`with_nested`]); with `--all-projects` every project under each root. Each is checked
/// ([`check_project`]): one refused project refuses the command, before anything is done.
///
/// # Errors
/// Exit 2 when `--cd` names no directory, or with `--repo` when the directory is in no git
/// work tree; exit 3 for a refused or unreadable directory.
fn scope_projects(roots: &StateRoots, scope: &ScopeArgs) -> Result<Vec<Project>, CommandError> {
    if scope.repo {
        let dir = match scope.cd.as_deref() {
            Some(dir) => dir.to_owned(),
            None => std::env::current_dir().context("cannot read the current directory")?,
        };
        let top = crate::repository::top_level(&dir)
            .map_err(|e| {
                CommandError::new(
                    Exit::Usage,
                    anyhow::Error::new(e).context("--cd: no such directory"),
                )
            })?
            .ok_or_else(|| {
                CommandError::new(
                    Exit::Usage,
                    anyhow::anyhow!(
                        "--repo: {} is not in a git work tree (no .git in it or above it)",
                        dir.display()
                    ),
                )
                .with_hint("run it inside the repository, or use `--cd DIR --nested` for a directory and those below it")
            })?;
        tracing::info!("--repo: the git top level is {}", top.display());
        return with_nested(project_of(roots, Some(&top))?);
    }
    if scope.all_projects {
        let mut projects = Vec::new();
        for root in roots.iter() {
            for project in paths::all_projects(root)? {
                secure::check_project(&project)?;
                projects.push(project);
            }
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
    let key = paths::project_key(&dir).map_err(|e| project_dir_error(cd.is_some(), e))?;
    let mut projects = Vec::new();
    for root in roots.iter() {
        let project = Project::new(root, &key);
        secure::check_project(&project)?;
        projects.push(project);
    }
    Ok(projects)
}

/// `projects` (a directory's project under each root) and the projects of every directory
/// below them: the directories under `<root>/<key>/` that hold a `sessions/` directory (one
/// `readdir` per directory of the state root below the key, never inside `sessions/`), each
/// checked like any project ([`secure::check_project`]).
fn with_nested(projects: Vec<Project>) -> Result<Vec<Project>, CommandError> {
    let mut all = Vec::with_capacity(projects.len());
    for project in projects {
        // `<root>/<key>`: the project's own `sessions/` is skipped by the walk.
        for nested in project.nested()? {
            check_project(&nested)?;
            all.push(nested);
        }
        all.push(project);
    }
    Ok(all)
}

/// The usage error (exit 2) for a `--cd` directory (`given`), or the current directory, that
/// cannot name a project (csa-session [`paths::project_dir`]).
fn project_dir_error(given: bool, err: paths::ProjectDirError) -> CommandError {
    let what = if given {
        "--cd"
    } else {
        "the current directory"
    };
    let error = match err {
        paths::ProjectDirError::Missing(e) => {
            anyhow::Error::new(e).context(format!("{what}: no such directory"))
        }
        other => anyhow::anyhow!("{what}: {other}"),
    };
    CommandError::new(Exit::Usage, error)
}

/// Finds SESSION in the `--cd` project, or else in any project (whose directories are then
/// checked too).
fn locate(roots: &StateRoots, cd: Option<&Path>, arg: &str) -> Result<SessionRef, CommandError> {
    valid_session_arg(arg)?;
    let scope = project_of(roots, cd)?;
    let session = find_session(roots, &scope, arg)?;
    if !scope.contains(&session.project) {
        check_project(&session.project)?;
    }
    Ok(session)
}

/// A SESSION argument that is no ULID prefix is a usage error before any directory under the
/// state root is opened (docs/reliability.md, Security).
///
/// # Errors
/// [`csa_session::StoreError::MalformedSessionId`] (exit 2).
pub(crate) fn valid_session_arg(arg: &str) -> Result<(), CommandError> {
    if paths::is_ulid_prefix(arg) {
        Ok(())
    } else {
        Err(csa_session::StoreError::MalformedSessionId(arg.to_owned()).into())
    }
}

/// What `kill` and `resume` say, once, on stderr when another process holds the session's lock:
/// which lock, who holds it, and how long they wait before giving up (exit 75).
pub(crate) fn say_waiting(bound: std::time::Duration) -> impl FnOnce(&csa_session::lock::Holder) {
    move |holder| {
        eprintln!(
            "csa: waiting for {}: {} holds it (giving up after {})",
            holder.path.display(),
            holder.describe(),
            humantime::format_duration(bound)
        );
    }
}

/// A result as JSON, with the session's id and whether its outcome was `observed` added
/// (`result --format json`, `wait --format json`; docs/json.md).
fn result_json(
    id: &str,
    result: &csa_session::result::SessionResult,
    observed: bool,
) -> Result<serde_json::Value, std::io::Error> {
    let mut value = serde_json::to_value(result)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("session_id".into(), id.into());
        obj.insert("observed".into(), observed.into());
    }
    Ok(value)
}

/// Whether the result of the session in `dir` was observed
/// ([`csa_session::reconcile::is_observed`], with state.toml's `termination_reason`; a state
/// that cannot be read leaves the summary to decide).
fn observed(
    dir: &csa_session::dirfd::StoreDir,
    result: &csa_session::result::SessionResult,
) -> bool {
    let reason = csa_session::state::SessionState::load(dir)
        .ok()
        .and_then(|s| s.view.termination_reason);
    csa_session::reconcile::is_observed(result, reason.as_deref())
}

/// What text output says of a result that was not observed.
const NOT_OBSERVED: &str = "synthetic (not observed)";

/// A command on one SESSION that failed with exit 3 because the session was deleted meanwhile
/// (`delete` renames its directory away, so its files vanish under a running command) reports
/// it as not found (exit 4, "deleted by another process meanwhile"), the failure as its cause.
/// `delete` tells that case itself, and `resume` applies this before a detached supervisor
/// reports. Regression: found by the stress test, where `wait` racing a `delete` exited 3 with
/// "state.toml is missing".
fn session_deleted_meanwhile(
    global: &GlobalArgs,
    cmd: &SessionCommand,
    outcome: CommandResult,
) -> CommandResult {
    let (cd, arg) = match cmd {
        SessionCommand::Result(a) => (a.cd.as_deref(), &a.session),
        SessionCommand::IsAlive(a) => (a.cd.as_deref(), &a.session),
        SessionCommand::Wait(a) => (a.cd.as_deref(), &a.session),
        SessionCommand::Logs(a) => (a.cd.as_deref(), &a.session),
        SessionCommand::Kill(a) => (a.cd.as_deref(), &a.session),
        _ => return outcome,
    };
    deleted_meanwhile(global, cd, arg, outcome)
}

/// [`session_deleted_meanwhile`] for the command on SESSION `arg` (looked up from `cd`).
fn deleted_meanwhile(
    global: &GlobalArgs,
    cd: Option<&Path>,
    arg: &str,
    outcome: CommandResult,
) -> CommandResult {
    match outcome {
        Err(err) if err.exit == Exit::Partial => {
            let gone = StateRoots::resolve(global.state_dir.as_deref()).is_ok_and(|roots| {
                project_of(&roots, cd).is_ok_and(|scope| {
                    matches!(
                        find_session(&roots, &scope, arg),
                        Err(csa_session::StoreError::NoSuchSession(_))
                    )
                })
            });
            if !gone {
                return Err(err);
            }
            Err(CommandError::new(
                Exit::NotFound,
                err.error.context(format!(
                    "session {arg} was deleted by another process meanwhile"
                )),
            ))
        }
        outcome => outcome,
    }
}
