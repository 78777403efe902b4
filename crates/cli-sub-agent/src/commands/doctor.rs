//! `csa doctor`: checks what csa depends on and prints each problem with its fix; exit 1 if
//! there is any, 0 otherwise. Read-only: it writes nothing, takes no lock and signals nothing.
//!
//! What it checks (docs/cli.md, `csa doctor`):
//! - the build: version and commit ([`crate::version`]);
//! - each state root (`--state-dir`, or the primary `$XDG_STATE_HOME/cli-sub-agent` and the
//!   legacy `…/csa`): where it is, that it is a directory its owner can read, write and search,
//!   and the rules every command enforces (csa-session [`secure`]: the root, each project's
//!   directories and each session directory belong to the user running csa, are not writable by
//!   group or others, and are not symbolic links inside the root); a missing root is fine (the
//!   first `csa run` creates it);
//! - the process backend (csa-process `backend`): which one is in use and why (the environment
//!   variable `CSA_PROCESS_BACKEND`, or whether `/proc/self/stat` can be read), and that it can
//!   read this process; a `CSA_PROCESS_BACKEND` that could not be followed is a problem;
//! - `/proc`, on the procfs backend: the liveness probes read `/proc/<pid>/stat` and
//!   `/proc/locks`; without them every session counts as alive and reconcile finalizes
//!   nothing (on the portable backend it is only reported);
//! - the boot's identity, which tells sessions of a previous boot from live ones: the boot id
//!   (procfs backend) or the boot time (portable backend);
//! - each project's active-session record (csa-session [`csa_session::active`]): an Active
//!   session without an entry while the record's scan fingerprint is current (so a reconcile
//!   would trust the record and miss it), and entries older than an hour whose session
//!   directory is gone; each `state.toml` must parse;
//! - that csa can write where it must (`faccessat(W_OK)` with the effective ids, so a read-only
//!   filesystem shows as `EROFS` without writing anything): each state root, each project's
//!   `sessions/`, its `.csa-claim.lock` and each session's `.reconcile.lock`;
//! - the sessions moved to a project's quarantine (csa-session [`csa_session::quarantine`]):
//!   listed, not problems.
//!
//! Unlike the other commands, doctor does not stop at a directory csa refuses: it reports it and
//! goes on, so that one run lists every problem.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use csa_session::active::{ActiveRecord, Fingerprint, ACTIVE_DIR};
use csa_session::dirfd::StoreDir;
use csa_session::lock::RECONCILE_LOCK;
use csa_session::paths::{self, Project, StateRoots};
use csa_session::secure::{self, shell_quote};
use csa_session::state::SessionState;
use csa_session::StoreError;
use serde::Serialize;

use crate::cli::{DoctorArgs, Format, GlobalArgs};
use crate::exit::Exit;
use crate::version::{self, BuildInfo};
use crate::CommandResult;

/// A record entry without its session directory is a session being created (`csa run` adds the
/// entry first) until it is this old; reconcile removes it after that (the same age as
/// csa-session's `active::ORPHAN_ENTRY_AGE`).
const STALE_ENTRY_AGE: Duration = Duration::from_secs(3600);

/// Everything doctor found (`--format json` prints it; docs/json.md).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The build: version, commit, commit date, dirty flag.
    pub version: BuildInfo,
    /// Each state root, primary first.
    pub roots: Vec<RootReport>,
    /// The process backend in use, and why.
    pub process_backend: BackendReport,
    /// Whether the liveness probes can read `/proc`.
    pub proc: ProcReport,
    /// `/proc/sys/kernel/random/boot_id`, or `None` when unreadable (and always on the
    /// portable backend, which has none).
    pub boot_id: Option<String>,
    /// When this boot started, seconds since the Unix epoch, as the portable backend knows the
    /// boot; `None` on the procfs backend (it has the boot id) or when unknown.
    pub boot_time: Option<u64>,
    /// Every problem, each with its fix. Empty: all is well.
    pub problems: Vec<Problem>,
}

/// One state root.
#[derive(Debug, Serialize)]
pub struct RootReport {
    /// Its path.
    pub path: PathBuf,
    /// `primary` (or the `--state-dir` root) or `legacy`.
    pub kind: RootKind,
    /// Whether it exists.
    pub exists: bool,
    /// Its permission bits, `0700` (octal, as a string); `None` when it does not exist.
    pub mode: Option<String>,
    /// Projects found under it.
    pub projects: usize,
    /// Session directories found under it.
    pub sessions: usize,
    /// Of those, sessions whose phase is `active`.
    pub active_sessions: usize,
    /// Entries of the active-session records (`sessions/.csa-active/<ULID>`).
    pub record_entries: usize,
    /// Quarantined sessions (`sessions/.quarantine/<ULID>-<UTC time>/`), sorted.
    pub quarantined: Vec<PathBuf>,
}

