//! Starting a turn from the command line, shared by `csa run`, `csa session resume` and `csa
//! session retry` (the commands only parse; they never import each other): which kind of
//! supervisor runs the turn, the events it prints, how its errors read, and the attach client
//! of an interactive turn. The process running a foreground turn is the session's supervisor;
//! `--detach`, `--tty` and runs started from inside another session re-execute csa as a
//! supervisor of its own (csa-supervisor `detach`) with the command line `supervisor_args`
//! builds.

pub(crate) mod attach;
pub(crate) mod events;
pub(crate) mod interactive;

use std::ffi::OsString;
use std::path::Path;

use anyhow::anyhow;
use csa_session::secure::shell_quote;
use csa_supervisor::detach::{spawn_supervisor, Ready, Report, SupervisorMode};
use csa_supervisor::{EndOfTurn, LaunchError, Mode, RunRequest};

use crate::cli::{Format, GlobalArgs, ResumeArgs, RunArgs, TerminalArgs};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Runs a new session's turn as `args` says (the whole of `csa run`).
pub fn run_turn(global: &GlobalArgs, args: &RunArgs) -> CommandResult {
    let ready = Ready::from_env();
    if ready.is_none() {
        if interactive(args) {
            return interactive::run(global, args);
        }
        if args.detach {
            return relay(global, args, SupervisorMode::Detached);
        }
        if inside_a_session() {
            return relay(global, args, SupervisorMode::Nested);
        }
    }
    let request = request(global, args);
    let mode = match &ready {
        Some(ready) => Mode::Supervisor(ready),
        None => Mode::Foreground,
    };
    let mut events = events::Printer::new(global.quiet || detached(ready.as_ref()));
    let outcome = csa_supervisor::run::run(&request, mode, &mut events)
        .map(|finished| Exit::Agent(finished.exit_code))
        .map_err(|err| launch_error(global, &args.command, err));
    if let (Some(ready), Err(err)) = (&ready, &outcome) {
        ready.fail(err.exit.code(), &err.render());
    }
    outcome
}

/// Whether the agent gets a pseudo-terminal: `--tty`, or, unless `--no-tty` or `--detach`,
/// when csa's stdin and stdout are both terminals.
fn interactive(args: &RunArgs) -> bool {
    wants_terminal(&args.terminal, args.detach)
}

/// The rule of [`interactive`], for `run` and `resume` alike.
pub(crate) fn wants_terminal(terminal: &TerminalArgs, detach: bool) -> bool {
    use std::io::IsTerminal;
    terminal.tty
        || (!terminal.no_tty
            && !detach
            && std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal())
}

/// Whether this process is a detached supervisor (its stderr is /dev/null).
pub(crate) fn detached(ready: Option<&Ready>) -> bool {
    ready.is_some_and(|r| r.mode() == SupervisorMode::Detached)
}

/// Whether csa was started from inside a session (by an agent, or a process of one).
pub(crate) fn inside_a_session() -> bool {
    std::env::var_os("CSA_SESSION_ID").is_some_and(|id| !id.is_empty())
}

fn request(global: &GlobalArgs, args: &RunArgs) -> RunRequest {
    RunRequest {
        state_dir: global.state_dir.clone(),
        command: args.command.clone(),
        tool: args.tool.clone(),
        description: args.description.clone(),
        cd: args.cd.clone(),
        allow_concurrent: args.allow_concurrent,
        wait_for_dir: args.wait_for_dir,
        parent: args.parent.clone(),
        end: EndOfTurn {
            leave_running: args.leave_running,
            grace: args.grace,
        },
        // A supervisor started for an interactive run gets --tty and the terminal's size.
        interactive: terminal_of(&args.terminal),
    }
}

