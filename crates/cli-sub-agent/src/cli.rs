//! Command-line definitions (clap derive). docs/cli.md documents every command and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// csa: a session manager for coding sub-agents.
#[derive(Debug, Parser)]
#[command(
    name = "csa",
    version = crate::version::VERSION_LINE,
    // The man page's NAME line reads `csa - <about>`.
    about = "session manager for coding sub-agents",
    propagate_version = true
)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// State root to use instead of $XDG_STATE_HOME/cli-sub-agent (and the legacy …/csa).
    #[arg(long, global = true, value_name = "DIR", env = "CSA_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Whether `state_dir` came from `CSA_STATE_DIR` rather than `--state-dir` (set after
    /// parsing, for messages).
    #[arg(skip)]
    pub state_dir_from_env: bool,
    /// More diagnostics on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// When to colour output (under auto, NO_COLOR and CLICOLOR_FORCE apply).
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    pub color: crate::output::ColorWhen,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run any command as a tracked session (one at a time per directory).
    Run(RunArgs),
    /// Inspect and maintain sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Check the state root(s), /proc and the active-session record; print each problem with
    /// its fix (exit 1 if any).
    Doctor(DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(CompletionsArgs),
    /// Print the csa(1) man page, or write every page (csa-run.1, csa-session-list.1, …) to DIR.
    Man(ManArgs),
    /// Tools for testing csa itself (not a stable interface).
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
}

/// `csa doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `csa completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `csa man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page (csa.1, csa-run.1, csa-session.1, csa-session-reconcile.1, …) to this
    /// directory (created if missing) and print their paths, instead of csa.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Output format (with --dir: the written pages as JSON).
    #[arg(long, value_enum, default_value_t, requires = "dir")]
    pub format: Format,
}

/// `csa session …`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Finalize Active sessions whose agent died without writing a result.
    Reconcile(ReconcileArgs),
    /// List sessions, newest first (read-only).
    List(ListArgs),
    /// Print a session's result (read-only).
    Result(ResultArgs),
    /// Exit 0 if a session's agent is alive, 1 if dead; print the deciding signal (read-only).
    IsAlive(IsAliveArgs),
    /// Wait until a session's current turn has a result; exit 0 for success, 1 otherwise.
    Wait(WaitArgs),
    /// Print a session's output log, optionally following it until the session ends.
    Logs(LogsArgs),
    /// Stop a session's agent: SIGTERM to its process group, SIGKILL after the grace period.
    Kill(KillArgs),
    /// Attach this terminal to an interactive session (detach: Ctrl-\ then d).
    Attach(AttachArgs),
    /// Run an ended session's command again as a new session, its child.
    Retry(RetryArgs),
    /// Start a new turn in a session that is available (or whose last turn crashed).
    Resume(ResumeArgs),
    /// Delete an ended session's directory.
    Delete(DeleteArgs),
    /// Delete ended sessions last used before a cutoff.
    Clean(CleanArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// JSON on stdout (docs/cli.md documents the shapes).
    Json,
}

/// Which projects a command looks at.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Project directory (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Every project under the state root(s).
    #[arg(long, conflicts_with = "cd")]
    pub all_projects: bool,
    /// The whole git repository of DIR (or the current directory): its top level and every
    /// directory below it (sessions run with `--cd sub` or from a subdirectory).
    #[arg(long, conflicts_with = "all_projects")]
    pub repo: bool,
}

/// `csa session reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Sessions to reconcile (ULID or unique prefix); default: every session of the scope.
    #[arg(value_name = "SESSION", add = session_completer())]
    pub sessions: Vec<String>,
    /// Projects to reconcile.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Scan every session, not only those the active record names, and repair the record.
    #[arg(long)]
    pub full: bool,
    /// Write nothing; list what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Like --dry-run, and exit 1 if any session would be finalized.
    #[arg(long)]
    pub check: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// Session statuses for `list --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum StatusFilter {
    /// Active, agent alive.
    Running,
    /// Active, agent dead (reconcile would finalize it).
    Orphaned,
    /// Active, owned from another machine or PID namespace.
    Foreign,
    /// Ended, resumable.
    Available,
    /// Ended for good.
    Retired,
    /// Ended, the tool ran out of quota.
    ToolExhausted,
}

