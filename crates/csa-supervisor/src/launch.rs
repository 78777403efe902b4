//! Running one turn whose session exists (new, or resumed) with its tool lock held by this
//! process: contain it, spawn the agent, supervise it, deal with what it left running, and
//! finalize the turn.
//!
//! Launch failure: once the session exists, any failure before the agent runs (command not
//! found or not executable, directory gone, logs that cannot be opened, fork failure) retires
//! the session with a result of status `error` and `termination_reason = "spawn_failed"`, and
//! frees the directory (the claim is released when the caller drops it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use csa_process::HostIdentity;
use csa_session::claim::DirClaim;
use csa_session::create::{timestamp, Created, LockRecord};
use csa_session::finalize::{finalize_turn, TurnEnd};
use csa_session::liveness::AGENT_LOCK_REASON;
use csa_session::membership::ClaimRole;
use csa_session::reconcile::{output_tail_since, output_tail_through};
use csa_session::result::{Artifact, ResultStatus, SessionResult};
use csa_session::state::Phase;
use csa_session::StoreDir;

use crate::contain::{Containment, EarlyCgroup, EndPolicy, Leftovers};
use crate::detach::{Ready, SupervisorMode};
use crate::error::LaunchError;
use crate::spawn::{self, Output, SpawnError, SpawnFailure};
use crate::supervise::{self, Ended, Forwarder, Logs};

/// How many lines of stderr a failed turn's summary quotes.
const STDERR_TAIL_NOTE: &str = "last stderr:";

/// What a supervisor reports as it goes (the CLI prints these; a test may record them).
pub trait Events {
    /// The directory is busy and the run waits for it (said once).
    fn waiting_for_dir(&mut self, _dir: &Path, _who: &str) {}
    /// The session runs: its id and turn (said before the agent is spawned).
    fn started(&mut self, _id: &str, _turn: u32) {}
    /// The agent's main process exited and `count` processes it left are being stopped.
    fn stopping_leftovers(&mut self, _count: usize, _grace: Duration) {}
    /// Another process holds the session's `.reconcile.lock` (`holder`), and the turn waits
    /// for it at most `bound` (said once).
    fn waiting_for_lock(&mut self, _holder: &csa_session::lock::Holder, _bound: Duration) {}
}

/// Events nobody listens to.
#[derive(Debug, Default)]
pub struct Silent;

impl Events for Silent {}

/// How this process supervises the turn.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// In the foreground: the agent's output is streamed to csa's stdout and stderr and to the
    /// logs; its stdin is csa's.
    Foreground,
    /// A supervisor re-executed by `--detach` or for a nested run, reporting to its launcher.
    Supervisor(&'a Ready),
}

impl Mode<'_> {
    /// The report pipe, if any.
    pub fn ready(&self) -> Option<&Ready> {
        match self {
            Mode::Foreground => None,
            Mode::Supervisor(ready) => Some(ready),
        }
    }

    fn detached(&self) -> bool {
        matches!(self, Mode::Supervisor(r) if r.mode() == SupervisorMode::Detached)
    }
}

/// An interactive turn: the agent runs on a pseudo-terminal this supervisor owns, and people
/// attach to it (csa-terminal).
#[derive(Debug, Clone)]
pub struct Interactive {
    /// The terminal's initial size (the launching terminal's).
    pub size: csa_terminal::WindowSize,
    /// `TERM` for the agent (the launching terminal's), when known.
    pub term: Option<String>,
}

/// File name of an interactive turn's asciicast v2 recording, in the session directory.
pub const CAST_FILE: &str = "output.cast";
/// File name of csa's record of who is attached to an interactive session (`writer`,
/// `watchers`), rewritten by its supervisor on every change.
pub const ATTACH_FILE: &str = "attach.toml";

/// What to do when the agent's main process exits (docs/lifecycle.md, "End of a turn").
#[derive(Debug, Clone, Copy)]
pub struct EndOfTurn {
    /// Let leftover processes go instead of stopping them (`--leave-running`).
    pub leave_running: bool,
    /// How long leftovers get after SIGTERM before SIGKILL.
    pub grace: Duration,
}

impl Default for EndOfTurn {
    fn default() -> Self {
        EndOfTurn {
            leave_running: false,
            grace: Duration::from_secs(5),
        }
    }
}