/// Which root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// Where new sessions go (`--state-dir`, or `$XDG_STATE_HOME/cli-sub-agent`).
    Primary,
    /// The legacy `$XDG_STATE_HOME/csa`, read as well when present.
    Legacy,
}

/// The process backend in use (csa-process `backend`).
#[derive(Debug, Serialize)]
pub struct BackendReport {
    /// `procfs` or `portable`.
    pub name: &'static str,
    /// Why it was chosen: `CSA_PROCESS_BACKEND=portable`, `/proc/self/stat is readable`, …
    pub reason: String,
    /// A `CSA_PROCESS_BACKEND` value that could not be followed, and why; `None` when none.
    pub problem: Option<String>,
}

/// Whether `/proc` serves the liveness probes.
#[derive(Debug, Serialize)]
pub struct ProcReport {
    /// `/proc/self/stat` and `/proc/locks` could be read.
    pub available: bool,
    /// Why not, when not.
    pub error: Option<String>,
}

/// One problem and its fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Which check found it.
    pub check: Check,
    /// The file or directory concerned, if any.
    pub path: Option<PathBuf>,
    /// What is wrong.
    pub message: String,
    /// What to run or do to fix it.
    pub hint: String,
}

/// The checks, as named in JSON (`problems[].check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// No state root can be determined (no `--state-dir`, `XDG_STATE_HOME` or `HOME`).
    StateRoot,
    /// A directory csa refuses (owner, permissions, symbolic link, not a directory), or a root
    /// its owner cannot read, write or search.
    Permissions,
    /// A directory that cannot be listed or examined.
    Unreadable,
    /// A `state.toml` that cannot be read or does not parse.
    SessionState,
    /// `/proc` is not available to the liveness probes (procfs backend).
    Proc,
    /// The boot id (procfs backend) or the boot time (portable backend) cannot be read.
    BootId,
    /// `CSA_PROCESS_BACKEND` could not be followed, or the portable backend cannot read this
    /// process.
    ProcessBackend,
    /// An Active session the active-session record lacks, while the record is trusted.
    MissingRecordEntry,
    /// A record entry whose session directory is gone (older than an hour).
    StaleRecordEntry,
    /// A state root, `sessions/` or lock file csa cannot write (a read-only filesystem, or
    /// permissions).
    Writable,
}

/// Runs the checks and prints the report (text, or JSON with `--format json`).
///
/// # Errors
/// Exit 3 when stdout cannot be written, or when the state directory given explicitly
/// (`--state-dir`, `CSA_STATE_DIR`) does not exist (reported as a `state_root` problem first,
/// like every other command refuses it); other problems found are not errors (exit 1).
pub fn run(global: &GlobalArgs, args: &DoctorArgs) -> CommandResult {
    let mut report = diagnose(global.state_dir.as_deref());
    let missing = super::missing_state_dir(global);
    if let Some((message, hint)) = &missing {
        report.problems.insert(
            0,
            Problem {
                check: Check::StateRoot,
                path: global.state_dir.clone(),
                message: message.clone(),
                hint: hint.clone(),
            },
        );
    }
    let mut out = io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::from)?;
            writeln!(out)?;
        }
        Format::Text => print_text(&mut out, &report, global.state_dir.is_some())?,
    }
    Ok(if missing.is_some() {
        Exit::Partial
    } else if report.problems.is_empty() {
        Exit::Success
    } else {
        Exit::Negative
    })
}