/// `csa session list`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("status_filter").args(["status", "running"]))]
pub struct ListArgs {
    /// Projects to list.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Only sessions with this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Only running sessions (shorthand for --status running).
    #[arg(long, conflicts_with = "status")]
    pub running: bool,
    /// Only sessions `csa session resume` would accept.
    #[arg(long)]
    pub resumable: bool,
    /// Also the projects of directories below DIR (or the current directory).
    #[arg(long, conflicts_with_all = ["all_projects", "repo"])]
    pub nested: bool,
    /// Only sessions last used (last_accessed) within this long, e.g. 2h, 7d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Print whole session ids even when the table is fitted to a narrow terminal.
    #[arg(long)]
    pub long_ids: bool,
    /// For hooks, with --running or --status: exit 1 if any session is listed, naming each on
    /// stderr with the commands to wait for or stop it; print nothing and exit 0 otherwise.
    #[arg(long, requires = "status_filter")]
    pub check: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `csa session result`.
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// The session (ULID or unique prefix).
    #[arg(add = session_completer())]
    pub session: String,
    /// Project to look in first (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `csa session is-alive`.
#[derive(Debug, Args)]
pub struct IsAliveArgs {
    /// The session (ULID or unique prefix).
    #[arg(add = session_completer())]
    pub session: String,
    /// Project to look in first (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// Completes a SESSION argument to the session ids that start with what was typed.
fn session_completer() -> clap_complete::ArgValueCompleter {
    clap_complete::ArgValueCompleter::new(crate::complete::session_ids)
}

/// A duration written like `90s`, `30m`, `2h`, `7d` (humantime).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}: write a duration like 90s, 30m, 2h or 7d"))
}

/// `csa session wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The session (ULID or unique prefix).
    #[arg(add = session_completer())]
    pub session: String,
    /// Project to look in first (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Give up after this long (exit 124), e.g. 90s, 30m, 2h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// With `--format json`: a stream of one JSON object per line on stdout, a progress object
    /// when the wait starts and whenever the session's status changes, then the final object.
    #[arg(long, requires = "format")]
    pub progress: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `csa session logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The session (ULID or unique prefix).
    #[arg(add = session_completer())]
    pub session: String,
    /// Project to look in first (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Print only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Keep printing new output as it arrives, until the session ends.
    #[arg(long, short)]
    pub follow: bool,
    /// The agent's stderr (stderr.log) instead of its stdout (output.log).
    #[arg(long)]
    pub stderr: bool,
    /// Only what turn N wrote (1 is the first turn; `csa session resume` starts the next).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub turn: Option<u32>,
    /// For an interactive session, the output as the agent wrote it to its terminal, escape
    /// sequences and all (default: its text).
    #[arg(long)]
    pub raw: bool,
    /// Output format (json: one object per line of the log, docs/json.md).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub use csa_supervisor::WaitFor;

fn parse_wait_for(s: &str) -> Result<WaitFor, String> {
    if s == "forever" {
        Ok(WaitFor::Forever)
    } else {
        parse_duration(s).map(WaitFor::AtMost)
    }
}

/// `csa run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Tool name recorded for the session (default: the command's file name).
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
    /// Free-form description stored in state.toml.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Project directory to run in (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Return at once, printing the session id; a supervisor runs the agent.
    #[arg(long)]
    pub detach: bool,
    /// Do not claim the directory (for runs that do not touch the tree).
    #[arg(long)]
    pub allow_concurrent: bool,
    /// When the directory is busy, wait for it (forever, or at most DURATION) instead of exiting 75.
    #[arg(
        long,
        value_name = "DURATION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "forever",
        value_parser = parse_wait_for
    )]
    pub wait_for_dir: Option<WaitFor>,
    /// Parent session (default: $CSA_SESSION_ID when set).
    #[arg(long, value_name = "SESSION", add = session_completer())]
    pub parent: Option<String>,
    /// When the agent exits, leave the processes it started running (no longer the
    /// session's) instead of stopping them.
    #[arg(long)]
    pub leave_running: bool,
    /// When the agent exits, how long the processes it left running get after SIGTERM before
    /// SIGKILL.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub grace: std::time::Duration,
    /// A pseudo-terminal or pipes for the agent (`--tty`, `--no-tty`).
    #[command(flatten)]
    pub terminal: TerminalArgs,
    /// Output format (for --detach: the session id as JSON).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// The command and its arguments: everything from the first argument that is not one of
    /// csa's options on (`--` before it still works, and is needed for a command starting
    /// with `-`).
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// How a turn's agent is connected, for `run`, `resume` and `retry`: a pseudo-terminal or pipes.
#[derive(Debug, Clone, Args)]
pub struct TerminalArgs {
    /// Run the agent on a pseudo-terminal you can detach from (Ctrl-\ then d) and attach to
    /// again (`csa session attach`); the default when stdin and stdout are a terminal.
    #[arg(long, conflicts_with = "no_tty")]
    pub tty: bool,
    /// Connect the agent's output to pipes (recorded in the logs) even on a terminal.
    #[arg(long)]
    pub no_tty: bool,
    /// The pseudo-terminal's initial size, COLSxROWS (set by csa for the supervisor it starts).
    #[arg(long, value_name = "COLSxROWS", hide = true, value_parser = parse_size)]
    pub tty_size: Option<csa_terminal::WindowSize>,
}