/// The environment csa gives an agent: `CSA_SESSION_ID` (the marker that makes its processes
/// the session's), `CSA_SESSION_DIR`, `CSA_DEPTH` (0 at top level), `CSA_PROJECT_ROOT`, and
/// `CSA_PARENT_SESSION` when there is a parent (otherwise [`launch`] removes it from the
/// inherited environment).
pub fn session_env(
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

/// How the turn relates to the directory claim.
#[derive(Debug)]
pub enum TurnClaim {
    /// It holds the claim (released when the turn is finalized).
    Held(DirClaim),
    /// It runs nested under this ancestor session's claim.
    Nested(String),
    /// No claim (`--allow-concurrent`).
    None,
}

/// A turn ready to spawn its agent.
#[derive(Debug)]
pub struct Turn<'a> {
    /// The session, its tool lock held by this process.
    pub created: Created,
    /// The turn's number.
    pub number: u32,
    /// Its tool.
    pub tool: String,
    /// The command and arguments.
    pub command: Vec<String>,
    /// Where it runs.
    pub project_dir: PathBuf,
    /// Environment additions ([`session_env`]).
    pub env: Vec<(String, String)>,
    /// Whether the session has a parent (else `CSA_PARENT_SESSION` is removed).
    pub has_parent: bool,
    /// When the turn started.
    pub started: DateTime<Utc>,
    /// The directory claim.
    pub claim: TurnClaim,
    /// How this process supervises.
    pub mode: Mode<'a>,
    /// This host.
    pub host: HostIdentity,
    /// What to do with leftovers.
    pub end: EndOfTurn,
    /// For an interactive turn, its terminal.
    pub interactive: Option<Interactive>,
    /// Its cgroup, being created and joined ([`EarlyCgroup::start`]).
    pub early: EarlyCgroup,
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The session.
    pub session_id: String,
    /// The exit code a foreground `csa run` exits with: the agent's, or 128 + N for signal N.
    pub exit_code: u8,
    /// What the end of the turn did with the processes the agent left.
    pub leftovers: Leftovers,
}

