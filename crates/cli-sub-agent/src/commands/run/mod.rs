//! `csa run`: launch any command as a tracked session, one at a time per working directory.
//!
//! The process running this is the session's *supervisor*: it claims the directory
//! (csa-session `claim`), builds and publishes the session (csa-session `create`), spawns the
//! agent in its own session and process group (`spawn`), supervises it (`supervise`) and
//! finalizes the turn (csa-session `finalize`). With `--detach`, `detach` re-executes csa as
//! such a supervisor without a controlling terminal and returns once the session is running.
//!
//! Launch failure: once the claim is taken, any failure (command not found or not executable,
//! directory gone, fork failure) retires the session with a result of status `error` and
//! `termination_reason = "spawn_failed"`, releases the claim and exits with 127, 126 or 1.

pub(crate) mod detach;
pub(crate) mod spawn;
mod supervise;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context as _};
use chrono::Utc;
use csa_process::HostIdentity;
use csa_session::claim::{ClaimAttempt, ClaimHolder, DirClaim};
use csa_session::create::{
    is_valid_tool_name, timestamp, Created, Draft, LockRecord, NewSession, Parent, TurnRecord,
};
use csa_session::finalize::{finalize_turn, TurnEnd};
use csa_session::inventory::find_session;
use csa_session::paths::{project_key, Project, StateRoots};
use csa_session::reconcile::output_tail;
use csa_session::result::{Artifact, ResultStatus, SessionResult};
use csa_session::secure::shell_quote;
use csa_session::state::{Phase, SessionState};

use crate::cli::{Format, GlobalArgs, RunArgs, WaitFor};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;
use supervise::Ended;

/// Runs the command.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> CommandResult {
    let ready = detach::Ready::from_env();
    if args.detach && ready.is_none() {
        return detach::launch(global, args);
    }
    let outcome = supervise_run(global, args, ready.as_ref());
    if let (Some(ready), Err(err)) = (&ready, &outcome) {
        ready.fail(err);
    }
    outcome
}

fn usage(err: impl Into<anyhow::Error>) -> CommandError {
    CommandError::new(Exit::Usage, err)
}