/// `COLSxROWS` (`120x40`).
fn parse_size(s: &str) -> Result<csa_terminal::WindowSize, String> {
    let (cols, rows) = s
        .split_once('x')
        .ok_or_else(|| format!("{s}: write COLSxROWS, like 120x40"))?;
    let num = |v: &str| v.parse::<u16>().map_err(|e| format!("{s}: {e}"));
    Ok(csa_terminal::WindowSize {
        cols: num(cols)?,
        rows: num(rows)?,
    }
    .clamped())
}

/// `csa session retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The ended session (ULID or unique prefix).
    pub session: String,
    /// Project to look in first (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Return at once, printing the new session's id.
    #[arg(long)]
    pub detach: bool,
    /// A pseudo-terminal or pipes for the agent (`--tty`, `--no-tty`).
    #[command(flatten)]
    pub terminal: TerminalArgs,
    /// Output format (for --detach: the session id as JSON).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// A command to run instead of the session's last one, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `csa session attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The session (ULID or unique prefix).
    #[arg(add = session_completer())]
    pub session: String,
    /// Project to look in first (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Watch only: see the output, type nothing (any number of watchers).
    #[arg(long, conflicts_with = "steal")]
    pub read_only: bool,
    /// Take over from the writer attached now (it is detached).
    #[arg(long)]
    pub steal: bool,
    /// Output format of the line printed when the attach ends (the terminal itself is the
    /// agent's).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `csa session kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// The session (ULID or unique prefix).
    #[arg(add = session_completer())]
    pub session: String,
    /// Project to look in first (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// How long to wait after SIGTERM before SIGKILL.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub grace: std::time::Duration,
    /// Give up (exit 75) when another process holds the session's lock this long (default:
    /// the grace period plus 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_timeout: Option<std::time::Duration>,
    /// Also kill the child sessions it started that still run, and theirs (a `csa run` from
    /// inside a session is a session of its own, which a kill of its parent leaves running).
    #[arg(long)]
    pub children: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `csa session delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The session (ULID or unique prefix).
    #[arg(add = session_completer())]
    pub session: String,
    /// Project to look in first (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Also delete an Active session, once its owner is dead.
    #[arg(long)]
    pub force: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `csa session clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Projects to clean.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Delete ended sessions whose last_accessed is older than this (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: std::time::Duration,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `csa session resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The session (ULID or unique prefix).
    #[arg(add = session_completer())]
    pub session: String,
    /// Project to look in first (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cd: Option<PathBuf>,
    /// Return at once, printing the session id; a supervisor runs the turn.
    #[arg(long)]
    pub detach: bool,
    /// When the agent exits, leave the processes it started running (no longer the
    /// session's) instead of stopping them.
    #[arg(long)]
    pub leave_running: bool,
    /// When the agent exits, how long the processes it left running get after SIGTERM before
    /// SIGKILL.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub grace: std::time::Duration,
    /// Give up (exit 75) when another process holds the session's lock this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub lock_timeout: std::time::Duration,
    /// A pseudo-terminal or pipes for the agent (`--tty`, `--no-tty`).
    #[command(flatten)]
    pub terminal: TerminalArgs,
    /// Output format (for --detach: the session id as JSON).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// The new turn's command (default: the previous turn's): everything after SESSION and
    /// csa's options (`--` before it still works).
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `csa debug …` (hidden).
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// List every invariant violation in the state root(s); exit 1 if there is any.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}