/// Runs every check for the roots `state_dir` (the global `--state-dir`) selects.
pub fn diagnose(state_dir: Option<&Path>) -> Report {
    let mut doctor = Doctor {
        problems: Vec::new(),
        csa: match state_dir {
            Some(dir) => format!("csa --state-dir {}", shell_quote(&dir.to_string_lossy())),
            None => "csa".to_owned(),
        },
        now: SystemTime::now(),
    };
    let roots = match StateRoots::resolve(state_dir) {
        Ok(roots) => roots
            .iter()
            .enumerate()
            .map(|(i, root)| {
                let kind = if i == 0 {
                    RootKind::Primary
                } else {
                    RootKind::Legacy
                };
                doctor.root(root, kind)
            })
            .collect(),
        Err(err) => {
            doctor.problem(
                Check::StateRoot,
                None,
                err.to_string(),
                "set HOME (or XDG_STATE_HOME to an absolute path), or pass --state-dir DIR",
            );
            Vec::new()
        }
    };
    let selection = csa_process::backend::selection();
    let process_backend = doctor.backend(selection);
    let portable = selection.backend == csa_process::Backend::Portable;
    let proc = doctor.proc(!portable);
    let (boot_id, boot_time) = if portable {
        (None, doctor.boot_time())
    } else {
        (doctor.boot_id(), None)
    };
    Report {
        version: BuildInfo::current(),
        roots,
        process_backend,
        proc,
        boot_id,
        boot_time,
        problems: doctor.problems,
    }
}

/// The checks' state: the problems found so far.
struct Doctor {
    problems: Vec<Problem>,
    /// How hints spell csa (`csa --state-dir DIR` when one was given).
    csa: String,
    now: SystemTime,
}