/// Spawns the agent, supervises it, deals with its leftovers and finalizes the turn (see the
/// module docs).
///
/// # Errors
/// [`LaunchError::Spawn`] for a launch failure (the session is retired), [`LaunchError::Contain`]
/// when the turn cannot be contained (the session is retired too), store and I/O errors of
/// finalizing.
pub fn launch(turn: Turn<'_>, events: &mut dyn Events) -> Result<Finished, LaunchError> {
    let Turn {
        mut created,
        number,
        tool,
        command,
        project_dir,
        env,
        has_parent,
        started,
        claim,
        mode,
        host,
        end,
        interactive,
        early,
    } = turn;
    let id = created.id.clone();
    // The session's directories as descriptors (csa-session `dirfd`): everything written in
    // the session goes through them, never through its path.
    let session = match created.session().try_clone() {
        Ok(session) => session,
        Err(err) => {
            let err = SpawnError::other(format!("cannot open the session directory: {err}"));
            return launch_failed(&created, &tool, started, err);
        }
    };
    let program = &command[0];
    events.started(&id, number);
    // Any failure from here until the agent runs is a launch failure: the session must not
    // stay active.
    let (role, nested_in) = match &claim {
        TurnClaim::Held(_) => (ClaimRole::Held, None),
        TurnClaim::Nested(holder) => (ClaimRole::Nested, Some(holder.clone())),
        TurnClaim::None => (ClaimRole::None, None),
    };
    let mut containment = match Containment::begin(
        &session.dir,
        &id,
        number,
        (role, nested_in),
        interactive.is_some(),
        &host,
        early,
    ) {
        Ok(c) => c,
        Err(err) => {
            let spawn = SpawnError::other(err.to_string());
            return launch_failed(&created, &tool, started, spawn);
        }
    };
    let forwarder = match Forwarder::install() {
        Ok(f) => f,
        Err(e) => {
            containment.finish();
            let err = SpawnError::other(format!("cannot install signal handlers: {e}"));
            return launch_failed(&created, &tool, started, err);
        }
    };
    // The turn's completion record is reserved before the agent exists, so that its outcome
    // survives a disk that fills up meanwhile (csa-session turn_end).
    let reservation = match csa_session::turn_end::Reservation::create(&session.dir) {
        Ok(reservation) => reservation,
        Err(err) => {
            containment.finish();
            let spawn = SpawnError::other(format!(
                "cannot reserve the turn's completion record: {err}"
            ));
            return launch_failed(&created, &tool, started, spawn);
        }
    };
    // The session's logs are opened before the agent exists, in every mode (never through a
    // symlink): a log csa cannot open is a launch failure, not an agent left running
    // unsupervised. Regression: a foreground turn whose output.log was a symlink spawned the
    // agent, then failed to open the log and returned, leaving the session active.
    let logs = open_logs(&session.dir);
    let (stdout_offset, stderr_offset) = logs
        .as_ref()
        .map(|l| {
            (
                l.stdout.metadata().map(|m| m.len()).unwrap_or(0),
                l.stderr.metadata().map(|m| m.len()).unwrap_or(0),
            )
        })
        .unwrap_or((0, 0));
    let turn_logs = TurnLogs {
        stdout_offset,
        stderr_offset,
        interactive: interactive.is_some(),
    };
    let pty = match &interactive {
        Some(terminal) => match csa_terminal::Pty::open(terminal.size) {
            Ok(pty) => Some(pty),
            Err(err) => {
                containment.finish();
                let spawn = SpawnError::other(format!("cannot open a pseudo-terminal: {err}"));
                return launch_failed(&created, &tool, started, spawn);
            }
        },
        None => None,
    };
    let mut terminal_log = None;
    let (output, piped_logs) = match (&pty, mode.detached(), logs) {
        (_, _, Err(err)) => (Err(err), None),
        (Some(pty), _, Ok(logs)) => {
            terminal_log = Some(logs.stdout);
            (Ok(Output::Terminal(pty)), None)
        }
        (None, false, Ok(logs)) => (Ok(Output::Piped), Some(logs)),
        (None, true, Ok(logs)) => (
            Ok(Output::Files {
                stdout: logs.stdout,
                stderr: logs.stderr,
            }),
            None,
        ),
    };
    // The project's working directory, outside the state root.
    #[allow(clippy::disallowed_methods)]
    let project_exists = project_dir.is_dir();
    let spawned = if project_exists {
        output
    } else {
        // Checked first: exec would report a missing working directory as ENOENT, which reads
        // as "command not found".
        Err(SpawnError::other(format!(
            "{}: the project directory is gone",
            project_dir.display()
        )))
    };
    let env_remove: &[&str] = if has_parent {
        &[]
    } else {
        &["CSA_PARENT_SESSION"]
    };
    let spawned = spawned.and_then(|output| {
        csa_session::failpoint!("run::spawn").map_err(|e| SpawnError::other(e.to_string()))?;
        let resolved = spawn::resolve(program, &project_dir)?;
        let mut env = env.clone();
        if let Some(term) = interactive.as_ref().and_then(|t| t.term.clone()) {
            env.push(("TERM".to_owned(), term));
        }
        spawn::spawn(spawn::Launch {
            program: &resolved,
            args: &command[1..],
            cwd: &project_dir,
            env: &env,
            env_remove,
            output,
            stdin_null: mode.detached(),
        })
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            containment.finish();
            return launch_failed(&created, &tool, started, err);
        }
    };
    let agent = child.id();
    let agent_start = csa_process::start_time(agent);
    if let Err(err) = containment.agent_started(agent, agent_start) {
        // The agent is a member anyway (born in the cgroup, or carrying the marker).
        tracing::warn!(%err, "could not record the agent in the membership record");
    }
    let now = timestamp(Utc::now());
    if let Err(err) = created.record_agent(&LockRecord::new(
        agent,
        agent_start,
        &tool,
        &now,
        AGENT_LOCK_REASON,
        &host,
    )) {
        // The held flock still marks the session alive; the body is informational.
        tracing::warn!(%err, "could not record the agent in the lock body");
    }
    // An interactive turn: serve the terminal (the socket exists before "running" is said).
    let server = match (pty, &interactive) {
        (Some(pty), Some(terminal)) => {
            match serve(&session.dir, number, pty, terminal, terminal_log.take()) {
                Ok(server) => Some(server),
                Err(err) => {
                    // The agent runs but nobody can reach it: stop it, and say why.
                    let _ = child.kill();
                    let _ = child.wait();
                    containment.end_turn(EndPolicy::Stop(end.grace), |_| {});
                    containment.finish();
                    let spawn = SpawnError::other(format!("cannot serve the terminal: {err}"));
                    return launch_failed(&created, &tool, started, spawn);
                }
            }
        }
        _ => None,
    };
    if let Some(ready) = mode.ready() {
        ready.ok(&id);
    }

    // Supervise.
    let streams = piped_logs.map(|logs| supervise::stream(&mut child, logs));
    let ended = supervise::wait(&mut child, streams, forwarder)?;
    if let Some(server) = server {
        let exit = match ended {
            Ended::Code(code) => csa_terminal::AgentExit::Code(code),
            Ended::Signal(sig) => csa_terminal::AgentExit::Signal(sig),
        };
        server.finish(exit, Duration::from_millis(500));
    }

    // The end of the turn: what the agent left running.
    let policy = if end.leave_running {
        EndPolicy::Release
    } else {
        EndPolicy::Stop(end.grace)
    };
    let leftovers = containment.end_turn(policy, |n| events.stopping_leftovers(n, end.grace));

    // Finalize: first into the reserved record (no new space needed), then as usual.
    let result = turn_result(
        &session.dir,
        program,
        &tool,
        started,
        ended,
        leftovers,
        &turn_logs,
    );
    let exit_code = match ended {
        Ended::Code(code) => u8::try_from(code & 0xff).unwrap_or(1),
        Ended::Signal(sig) => 128u8.saturating_add(u8::try_from(sig).unwrap_or(0)),
    };
    let kept = match reservation.fill(&csa_session::turn_end::TurnEnd {
        turn: number,
        phase: Phase::Available,
        termination_reason: None,
        result: result.to_toml(),
    }) {
        Ok(()) => Some(reservation.path().to_owned()),
        Err(err) => {
            tracing::warn!("{err}: the turn's outcome is not kept if finalizing fails");
            None
        }
    };
    let finalized = csa_session::failpoint!("run::finalize")
        .map_err(csa_session::StoreError::from)
        .and_then(|()| {
            finalize_turn(
                &session,
                &TurnEnd {
                    result: &result,
                    phase: Phase::Available,
                    termination_reason: None,
                    tool: &tool,
                },
            )
        });
    if let Err(error) = finalized {
        let kept = kept.filter(|_| match reservation.persist() {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!("{err}");
                false
            }
        });
        let _ = csa_session::failpoint!("run::release_claim");
        drop(claim);
        drop(created);
        containment.finish();
        return Err(LaunchError::Unfinalized {
            session_id: id,
            exit_code,
            kept,
            error,
        });
    }
    reservation.remove();
    // A crash point, and where a test widens the window between the result and the release.
    let _ = csa_session::failpoint!("run::release_claim");
    drop(claim);
    drop(created);
    containment.finish();
    Ok(Finished {
        session_id: id,
        exit_code,
        leftovers,
    })
}