fn supervise_run(
    global: &GlobalArgs,
    args: &RunArgs,
    ready: Option<&detach::Ready>,
) -> CommandResult {
    let roots = StateRoots::resolve(global.state_dir.as_deref())?;
    let cd = match &args.cd {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let project_dir = fs_err::canonicalize(&cd)
        .map_err(|e| usage(anyhow::Error::new(e).context("--cd: no such directory")))?;
    let key = project_key(&project_dir).map_err(usage)?;
    let project = Project::new(roots.primary(), &key);
    // Before creating anything: a root or project directory that another user owns or can
    // write, or that is a symbolic link inside the root, is refused (csa-session `secure`).
    crate::commands::session::check_roots(&roots)?;
    crate::commands::session::check_project(&roots, &project)?;
    let program = &args.command[0];
    let tool = match &args.tool {
        Some(tool) => tool.clone(),
        None => Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if !is_valid_tool_name(&tool) {
        return Err(usage(anyhow!(
            "{tool:?} cannot name a tool: use 1-64 characters of A-Z a-z 0-9 . _ - (pass --tool NAME)"
        )));
    }
    let parent = parent_of(&roots, args.parent.as_deref())?;

    // 1. Claim the directory (before anything exists).
    let mut claim = if args.allow_concurrent {
        None
    } else {
        Some(claim_dir(
            global,
            &project,
            &project_dir,
            args.wait_for_dir,
            &args.command,
        )?)
    };

    // 2. Build and publish the session.
    let id = ulid::Ulid::new().to_string();
    let dir = project.session_dir(&id);
    let depth = parent.as_ref().map_or(0, |p| p.depth + 1);
    let env = session_env(
        &id,
        &dir,
        depth,
        &project_dir,
        parent.as_ref().map(|p| p.session_id.as_str()),
    );
    let started = Utc::now();
    let new = NewSession {
        id: id.clone(),
        project_path: project_dir.clone(),
        tool: tool.clone(),
        description: args.description.clone(),
        parent,
        turn: TurnRecord {
            turn: 1,
            command: args.command.clone(),
            cwd: project_dir.to_string_lossy().into_owned(),
            env: env.iter().cloned().collect::<BTreeMap<_, _>>(),
            started_at: timestamp(started),
        },
    };
    let me = std::process::id();
    let host = HostIdentity::current();
    if let Some(claim) = claim.as_mut() {
        let holder = ClaimHolder {
            session_id: id.clone(),
            pid: me,
            started_at: timestamp(started),
        };
        if let Err(err) = claim.record_holder(&holder) {
            tracing::warn!(%err, "could not record the claim holder");
        }
    }
    let created =
        Draft::build(&project, &new, (me, csa_process::start_ticks(me)), &host)?.publish()?;
    if ready.is_none() {
        eprintln!("csa: session {id}");
    }

    launch(Turn {
        created,
        tool,
        command: args.command.clone(),
        project_dir,
        env,
        has_parent: new.parent.is_some(),
        started,
        claim,
        ready,
        host,
    })
}

/// The environment csa gives an agent: `CSA_SESSION_ID`, `CSA_SESSION_DIR`, `CSA_DEPTH` (0 at
/// top level), `CSA_PROJECT_ROOT`, and `CSA_PARENT_SESSION` when there is a parent (otherwise
/// [`launch`] removes it from the inherited environment).
pub(crate) fn session_env(
    id: &str,
    dir: &Path,
    depth: u32,
    project_dir: &Path,
    parent: Option<&str>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("CSA_SESSION_ID".to_owned(), id.to_owned()),
        (
            "CSA_SESSION_DIR".to_owned(),
            dir.to_string_lossy().into_owned(),
        ),
        ("CSA_DEPTH".to_owned(), depth.to_string()),
        (
            "CSA_PROJECT_ROOT".to_owned(),
            project_dir.to_string_lossy().into_owned(),
        ),
    ];
    if let Some(parent) = parent {
        env.push(("CSA_PARENT_SESSION".to_owned(), parent.to_owned()));
    }
    env
}

/// A turn whose session exists (new, or resumed) with its tool lock held by this process,
/// ready to spawn its agent.
pub(crate) struct Turn<'a> {
    /// The session.
    pub created: Created,
    /// Its tool.
    pub tool: String,
    /// The command and arguments.
    pub command: Vec<String>,
    /// Where it runs.
    pub project_dir: PathBuf,
    /// Environment additions.
    pub env: Vec<(String, String)>,
    /// Whether the session has a parent (else `CSA_PARENT_SESSION` is removed).
    pub has_parent: bool,
    /// When the turn started.
    pub started: chrono::DateTime<Utc>,
    /// The directory claim, if taken.
    pub claim: Option<DirClaim>,
    /// The detached parent's report pipe, if any.
    pub ready: Option<&'a detach::Ready>,
    /// This host.
    pub host: HostIdentity,
}