impl Doctor {
    /// Records a problem, once (directories shared by several projects are checked again for
    /// each of them).
    fn problem(
        &mut self,
        check: Check,
        path: Option<&Path>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let problem = Problem {
            check,
            path: path.map(Path::to_owned),
            message: message.into(),
            hint: hint.into(),
        };
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// Records a store error found at `path`: a refused directory with its own fix, or an error
    /// reading it.
    fn store_error(&mut self, path: &Path, err: &StoreError) {
        match err {
            StoreError::Insecure(insecure) => self.problem(
                Check::Permissions,
                Some(&insecure.path),
                insecure.to_string(),
                insecure.hint(),
            ),
            other => {
                let hint = format!(
                    "check who owns it and its mode: ls -ld {}",
                    shell_quote(&path.to_string_lossy())
                );
                self.problem(Check::Unreadable, Some(path), other.to_string(), hint);
            }
        }
    }

    /// Checks one state root and everything under it.
    fn root(&mut self, root: &Path, kind: RootKind) -> RootReport {
        let mut report = RootReport {
            path: root.to_owned(),
            kind,
            exists: false,
            mode: None,
            projects: 0,
            sessions: 0,
            active_sessions: 0,
            record_entries: 0,
            quarantined: Vec::new(),
        };
        match secure::check_root(root) {
            Ok(false) => return report,
            Ok(true) => {}
            Err(err) => self.store_error(root, &err),
        }
        let mut root_unwritable = false;
        match fs_err::metadata(root) {
            Ok(meta) => {
                report.exists = true;
                let mode = meta.mode() & 0o7777;
                report.mode = Some(format!("{mode:04o}"));
                if meta.is_dir() && mode & 0o700 != 0o700 {
                    root_unwritable = true;
                    self.problem(
                        Check::Permissions,
                        Some(root),
                        format!(
                            "{}: its owner cannot read, write and search it (mode {mode:04o}): csa cannot create or update sessions there",
                            root.display()
                        ),
                        format!("chmod 700 {}", shell_quote(&root.to_string_lossy())),
                    );
                }
                if !meta.is_dir() {
                    return report;
                }
            }
            Err(err) => {
                self.store_error(root, &err.into());
                return report;
            }
        }
        // A root csa cannot write makes every command that changes something fail: one problem
        // for it, and no more for each file below (they are on the same filesystem).
        // Regression: doctor said "no problems" on a read-only state root on which run, delete
        // and clean all exited 3.
        let check_writes = !root_unwritable && self.writable(root, WriteUse::Root);
        let projects = match paths::all_projects(root) {
            Ok(projects) => projects,
            Err(err) => {
                self.store_error(root, &err);
                return report;
            }
        };
        report.projects = projects.len();
        for project in &projects {
            self.project(project, &mut report, check_writes);
        }
        report
    }

    /// Checks that csa can write `path` (`faccessat(W_OK, AT_EACCESS)`: nothing is written) and
    /// records a problem, with its fix, when it cannot. Returns whether it can.
    fn writable(&mut self, path: &Path, used: WriteUse) -> bool {
        use nix::errno::Errno;
        use nix::fcntl::{AtFlags, AT_FDCWD};
        use nix::unistd::{faccessat, AccessFlags};
        let errno = match faccessat(AT_FDCWD, path, AccessFlags::W_OK, AtFlags::AT_EACCESS) {
            Ok(()) => return true,
            // Gone meanwhile: nothing to write to.
            Err(Errno::ENOENT) => return true,
            Err(errno) => errno,
        };
        let quoted = shell_quote(&path.to_string_lossy()).into_owned();
        let what = used.what();
        let (message, hint) = match errno {
            Errno::EROFS => (
                format!(
                    "{}: {what} is on a read-only filesystem: csa run, delete, clean and reconcile cannot write there",
                    path.display()
                ),
                format!(
                    "remount its filesystem read-write (`findmnt -T {quoted}` shows which), or pass --state-dir DIR on a writable filesystem"
                ),
            ),
            errno => (
                format!(
                    "{}: csa cannot write {what} ({}): csa run, delete, clean and reconcile fail there",
                    path.display(),
                    std::io::Error::from(errno)
                ),
                format!("make it writable by its owner: chmod u+w {quoted} (and check its owner: ls -ld {quoted})"),
            ),
        };
        self.problem(Check::Writable, Some(path), message, hint);
        false
    }

    /// Checks one project: its directories, its sessions' directories and states, and its
    /// active-session record.
    fn project(&mut self, project: &Project, report: &mut RootReport, check_writes: bool) {
        let record_dir = project.sessions_dir.join(ACTIVE_DIR);
        let mut record_refused = false;
        let mut reported = false;
        if let Err(err) = secure::check_project(project) {
            // A refused `.csa-active` is that one problem: it is not read as well.
            record_refused = matches!(&err, StoreError::Insecure(i) if i.path == record_dir);
            self.store_error(&project.sessions_dir, &err);
            reported = true;
        }
        // Everything below is read through the descriptor of `sessions/`, never by path: opened
        // without following a link but not verified, so that a refused `sessions/` (reported
        // above) still has its sessions examined.
        let opened = StoreDir::open_root(&project.root).and_then(|root| {
            let rel = Path::new(&project.key).join(paths::SESSIONS_DIR);
            match root {
                Some(root) => Ok(root.open_dir_path(&rel)?),
                None => Ok(None),
            }
        });
        let sessions = match opened {
            Ok(Some(sessions)) => sessions,
            Ok(None) => return,
            Err(err) => {
                if !reported {
                    self.store_error(&project.sessions_dir, &err);
                }
                return;
            }
        };
        let record = ActiveRecord::new(&sessions);
        let entries: BTreeSet<String> = match record.ids() {
            _ if record_refused => BTreeSet::new(),
            Ok(ids) => ids.into_iter().collect(),
            Err(err) => {
                self.store_error(&record_dir, &err.into());
                BTreeSet::new()
            }
        };
        report.record_entries += entries.len();
        // Whether a reconcile without --full would trust the record (and not rescan).
        let trusted = !record_refused
            && Fingerprint::of(&sessions)
                .ok()
                .is_some_and(|fp| record.is_current(&fp));
        match csa_session::quarantine::list(project) {
            Ok(found) => report.quarantined.extend(found),
            // The refused directory on the way was reported above.
            Err(err) if reported && err.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(err) => self.store_error(
                &project
                    .sessions_dir
                    .join(csa_session::quarantine::QUARANTINE_DIR),
                &err.into(),
            ),
        }
        let check_writes = check_writes
            && self.writable(&project.sessions_dir, WriteUse::Sessions)
            && self.writable(
                &project.sessions_dir.join(csa_session::claim::CLAIM_FILE),
                WriteUse::LockFile,
            );
        let listing = match sessions.entries() {
            Ok(listing) => listing,
            Err(err) => {
                self.store_error(&project.sessions_dir, &err.into());
                return;
            }
        };
        let mut present = BTreeSet::new();
        for entry in listing {
            let Some(id) = entry.name_str().map(str::to_owned) else {
                continue;
            };
            if !paths::is_ulid(&id) {
                continue;
            }
            let dir = sessions.join(&id);
            present.insert(id.clone());
            let opened = match sessions.open_private_dir_if_exists(&id) {
                Ok(Some(opened)) => opened,
                Ok(None) => continue,
                Err(err) => {
                    self.store_error(&dir, &err);
                    continue;
                }
            };
            report.sessions += 1;
            if check_writes {
                self.writable(&dir.join(RECONCILE_LOCK), WriteUse::LockFile);
            }
            let state = match SessionState::load(&opened) {
                Ok(state) => state,
                Err(err) => {
                    self.problem(
                        Check::SessionState,
                        Some(&dir),
                        err.to_string(),
                        "csa never rewrites a file it cannot parse: repair or remove it by hand (or delete the session directory)",
                    );
                    continue;
                }
            };
            if state.view.phase.is_ended() {
                continue;
            }
            report.active_sessions += 1;
            if trusted && !entries.contains(&id) {
                self.problem(
                    Check::MissingRecordEntry,
                    Some(&dir),
                    format!(
                        "session {id} is active but missing from the active-session record, which reconcile trusts: `csa session reconcile` would not look at it"
                    ),
                    format!("{} session reconcile --full --all-projects", self.csa),
                );
            }
        }
        for id in entries.difference(&present) {
            let entry = record_dir.join(id);
            let old = sessions
                .metadata(Path::new(ACTIVE_DIR).join(id))
                .map(|m| m.modified)
                .is_ok_and(|m| {
                    self.now
                        .duration_since(m)
                        .is_ok_and(|age| age > STALE_ENTRY_AGE)
                });
            if old {
                self.problem(
                    Check::StaleRecordEntry,
                    Some(&entry),
                    format!(
                        "the active-session record names session {id}, whose directory is gone"
                    ),
                    format!("{} session reconcile --all-projects", self.csa),
                );
            }
        }
    }

    /// Reports the process backend, and checks that the request for it was followed and that
    /// the portable backend can read this process.
    fn backend(&mut self, selection: &csa_process::Selection) -> BackendReport {
        let env = csa_process::backend::ENV;
        if let Some(problem) = &selection.problem {
            self.problem(
                Check::ProcessBackend,
                None,
                format!(
                    "{problem}: csa uses the {} backend",
                    selection.backend.name()
                ),
                format!("set {env} to procfs (Linux, with /proc mounted) or portable, or unset it"),
            );
        }
        if selection.backend == csa_process::Backend::Portable {
            if let Err(err) = portable_probe() {
                self.problem(
                    Check::ProcessBackend,
                    None,
                    format!(
                        "the portable process backend cannot read this process ({err}): every session counts as alive, so reconcile finalizes none"
                    ),
                    format!("run csa on Linux or macOS, or set {env}=procfs on Linux"),
                );
            }
        }
        BackendReport {
            name: selection.backend.name(),
            reason: selection.reason.clone(),
            problem: selection.problem.clone(),
        }
    }

    /// Checks that the liveness probes can read `/proc` (this process's stat, and the lock
    /// table); a problem only when the procfs backend is in use (`needed`).
    fn proc(&mut self, needed: bool) -> ProcReport {
        let probe = proc_probe();
        if let (true, Err(err)) = (needed, &probe) {
            self.problem(
                Check::Proc,
                Some(Path::new("/proc")),
                format!(
                    "the liveness probes cannot read /proc ({err}): every session counts as alive, so reconcile finalizes none"
                ),
                "run csa where /proc is mounted (mount -t proc proc /proc), on Linux",
            );
        }
        ProcReport {
            available: probe.is_ok(),
            error: probe.err().map(|e| e.to_string()),
        }
    }

    /// Reads the boot id.
    fn boot_id(&mut self) -> Option<String> {
        match read_boot_id() {
            Ok(id) if !id.is_empty() => Some(id),
            outcome => {
                let why = match outcome {
                    Err(err) => err.to_string(),
                    Ok(_) => "it is empty".to_owned(),
                };
                self.problem(
                    Check::BootId,
                    Some(Path::new(BOOT_ID)),
                    format!(
                        "cannot read the boot id ({why}): a session from before a reboot is not recognized as dead by its boot"
                    ),
                    format!("make {BOOT_ID} readable (mount /proc)"),
                );
                None
            }
        }
    }
}

/// What csa writes a path for, in [`Doctor::writable`]'s messages.
#[derive(Debug, Clone, Copy)]
enum WriteUse {
    Root,
    Sessions,
    LockFile,
}

impl WriteUse {
    fn what(self) -> &'static str {
        match self {
            WriteUse::Root => "the state root",
            WriteUse::Sessions => "a project's sessions directory",
            WriteUse::LockFile => "a lock file (opened for writing to take the lock)",
        }
    }
}