/// Starts the terminal server of an interactive turn: `output.cast` (a previous turn's
/// recording is moved to `output/turns/turn-NNNNNN/output.cast` first), `attach.sock`, and
/// `attach.toml` kept up to date, all in the session directory `dir` (a descriptor).
fn serve(
    dir: &StoreDir,
    number: u32,
    pty: csa_terminal::Pty,
    terminal: &Interactive,
    log: Option<std::fs::File>,
) -> Result<csa_terminal::Server, String> {
    let cast_path = dir.join(CAST_FILE);
    if number > 1 && dir.symlink_metadata(CAST_FILE).is_ok_and(|m| m.is_file()) {
        let turns = Path::new("output/turns").join(format!("turn-{:06}", number - 1));
        let archived = dir
            .create_private_path(&turns)
            .map_err(|e| e.to_string())
            .and_then(|history| {
                dir.rename(CAST_FILE, &history, CAST_FILE)
                    .map_err(|e| e.to_string())
            });
        if let Err(err) = archived {
            tracing::warn!("could not keep the previous turn's recording: {err}");
        }
    }
    let cast_file = dir.create_truncated(CAST_FILE).map_err(|e| e.to_string())?;
    let header = csa_terminal::CastHeader::now(terminal.size, terminal.term.clone());
    let cast = csa_terminal::CastWriter::create(cast_file, &header)
        .map_err(|e| format!("{}: {e}", cast_path.display()))?;
    let status_dir = dir.try_clone().map_err(|e| e.to_string())?;
    let mut on_status: csa_terminal::StatusCallback = Box::new(move |status| {
        let text = format!(
            "writer = {}\nwatchers = {}\n",
            status.writer, status.watchers
        );
        if let Err(err) = status_dir.write_atomic(
            ATTACH_FILE,
            text.as_bytes(),
            0o600,
            csa_session::atomic::Publish::Replace,
        ) {
            tracing::debug!(%err, "could not record who is attached");
        }
    });
    on_status(csa_terminal::AttachStatus::default());
    csa_terminal::Server::start(
        pty.into_master(),
        std::os::fd::AsFd::as_fd(dir),
        dir.path(),
        csa_terminal::ServerOptions {
            log,
            cast: Some(cast),
            on_status: Some(on_status),
        },
    )
    .map_err(|e| e.to_string())
}