/// Steps 3–5: spawns the agent, supervises it and finalizes the turn (see the module docs).
pub(crate) fn launch(turn: Turn<'_>) -> CommandResult {
    let Turn {
        mut created,
        tool,
        command,
        project_dir,
        env,
        has_parent,
        started,
        claim,
        ready,
        host,
    } = turn;
    let id = created.id.clone();
    let dir = created.dir.clone();
    let program = &command[0];
    // 3. Spawn the agent, catching signals first so that none kills csa instead.
    let forwarder = supervise::Forwarder::install().context("installing signal handlers")?;
    let env_remove: &[&str] = if !has_parent {
        &["CSA_PARENT_SESSION"]
    } else {
        &[]
    };
    // Any failure from here until the agent runs is a launch failure: the session must not
    // stay active.
    // The session's logs are opened before the agent exists, in both modes (never through a
    // symlink: `append`): a log csa cannot open is a launch failure, not an agent left running
    // unsupervised. Regression: a foreground turn whose output.log was a symlink spawned the
    // agent, then failed to open the log and returned, leaving the session active.
    let logs = append(&dir.join("output.log"))
        .and_then(|stdout| Ok((stdout, append(&dir.join("stderr.log"))?)))
        .map_err(|e| spawn::SpawnError {
            exit: Exit::Negative,
            message: format!("cannot open the session's logs: {}", e.error),
        });
    let (output, piped_logs) = match (ready, logs) {
        (_, Err(err)) => (Err(err), None),
        (None, Ok(files)) => (Ok(spawn::Output::Piped), Some(files)),
        (Some(_), Ok((stdout, stderr))) => (Ok(spawn::Output::Files { stdout, stderr }), None),
    };
    let spawned = if project_dir.is_dir() {
        output
    } else {
        // Checked first: exec would report a missing working directory as ENOENT, which
        // reads as "command not found".
        Err(spawn::SpawnError {
            exit: Exit::Negative,
            message: format!("{}: the project directory is gone", project_dir.display()),
        })
    };
    let spawned = spawned.and_then(|output| {
        if let Err(err) = csa_session::failpoint!("run::spawn") {
            return Err(spawn::SpawnError {
                exit: Exit::Negative,
                message: err.to_string(),
            });
        }
        let resolved = spawn::resolve(program, &project_dir)?;
        let mut inherit = vec![created.tool_lock_fd()];
        if let Some(claim) = &claim {
            inherit.push(claim.as_fd());
        }
        spawn::spawn(spawn::Launch {
            program: &resolved,
            args: &command[1..],
            cwd: &project_dir,
            env: &env,
            env_remove,
            output,
            stdin_null: ready.is_some(),
            inherit: &inherit,
        })
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => return launch_failed(&created, &tool, started, err, claim, ready),
    };
    let agent = child.id();
    let now = timestamp(Utc::now());
    if let Err(err) = created.record_agent(&LockRecord {
        pid: agent,
        pid_start_time_ticks: csa_process::start_ticks(agent),
        tool_name: &tool,
        acquired_at: &now,
        reason: "csa run agent",
        boot_id: host.boot_id.as_deref(),
        machine_id: host.machine_id.as_deref(),
        hostname: host.hostname.as_deref(),
        pid_ns: host.pid_ns,
    }) {
        // The held flock still marks the session alive; the body is informational.
        tracing::warn!(%err, "could not record the agent in the lock body");
    }
    if let Some(ready) = ready {
        ready.ok(&id);
    }

    // 4. Supervise.
    let streams = piped_logs.map(|(stdout, stderr)| supervise::stream(&mut child, stdout, stderr));
    let ended = supervise::wait(&mut child, streams, forwarder).context("waiting for the agent")?;

    // 5. Finalize.
    let (status, exit_code, what) = match ended {
        Ended::Code(0) => (ResultStatus::Success, 0, "exited with code 0".to_owned()),
        Ended::Code(code) => (
            ResultStatus::Failure,
            i64::from(code),
            format!("exited with code {code}"),
        ),
        Ended::Signal(sig) => (
            ResultStatus::Signal,
            128 + i64::from(sig),
            format!("was killed by signal {sig}"),
        ),
    };
    let tail = output_tail(&dir.join("output.log"));
    let mut summary = format!("{program} {what}");
    if !tail.is_empty() {
        summary.push_str("\nlast output:\n");
        summary.push_str(&tail);
    }
    let result = SessionResult {
        status,
        exit_code,
        summary,
        tool: tool.clone(),
        started_at: started,
        completed_at: Utc::now(),
        artifacts: artifacts(&dir),
        other: Default::default(),
    };
    csa_session::failpoint!("run::finalize").context("finalizing the turn")?;
    finalize_turn(
        &dir,
        &id,
        &TurnEnd {
            result: &result,
            phase: Phase::Available,
            termination_reason: None,
            tool: &tool,
        },
    )?;
    drop(created);
    drop(claim);
    Ok(match ended {
        Ended::Code(code) => Exit::Agent(u8::try_from(code & 0xff).unwrap_or(1)),
        Ended::Signal(sig) => Exit::Signal(u8::try_from(sig).unwrap_or(0)),
    })
}

/// A launch failure after the session exists: retire it with an `error` result.
fn launch_failed(
    created: &Created,
    tool: &str,
    started: chrono::DateTime<Utc>,
    err: spawn::SpawnError,
    claim: Option<DirClaim>,
    ready: Option<&detach::Ready>,
) -> CommandResult {
    let result = SessionResult {
        status: ResultStatus::Error,
        exit_code: i64::from(err.exit.code()),
        summary: format!("launch failed: {}", err.message),
        tool: tool.to_owned(),
        started_at: started,
        completed_at: Utc::now(),
        artifacts: Vec::new(),
        other: Default::default(),
    };
    let finalized = csa_session::failpoint!("run::launch_failed")
        .map_err(csa_session::StoreError::from)
        .and_then(|()| {
            finalize_turn(
                &created.dir,
                &created.id,
                &TurnEnd {
                    result: &result,
                    phase: Phase::Retired,
                    termination_reason: Some("spawn_failed"),
                    tool,
                },
            )
        });
    drop(claim);
    let error = CommandError::new(err.exit, anyhow!("{}", err.message));
    let error = match finalized {
        Ok(_) => error.with_hint(format!(
            "session {} is retired (spawn_failed); the directory is free",
            created.id
        )),
        Err(store) => CommandError::new(
            err.exit,
            anyhow!(
                "{}; and the session could not be retired: {store}",
                err.message
            ),
        ),
    };
    if let Some(ready) = ready {
        ready.fail(&error);
    }
    Err(error)
}

/// Claims the project directory, waiting with `--wait-for-dir`.
pub(crate) fn claim_dir(
    global: &GlobalArgs,
    project: &Project,
    project_dir: &Path,
    wait_for_dir: Option<WaitFor>,
    command: &[String],
) -> Result<DirClaim, CommandError> {
    let start = Instant::now();
    let mut said_waiting = false;
    loop {
        match DirClaim::try_acquire(&project.sessions_dir)? {
            ClaimAttempt::Claimed(claim) => return Ok(claim),
            ClaimAttempt::Busy(holder) => {
                let who = match &holder {
                    Some(h) => format!(
                        "session {} (pid {}, running since {})",
                        h.session_id, h.pid, h.started_at
                    ),
                    None => "another csa run".to_owned(),
                };
                let out_of_time = match wait_for_dir {
                    None => true,
                    Some(WaitFor::Forever) => false,
                    Some(WaitFor::AtMost(limit)) => start.elapsed() >= limit,
                };
                if out_of_time {
                    return Err(busy(global, project_dir, &who, holder.as_ref(), command));
                }
                if !said_waiting {
                    eprintln!(
                        "csa: waiting for {}: {who} is running (Ctrl-C to stop waiting)",
                        project_dir.display()
                    );
                    said_waiting = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

fn busy(
    global: &GlobalArgs,
    project_dir: &Path,
    who: &str,
    holder: Option<&ClaimHolder>,
    command: &[String],
) -> CommandError {
    // Hints are meant to be pasted into a shell: every user-supplied word is quoted, so that
    // nothing in it (`$(…)`, `;`, `*`) is ever run or expanded.
    let quote = |s: &str| shell_quote(s).into_owned();
    let state_dir = global
        .state_dir
        .as_ref()
        .map(|d| format!(" --state-dir {}", quote(&d.to_string_lossy())))
        .unwrap_or_default();
    let mut hints = Vec::new();
    if let Some(h) = holder {
        hints.push(format!(
            "wait for it: csa{state_dir} session wait {}",
            h.session_id
        ));
    }
    hints.push(format!(
        "or queue behind it: csa{state_dir} run --wait-for-dir --cd {} -- {}",
        quote(&project_dir.to_string_lossy()),
        command
            .iter()
            .map(|word| quote(word))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let error = CommandError::new(
        Exit::Busy,
        anyhow!("{} is busy: {who}", project_dir.display()),
    );
    error.with_hint(hints.join("\nhint: "))
}

fn parent_of(roots: &StateRoots, arg: Option<&str>) -> Result<Option<Parent>, CommandError> {
    let (id, explicit) = match arg {
        Some(id) => (id.to_owned(), true),
        None => match std::env::var("CSA_SESSION_ID") {
            Ok(id) if !id.is_empty() => (id, false),
            _ => return Ok(None),
        },
    };
    let found = match find_session(roots, &[], &id) {
        Ok(found) => found,
        Err(err) if explicit => return Err(err.into()),
        Err(err) => {
            tracing::warn!("ignoring CSA_SESSION_ID: {err}");
            return Ok(None);
        }
    };
    let depth = SessionState::load(&found.dir())
        .ok()
        .and_then(|s| s.view.genealogy.and_then(|g| g.depth))
        .unwrap_or(0);
    Ok(Some(Parent {
        session_id: found.id,
        depth,
    }))
}

/// Opens a session log for appending, creating it (0600) if missing: sessions written by
/// other tools may not have one yet.
fn append(path: &Path) -> Result<std::fs::File, CommandError> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    Ok(fs_err::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?
        .into_parts()
        .0)
}

/// The files under `output/` (except csa's and upstream's own event log), as artifacts.
fn artifacts(dir: &Path) -> Vec<Artifact> {
    let Ok(entries) = fs_err::read_dir(dir.join("output")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| PathBuf::from("output").join(e.file_name()))
        .filter(|p| !p.ends_with("acp-events.jsonl"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| Artifact {
            path: p.to_string_lossy().into_owned(),
        })
        .collect()
}

/// Formats the detach answer.
fn print_started(id: &str, format: Format) {
    match format {
        Format::Json => println!("{}", serde_json::json!({ "session_id": id })),
        Format::Text => println!("{id}"),
    }
}