impl Doctor {
    /// Reads the boot time (portable backend).
    fn boot_time(&mut self) -> Option<u64> {
        let time = csa_process::HostIdentity::current().boot_time;
        if time.is_none() {
            self.problem(
                Check::BootId,
                None,
                "cannot read the boot time: a session from before a reboot is not recognized as dead by its boot",
                "run csa where sysinfo can read the boot time (Linux, macOS)",
            );
        }
        time
    }
}

/// Reads this process and the process list through the portable backend. With the
/// `failpoints` feature, the fail point `doctor::portable` (any `return`) stands for a
/// platform where it cannot.
fn portable_probe() -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("doctor::portable", |_| Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "sysinfo lists no process on this platform (injected)"
    )));
    csa_process::backend::stat(std::process::id())?;
    csa_process::backend::table()?;
    Ok(())
}

/// Where the kernel publishes the boot id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Reads this process's `/proc` stat and the lock table, as the liveness probes do. With the
/// `failpoints` feature, the fail point `doctor::proc` (any `return`) stands for a missing
/// `/proc`, so that tests can arrange it.
fn proc_probe() -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("doctor::proc", |_| Err(io::Error::new(
        io::ErrorKind::NotFound,
        "/proc/self/stat: No such file or directory (injected)"
    )));
    csa_process::platform::stat(std::process::id())?;
    csa_process::HeldLocks::read()?;
    Ok(())
}