/// Where this turn's output starts in the session's logs (their sizes when it started, bytes)
/// and whether it ran on a pseudo-terminal (its `output.log` is then escape sequences).
struct TurnLogs {
    stdout_offset: u64,
    stderr_offset: u64,
    interactive: bool,
}

/// The turn's result: the main process's exit status, a summary of this turn's own output
/// (and, when it failed, the last lines of its stderr), and what happened to leftovers.
fn turn_result(
    dir: &StoreDir,
    program: &str,
    tool: &str,
    started: DateTime<Utc>,
    ended: Ended,
    leftovers: Leftovers,
    logs: &TurnLogs,
) -> SessionResult {
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
    let mut summary = format!("{program} {what}");
    if leftovers.stopped > 0 {
        summary.push_str(&format!(
            "; stopped {} process(es) it left running{}",
            leftovers.stopped,
            if leftovers.killed > 0 {
                format!(" ({} with SIGKILL)", leftovers.killed)
            } else {
                String::new()
            }
        ));
    }
    if leftovers.released > 0 {
        summary.push_str(&format!(
            "; left {} process(es) running (--leave-running)",
            leftovers.released
        ));
    }
    // An interactive turn's log is what the agent drew on its terminal: the summary quotes its
    // text, not its escape sequences.
    let tail = if logs.interactive {
        output_tail_through(dir, "output.log", logs.stdout_offset, |raw| {
            csa_terminal::strip_escapes(&raw)
        })
    } else {
        output_tail_since(dir, "output.log", logs.stdout_offset)
    };
    if !tail.is_empty() {
        summary.push_str("\nlast output:\n");
        summary.push_str(&tail);
    }
    if status != ResultStatus::Success {
        let err_tail = output_tail_since(dir, "stderr.log", logs.stderr_offset);
        if !err_tail.is_empty() {
            summary.push('\n');
            summary.push_str(STDERR_TAIL_NOTE);
            summary.push('\n');
            summary.push_str(&err_tail);
        }
    }
    let mut other = toml::Table::new();
    if leftovers.stopped > 0 {
        other.insert(
            "leftover_processes_stopped".into(),
            toml::Value::Integer(i64::try_from(leftovers.stopped).unwrap_or(i64::MAX)),
        );
    }
    if leftovers.released > 0 {
        other.insert(
            "leftover_processes_released".into(),
            toml::Value::Integer(i64::try_from(leftovers.released).unwrap_or(i64::MAX)),
        );
    }
    SessionResult {
        status,
        exit_code,
        summary,
        tool: tool.to_owned(),
        started_at: started,
        completed_at: Utc::now(),
        artifacts: artifacts(dir),
        other,
    }
}

/// A launch failure after the session exists: retire it with an `error` result.
fn launch_failed(
    created: &Created,
    tool: &str,
    started: DateTime<Utc>,
    err: SpawnError,
) -> Result<Finished, LaunchError> {
    let result = SessionResult {
        status: ResultStatus::Error,
        exit_code: i64::from(err.failure.code()),
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
                created.session(),
                &TurnEnd {
                    result: &result,
                    phase: Phase::Retired,
                    termination_reason: Some("spawn_failed"),
                    tool,
                },
            )
        });
    Err(LaunchError::Spawn {
        error: err,
        session_id: created.id.clone(),
        retire_error: finalized.err().map(|e| e.to_string()),
    })
}

/// Opens the session's logs for appending, creating them (0600) if missing (sessions written
/// by other tools may not have them yet), in the session directory `dir` (a descriptor), never
/// through a symlink (`O_NOFOLLOW`).
fn open_logs(dir: &StoreDir) -> Result<Logs, SpawnError> {
    let open = |name: &str| {
        dir.open_append(name)
            .map(|f| (f, dir.join(name)))
            .map_err(|e| SpawnError {
                failure: SpawnFailure::Other,
                message: format!("cannot open the session's logs: {e}"),
            })
    };
    let (stdout, stdout_path) = open("output.log")?;
    let (stderr, stderr_path) = open("stderr.log")?;
    Ok(Logs {
        stdout,
        stdout_path,
        stderr,
        stderr_path,
    })
}

/// The files under `output/` (except csa's and upstream's own event log), as artifacts.
fn artifacts(dir: &StoreDir) -> Vec<Artifact> {
    let Ok(Some(output)) = dir.open_dir_if_exists("output") else {
        return Vec::new();
    };
    let Ok(entries) = output.entries() else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .into_iter()
        .filter(|e| e.kind == csa_session::dirfd::Kind::File)
        .map(|e| PathBuf::from("output").join(e.name))
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