/// The `csa run` command line a re-executed supervisor parses: the same request, with the
/// parent made explicit (the supervisor does not inherit `CSA_SESSION_ID`).
pub(crate) fn supervisor_args(
    global: &GlobalArgs,
    args: &RunArgs,
) -> Result<Vec<OsString>, CommandError> {
    let mut sub: Vec<OsString> = Vec::new();
    if let Some(dir) = &global.state_dir {
        sub.extend(["--state-dir".into(), dir.clone().into_os_string()]);
    }
    sub.push("run".into());
    if let Some(tool) = &args.tool {
        sub.extend(["--tool".into(), tool.into()]);
    }
    if let Some(d) = &args.description {
        sub.extend(["--description".into(), d.into()]);
    }
    let cd = match &args.cd {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    sub.extend(["--cd".into(), cd.into_os_string()]);
    if args.allow_concurrent {
        sub.push("--allow-concurrent".into());
    }
    match args.wait_for_dir {
        Some(csa_supervisor::WaitFor::Forever) => sub.push("--wait-for-dir".into()),
        Some(csa_supervisor::WaitFor::AtMost(d)) => {
            sub.push(format!("--wait-for-dir={}s", d.as_secs_f64().ceil()).into());
        }
        None => {}
    }
    let parent = args.parent.clone().or_else(|| {
        std::env::var("CSA_SESSION_ID")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if let Some(p) = parent {
        sub.extend(["--parent".into(), p.into()]);
    }
    if args.leave_running {
        sub.push("--leave-running".into());
    }
    sub.push(format!("--grace={}ms", args.grace.as_millis()).into());
    if let Some(size) = args.terminal.tty_size {
        sub.extend([
            "--tty".into(),
            format!("--tty-size={}x{}", size.cols, size.rows).into(),
        ]);
    }
    sub.push("--".into());
    sub.extend(args.command.iter().map(OsString::from));
    Ok(sub)
}

/// The `csa session resume` command line a re-executed supervisor parses: the same request for
/// the session `id`, on a pseudo-terminal of `tty_size` when given.
pub(crate) fn resume_supervisor_args(
    global: &GlobalArgs,
    args: &ResumeArgs,
    id: &str,
    tty_size: Option<csa_terminal::WindowSize>,
) -> Vec<OsString> {
    let mut sub: Vec<OsString> = Vec::new();
    if let Some(dir) = &global.state_dir {
        sub.extend(["--state-dir".into(), dir.clone().into_os_string()]);
    }
    sub.extend(["session".into(), "resume".into(), id.into()]);
    if let Some(cd) = &args.cd {
        sub.extend(["--cd".into(), cd.clone().into_os_string()]);
    }
    if args.leave_running {
        sub.push("--leave-running".into());
    }
    sub.push(format!("--grace={}ms", args.grace.as_millis()).into());
    sub.push(format!("--lock-timeout={}ms", args.lock_timeout.as_millis()).into());
    if let Some(size) = tty_size {
        sub.extend([
            "--tty".into(),
            format!("--tty-size={}x{}", size.cols, size.rows).into(),
        ]);
    }
    if !args.command.is_empty() {
        sub.push("--".into());
        sub.extend(args.command.iter().map(OsString::from));
    }
    sub
}

/// A turn on a pseudo-terminal, for the supervisor: `--tty` with the size the client gave, and
/// the client's `TERM`.
pub(crate) fn terminal_of(terminal: &TerminalArgs) -> Option<csa_supervisor::launch::Interactive> {
    terminal.tty.then(|| csa_supervisor::launch::Interactive {
        size: terminal
            .tty_size
            .unwrap_or(csa_terminal::WindowSize::DEFAULT),
        term: std::env::var("TERM").ok().filter(|t| !t.is_empty()),
    })
}

/// Starts a supervisor of its own for this run and relays what it reports.
fn relay(global: &GlobalArgs, args: &RunArgs, mode: SupervisorMode) -> CommandResult {
    let sub = supervisor_args(global, args)?;
    relay_report(&sub, mode, args.format)
}

/// Starts a supervisor with the command line `sub` and relays its report: the session id
/// (detached), its exit code (nested), or its error.
pub(crate) fn relay_report(
    sub: &[OsString],
    mode: SupervisorMode,
    format: Format,
) -> CommandResult {
    let exe = std::env::current_exe()?;
    let report = spawn_supervisor(&exe, sub, mode).map_err(|e| {
        CommandError::new(Exit::Negative, anyhow!("cannot start the supervisor: {e}"))
    })?;
    match report {
        Report::Started(id) => {
            print_started(&id, format);
            Ok(Exit::Success)
        }
        Report::Exited { code, .. } => Ok(Exit::Agent(code)),
        Report::Failed { code, message } => {
            let exit = Exit::from_code(code);
            if format == Format::Json && mode == SupervisorMode::Detached {
                println!(
                    "{}",
                    serde_json::json!({ "error": message, "exit_code": exit.code() })
                );
            }
            eprintln!("error: {message}");
            Ok(exit)
        }
        Report::Died(why) => Err(CommandError::new(Exit::Negative, anyhow!(why))),
    }
}

/// A launch error as the user sees it: exit code and hint.
pub(crate) fn launch_error(
    global: &GlobalArgs,
    command: &[String],
    err: LaunchError,
) -> CommandError {
    match err {
        LaunchError::Usage(message) => CommandError::new(Exit::Usage, anyhow!(message)),
        LaunchError::Busy { ref dir, ref busy } => {
            let hints = busy_hints(global, dir, busy, command);
            CommandError::new(Exit::Busy, err).with_hint(hints)
        }
        LaunchError::Spawn {
            error,
            session_id,
            retire_error,
        } => {
            let exit = Exit::from_code(error.failure.code());
            match retire_error {
                None => CommandError::new(exit, anyhow!("{}", error.message)).with_hint(format!(
                    "session {session_id} is retired (spawn_failed); the directory is free"
                )),
                Some(why) => CommandError::new(
                    exit,
                    anyhow!(
                        "{}; and the session could not be retired: {why}",
                        error.message
                    ),
                ),
            }
        }
        LaunchError::Unfinalized { ref kept, .. } => {
            let hint = match kept {
                Some(path) => format!(
                    "its outcome is kept in {}; `csa session reconcile` finalizes it with it once the disk has room",
                    shell_quote(&path.to_string_lossy())
                ),
                None => "`csa session reconcile` finalizes it once its processes are gone".to_owned(),
            };
            CommandError::new(Exit::Partial, err).with_hint(hint)
        }
        LaunchError::Contain(err) => CommandError::new(Exit::Partial, err),
        LaunchError::Resume(refusal) => refused(refusal),
        LaunchError::Store(err) => err.into(),
        LaunchError::Io(err) => err.into(),
    }
}

/// A refusal of `csa session resume` as the user sees it: 2 for a missing command, the store's
/// exit and hint for a store error, 75 otherwise.
pub(crate) fn refused(refusal: csa_session::resume::Refusal) -> CommandError {
    use csa_session::resume::Refusal;
    let retry = match &refusal {
        // A killed, failed or exhausted session cannot take a new turn, but can run again.
        Refusal::NotResumable { id, .. } => Some(format!(
            "run its command again as a new session: csa session retry {id}"
        )),
        _ => None,
    };
    let exit = match refusal {
        Refusal::NoCommand(_) => Exit::Usage,
        // The store's error, with its exit code and hint (a refused session directory's fix).
        Refusal::Store(err) => return err.into(),
        _ => Exit::Busy,
    };
    let error = CommandError::new(exit, refusal);
    match retry {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

/// Hints for a busy directory, meant to be pasted into a shell: how to wait for the session
/// that holds it, how to stop it, and how to queue behind it. Every user-supplied word is
/// quoted, so that nothing in it (`$(…)`, `;`, `*`) is ever run or expanded.
fn busy_hints(
    global: &GlobalArgs,
    project_dir: &Path,
    busy: &csa_session::claim::Busy,
    command: &[String],
) -> String {
    let quote = |s: &str| shell_quote(s).into_owned();
    let state_dir = global
        .state_dir
        .as_ref()
        .map(|d| format!(" --state-dir {}", quote(&d.to_string_lossy())))
        .unwrap_or_default();
    let mut hints = Vec::new();
    if let Some(id) = &busy.session_id {
        hints.push(format!("wait for it: csa{state_dir} session wait {id}"));
        hints.push(format!("or stop it: csa{state_dir} session kill {id}"));
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
    hints.join("\nhint: ")
}

/// Formats the detach answer.
pub(crate) fn print_started(id: &str, format: Format) {
    match format {
        Format::Json => println!("{}", serde_json::json!({ "session_id": id })),
        Format::Text => println!("{id}"),
    }
}