/// Reads the boot id. With the `failpoints` feature, the fail point `doctor::boot_id` (any
/// `return`) stands for an unreadable one.
fn read_boot_id() -> io::Result<String> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("doctor::boot_id", |_| Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{BOOT_ID}: No such file or directory (injected)")
    )));
    csa_process::platform::boot_id()
}

/// Prints the report as aligned `name  value` lines, then each problem (`problem:` and
/// `hint:` lines), then a summary line.
fn print_text(out: &mut impl Write, report: &Report, state_dir_given: bool) -> io::Result<()> {
    writeln!(out, "{:<15}csa {}", "version", version::VERSION_LINE)?;
    for root in &report.roots {
        let name = match root.kind {
            RootKind::Primary => "state root",
            RootKind::Legacy => "legacy root",
        };
        if !root.exists {
            let note = match root.kind {
                RootKind::Primary if state_dir_given => "does not exist",
                RootKind::Primary => "does not exist yet (the first `csa run` creates it)",
                RootKind::Legacy => "absent",
            };
            writeln!(out, "{name:<15}{}: {note}", root.path.display())?;
            continue;
        }
        writeln!(
            out,
            "{name:<15}{} (mode {}): {}, {}, {} active, {}",
            root.path.display(),
            root.mode.as_deref().unwrap_or("?"),
            plural(root.projects, "project"),
            plural(root.sessions, "session"),
            root.active_sessions,
            plural(root.record_entries, "record entry"),
        )?;
        for path in &root.quarantined {
            writeln!(
                out,
                "{:<15}{} (a session whose state.toml did not parse; inspect it, then remove it by hand)",
                "quarantined",
                path.display()
            )?;
        }
    }
    if state_dir_given {
        writeln!(out, "{:<15}not read (--state-dir)", "legacy root")?;
    }
    let backend = &report.process_backend;
    writeln!(
        out,
        "{:<15}{} ({})",
        "backend", backend.name, backend.reason
    )?;
    let portable = backend.name == csa_process::Backend::Portable.name();
    match (&report.proc.error, portable) {
        (None, false) => writeln!(out, "{:<15}available", "/proc")?,
        (None, true) => writeln!(out, "{:<15}available, not used", "/proc")?,
        (Some(err), false) => writeln!(out, "{:<15}unavailable: {err}", "/proc")?,
        (Some(_), true) => writeln!(out, "{:<15}not used", "/proc")?,
    }
    if portable {
        let time = report.boot_time.map(|t| format!("{t} (Unix time)"));
        writeln!(
            out,
            "{:<15}{}",
            "boot time",
            time.as_deref().unwrap_or("unknown")
        )?;
    } else {
        writeln!(
            out,
            "{:<15}{}",
            "boot id",
            report.boot_id.as_deref().unwrap_or("unknown")
        )?;
    }
    for problem in &report.problems {
        writeln!(out)?;
        writeln!(out, "problem: {}", problem.message)?;
        writeln!(out, "hint: {}", problem.hint)?;
    }
    if report.problems.is_empty() {
        writeln!(out, "doctor: no problems")
    } else {
        writeln!(out)?;
        writeln!(out, "doctor: {}", plural(report.problems.len(), "problem"))
    }
}

/// `1 project`, `2 projects`; `1 record entry`, `2 record entries`.
fn plural(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("{n} {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "project"), "1 project");
        assert_eq!(plural(0, "session"), "0 sessions");
        assert_eq!(plural(2, "record entry"), "2 record entries");
    }
}
