//! Is a session's owner alive? The session-level liveness decision, from the files in the
//! session directory and targeted probes of the PIDs they name (csa-process).
//!
//! A session is dead only when every signal says so; anything ambiguous counts as alive (fail
//! closed): declaring a live session dead destroys its result, while a dead session seen as
//! alive only waits for the next reconcile. The signals, strongest first:
//!
//! 1. **An owned live process.** The `daemon.pid` process or a `locks/*.lock` pid that is running
//!    (not exited, not a zombie) *and* is this session's: its start ticks equal the recorded
//!    ones; or, with no ticks recorded, its command line contains the session ULID or path, or
//!    its environment has `CSA_SESSION_ID=<ULID>`, or (locks only) the lock file was modified
//!    within [`LOCK_FRESH_SECS`]. A ticks mismatch means the PID was reused and never counts. A
//!    lock file whose flock is held by anyone counts whatever its body says. A body that does not
//!    parse names no process: it is not a signal, and becomes a warning.
//! 2. **A foreign owner.** A lock body written by csa names the owner's `machine_id`,
//!    `hostname` and `pid_ns`: another machine or PID namespace means the PID means nothing here,
//!    so the session is [`Verdict::Foreign`], never dead. The same machine with another
//!    `boot_id` means the owner died in a reboot: that lock is no signal.
//! 3. **A legacy `.complete` marker** (Active only) with a valid exit code: dead, finalized from
//!    the marker. It outranks progress but never a live owned process.
//! 4. **Progress** (Active only): `output.log`, `stderr.log` or `output/acp-events.jsonl` is
//!    non-empty and modified within [`PROGRESS_FRESH_SECS`]; or `.liveness.snapshot` (read, never
//!    written) was modified within that window and records sizes that differ from the current
//!    ones. Upstream's reconciler rewrites the snapshot so an old difference goes away; csa never
//!    writes it, so it bounds the snapshot signal by the snapshot's age instead, otherwise a
//!    process that died between two snapshot updates would read as alive forever.
//!
//! For a session that has ended, alive means signal 1 only.

use std::cell::OnceCell;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use csa_process::{HeldLocks, HostIdentity, Probe};
use serde::Deserialize;

/// A lock file modified this recently (seconds) vouches for a running PID without recorded
/// start ticks (upstream's rule for tools that do not record them).
pub const LOCK_FRESH_SECS: u64 = 60;
/// A progress file modified this recently (seconds) means the agent is still working.
pub const PROGRESS_FRESH_SECS: u64 = 30;
/// Largest daemon.pid, lock body, snapshot or `.complete` read (bytes); they are a few dozen.
const MAX_SMALL_FILE: u64 = 64 << 10;

/// The decision about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some signal says the owner is alive; the string says which.
    Alive(String),
    /// The owner runs on another machine or in another PID namespace: cannot be decided here.
    Foreign(String),
    /// Every signal says dead.
    Dead {
        /// Why: what was checked and found dead.
        reason: String,
        /// The exit code of a valid legacy `.complete` marker, when that decided it.
        complete_marker: Option<i64>,
    },
}

impl Verdict {
    /// Whether the session counts as alive (foreign owners count as alive: fail closed).
    pub fn is_alive(&self) -> bool {
        !matches!(self, Verdict::Dead { .. })
    }
}

/// A liveness decision plus the warnings met on the way (unparsable daemon.pid or lock bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The decision.
    pub verdict: Verdict,
    /// Problems worth telling the user, each naming its file.
    pub warnings: Vec<String>,
}

/// What liveness needs from the environment, read once per command: this host's identity, the
/// held locks (read lazily, only if some session has lock files) and the current time.
#[derive(Debug)]
pub struct LivenessContext {
    host: HostIdentity,
    held: OnceCell<Option<HeldLocks>>,
    now: SystemTime,
}

impl LivenessContext {
    /// A context for the current host and time.
    pub fn new() -> Self {
        LivenessContext {
            host: HostIdentity::current(),
            held: OnceCell::new(),
            now: SystemTime::now(),
        }
    }

    /// A context for the same host at the current time, with no cached lock table: for the
    /// re-check under a session's lock, which must not decide on data read before the lock.
    pub fn refreshed(&self) -> Self {
        LivenessContext {
            host: self.host.clone(),
            held: OnceCell::new(),
            now: SystemTime::now(),
        }
    }

    /// The time this context treats as now.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    fn held_locks(&self) -> Option<&HeldLocks> {
        self.held
            .get_or_init(|| match HeldLocks::read() {
                Ok(held) => Some(held),
                Err(err) => {
                    tracing::warn!(%err, "cannot read /proc/locks: every lock file counts as held");
                    None
                }
            })
            .as_ref()
    }

    fn age(&self, modified: SystemTime) -> Duration {
        // A modification time in the future counts as fresh (age zero).
        self.now.duration_since(modified).unwrap_or(Duration::ZERO)
    }
}

impl Default for LivenessContext {
    fn default() -> Self {
        Self::new()
    }
}

/// `daemon.pid`: `"<pid> <start ticks>\n"`, or legacy `"<pid>\n"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonPid {
    /// The supervising process.
    pub pid: u32,
    /// Its start ticks, when recorded.
    pub start_ticks: Option<u64>,
}

impl DaemonPid {
    /// Parses a daemon.pid body. `None` when it is not one or two unsigned integers.
    pub fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split_ascii_whitespace();
        let pid = fields.next()?.parse().ok()?;
        let start_ticks = match fields.next() {
            Some(t) => Some(t.parse().ok()?),
            None => None,
        };
        fields
            .next()
            .is_none()
            .then_some(DaemonPid { pid, start_ticks })
    }
}

/// The JSON body of `locks/<tool>.lock`. Only `pid` is required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LockBody {
    /// The process holding the lock.
    pub pid: u32,
    /// Its start ticks.
    pub pid_start_time_ticks: Option<u64>,
    /// The tool name.
    pub tool_name: Option<String>,
    /// `/proc/sys/kernel/random/boot_id` of the owner's boot (csa only).
    pub boot_id: Option<String>,
    /// `/etc/machine-id` of the owner's machine (csa only).
    pub machine_id: Option<String>,
    /// Host name of the owner's machine (csa only).
    pub hostname: Option<String>,
    /// Inode of the owner's `/proc/self/ns/pid` (csa only).
    pub pid_ns: Option<u64>,
}

enum Owner {
    /// A live process of this session.
    Alive(String),
    /// Not a live process of this session.
    No(String),
}

/// Decides whether the session in `session_dir` (id `session_id`) is alive. `active` says
/// whether its phase is Active (then progress and `.complete` count; otherwise only owned live
/// processes do).
///
/// Never fails: an unreadable file is treated as a signal of life (fail closed) and named in
/// the verdict.
pub fn assess(
    ctx: &LivenessContext,
    session_dir: &Path,
    session_id: &str,
    active: bool,
) -> Assessment {
    let mut warnings = Vec::new();
    let mut dead = Vec::new();
    let mut foreign = None;

    // 1. daemon.pid
    let daemon_path = session_dir.join("daemon.pid");
    match read_small(&daemon_path) {
        Ok(None) => {}
        Ok(Some(text)) => match DaemonPid::parse(&text) {
            Some(d) => match owned(ctx, session_dir, session_id, d.pid, d.start_ticks, None) {
                Owner::Alive(why) => return alive(format!("daemon.pid: {why}"), warnings),
                Owner::No(why) => dead.push(format!("daemon.pid: {why}")),
            },
            None => warnings.push(format!(
                "{}: does not parse as \"<pid> [<start ticks>]\"; it names no process",
                daemon_path.display()
            )),
        },
        Err(err) => return alive(format!("daemon.pid unreadable ({err})"), warnings),
    }

    // 2. locks/*.lock
    let locks_dir = session_dir.join("locks");
    let entries = match fs_err::read_dir(&locks_dir) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return alive(format!("locks/ unreadable ({err})"), warnings),
    };
    for entry in entries.into_iter().flatten() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => return alive(format!("locks/ unreadable ({err})"), warnings),
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".lock") {
            continue;
        }
        let path = entry.path();
        let label = format!("locks/{name}");
        let meta = match fs_err::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return alive(format!("{label} unreadable ({err})"), warnings),
        };
        if !meta.is_file() {
            warnings.push(format!(
                "{}: not a regular file; it names no process",
                path.display()
            ));
            continue;
        }
        match ctx.held_locks() {
            None => return alive(format!("{label}: cannot tell whether it is held"), warnings),
            Some(held) if held.is_held(csa_process::FileId::of(&meta)) => {
                return alive(format!("{label}: its flock is held"), warnings)
            }
            Some(_) => {}
        }
        let text = match read_small(&path) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(err) => return alive(format!("{label} unreadable ({err})"), warnings),
        };
        let Ok(body) = serde_json::from_str::<LockBody>(&text) else {
            warnings.push(format!(
                "{}: body is not a JSON object with a \"pid\"; it names no process",
                path.display()
            ));
            continue;
        };
        if let Some(why) = foreign_owner(&ctx.host, &body) {
            foreign = Some(format!("{label}: {why}"));
            continue;
        }
        if let (Some(ours), Some(theirs)) = (&ctx.host.boot_id, &body.boot_id) {
            if ours != theirs {
                dead.push(format!("{label}: owner's boot {theirs} has ended"));
                continue;
            }
        }
        let modified = meta.modified().ok();
        match owned(
            ctx,
            session_dir,
            session_id,
            body.pid,
            body.pid_start_time_ticks,
            modified,
        ) {
            Owner::Alive(why) => return alive(format!("{label}: {why}"), warnings),
            Owner::No(why) => dead.push(format!("{label}: {why}")),
        }
    }

    if let Some(why) = foreign {
        return Assessment {
            verdict: Verdict::Foreign(why),
            warnings,
        };
    }
    if !active {
        return dead_verdict(dead, None, warnings);
    }

    // 3. legacy .complete
    let complete_path = session_dir.join(".complete");
    match read_small(&complete_path) {
        Ok(None) => {}
        Ok(Some(text)) => match text.trim().parse::<i64>() {
            Ok(code) => {
                dead.push(format!(".complete records exit code {code}"));
                return dead_verdict(dead, Some(code), warnings);
            }
            Err(_) => warnings.push(format!(
                "{}: not an integer exit code; ignored",
                complete_path.display()
            )),
        },
        Err(err) => return alive(format!(".complete unreadable ({err})"), warnings),
    }

    // 4. progress
    if let Some(why) = progress(ctx, session_dir) {
        return alive(why, warnings);
    }
    if dead.is_empty() {
        dead.push("no daemon.pid or lock names a process".to_owned());
    }
    dead.push(format!("no progress for {PROGRESS_FRESH_SECS}s"));
    dead_verdict(dead, None, warnings)
}

fn alive(why: String, warnings: Vec<String>) -> Assessment {
    Assessment {
        verdict: Verdict::Alive(why),
        warnings,
    }
}

fn dead_verdict(
    reasons: Vec<String>,
    complete_marker: Option<i64>,
    warnings: Vec<String>,
) -> Assessment {
    let reason = if reasons.is_empty() {
        "no daemon.pid or lock names a live process".to_owned()
    } else {
        reasons.join("; ")
    };
    Assessment {
        verdict: Verdict::Dead {
            reason,
            complete_marker,
        },
        warnings,
    }
}

/// Whether `pid` is a live process of this session (see the module docs for the rules).
fn owned(
    ctx: &LivenessContext,
    session_dir: &Path,
    session_id: &str,
    pid: u32,
    recorded_ticks: Option<u64>,
    lock_modified: Option<SystemTime>,
) -> Owner {
    let start_ticks = match csa_process::probe(pid) {
        Probe::Invalid => return Owner::No(format!("pid {pid} names no process")),
        Probe::Exited { zombie: true } => return Owner::No(format!("pid {pid} is a zombie")),
        Probe::Exited { zombie: false } => return Owner::No(format!("pid {pid} is not running")),
        Probe::Running { start_ticks } => start_ticks,
    };
    if let Some(recorded) = recorded_ticks {
        return match start_ticks {
            Some(actual) if actual == recorded => {
                Owner::Alive(format!("pid {pid} running, start ticks {actual} match"))
            }
            Some(actual) => Owner::No(format!(
                "pid {pid} was reused (start ticks {actual}, recorded {recorded})"
            )),
            None => Owner::Alive(format!("pid {pid} running, start ticks unreadable")),
        };
    }
    let dir = session_dir.to_string_lossy();
    match csa_process::cmdline_contains(pid, &[session_id.as_bytes(), dir.as_bytes()]) {
        Some(true) => {
            return Owner::Alive(format!("pid {pid} running, command line names the session"))
        }
        Some(false) => {}
        None => return Owner::Alive(format!("pid {pid} running, command line unreadable")),
    }
    let entry = format!("CSA_SESSION_ID={session_id}");
    match csa_process::environ_contains(pid, entry.as_bytes()) {
        Some(true) => return Owner::Alive(format!("pid {pid} running with {entry}")),
        Some(false) => {}
        None => {
            if csa_process::probe(pid).is_running() {
                return Owner::Alive(format!("pid {pid} running, environment unreadable"));
            }
            return Owner::No(format!("pid {pid} is not running"));
        }
    }
    if let Some(modified) = lock_modified {
        let age = ctx.age(modified);
        if age <= Duration::from_secs(LOCK_FRESH_SECS) {
            return Owner::Alive(format!(
                "pid {pid} running, lock modified {}s ago",
                age.as_secs()
            ));
        }
    }
    Owner::No(format!(
        "pid {pid} is running but is not this session's (no start ticks recorded, no session id in its command line or environment)"
    ))
}

/// Why `body` names an owner on another machine or in another PID namespace, if it does.
fn foreign_owner(host: &HostIdentity, body: &LockBody) -> Option<String> {
    fn differs<T: PartialEq>(ours: &Option<T>, theirs: &Option<T>) -> bool {
        matches!((ours, theirs), (Some(a), Some(b)) if a != b)
    }
    if differs(&host.machine_id, &body.machine_id) {
        return Some(format!(
            "owner is on machine {}",
            body.machine_id.as_deref().unwrap_or_default()
        ));
    }
    // Host names decide only when machine ids cannot be compared (a host may be renamed).
    let machine_ids_compared = host.machine_id.is_some() && body.machine_id.is_some();
    if !machine_ids_compared && differs(&host.hostname, &body.hostname) {
        return Some(format!(
            "owner is on host {}",
            body.hostname.as_deref().unwrap_or_default()
        ));
    }
    if differs(&host.pid_ns, &body.pid_ns) {
        return Some(format!(
            "owner is in PID namespace {}",
            body.pid_ns.unwrap_or_default()
        ));
    }
    None
}

/// Signal 4: recent non-empty progress files, or a recent snapshot recording other sizes.
fn progress(ctx: &LivenessContext, session_dir: &Path) -> Option<String> {
    let fresh = Duration::from_secs(PROGRESS_FRESH_SECS);
    let mut sizes = [None; 3];
    for (i, name) in ["output.log", "stderr.log", "output/acp-events.jsonl"]
        .iter()
        .enumerate()
    {
        match fs_err::metadata(session_dir.join(name)) {
            Ok(meta) => {
                sizes[i] = Some(meta.len());
                // An unreadable mtime counts as fresh (fail closed).
                let age = meta.modified().map(|m| ctx.age(m)).unwrap_or_default();
                if meta.len() > 0 && age <= fresh {
                    return Some(format!("{name} written {}s ago", age.as_secs()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Some(format!("{name} unreadable ({err})")),
        }
    }
    let snapshot_path = session_dir.join(".liveness.snapshot");
    let age = match fs_err::metadata(&snapshot_path) {
        Ok(meta) => meta.modified().map(|m| ctx.age(m)).unwrap_or_default(),
        Err(_) => return None,
    };
    if age > fresh {
        return None;
    }
    let snapshot = Snapshot::parse(&read_small(&snapshot_path).ok()??);
    let [_, stderr_size, acp_size] = sizes;
    let changed = |recorded: Option<u64>, current: Option<u64>| matches!((recorded, current), (Some(a), Some(b)) if a != b);
    if changed(
        snapshot.spool_bytes_written,
        snapshot.observed_spool_bytes_written,
    ) || changed(snapshot.acp_events_size, acp_size)
        || changed(snapshot.stderr_log_size, stderr_size)
    {
        return Some(format!(
            ".liveness.snapshot ({}s old) records sizes that differ from the current ones",
            age.as_secs()
        ));
    }
    None
}

/// `.liveness.snapshot`: `key=value` lines (bytes). Unknown keys and bad lines are ignored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes the tool has written to its output spool.
    pub spool_bytes_written: Option<u64>,
    /// `spool_bytes_written` at the watchdog's last observation.
    pub observed_spool_bytes_written: Option<u64>,
    /// Size of `output/acp-events.jsonl` at the last observation.
    pub acp_events_size: Option<u64>,
    /// Size of `stderr.log` at the last observation.
    pub stderr_log_size: Option<u64>,
}

impl Snapshot {
    /// Parses a snapshot body.
    pub fn parse(text: &str) -> Self {
        let mut s = Snapshot::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().parse().ok();
            match key.trim() {
                "spool_bytes_written" => s.spool_bytes_written = value,
                "observed_spool_bytes_written" => s.observed_spool_bytes_written = value,
                "acp_events_size" => s.acp_events_size = value,
                "stderr_log_size" => s.stderr_log_size = value,
                _ => {}
            }
        }
        s
    }
}

/// Reads at most [`MAX_SMALL_FILE`] bytes of a small file as (lossy) UTF-8; `Ok(None)` when it
/// does not exist. The open does not wait for a FIFO's writer (`O_NONBLOCK`): a FIFO nobody
/// writes reads as empty. Regression: a FIFO daemon.pid hung every command (tests/cli/corpus.rs).
fn read_small(path: &Path) -> io::Result<Option<String>> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let mut buf = Vec::new();
    let opened = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path);
    match opened {
        Ok(file) => {
            file.take(MAX_SMALL_FILE).read_to_end(&mut buf)?;
            Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_pid_forms() {
        assert_eq!(
            DaemonPid::parse("42 7\n"),
            Some(DaemonPid {
                pid: 42,
                start_ticks: Some(7)
            })
        );
        assert_eq!(
            DaemonPid::parse("42\n"),
            Some(DaemonPid {
                pid: 42,
                start_ticks: None
            })
        );
        for bad in ["", "x", "42 x", "42 7 9", "-1"] {
            assert_eq!(DaemonPid::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn snapshot_parses_known_keys() {
        let s =
            Snapshot::parse("spool_bytes_written=19\nobserved_spool_bytes_written = 7\nbad\nx=1");
        assert_eq!(s.spool_bytes_written, Some(19));
        assert_eq!(s.observed_spool_bytes_written, Some(7));
        assert_eq!(s.acp_events_size, None);
    }

    fn session() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    const ID: &str = "01M7YCZAQ6TZ9E7YGFW7ZMM2X7";

    #[test]
    fn empty_session_is_dead() {
        let dir = session();
        let a = assess(&LivenessContext::new(), dir.path(), ID, true);
        assert!(
            matches!(
                a.verdict,
                Verdict::Dead {
                    complete_marker: None,
                    ..
                }
            ),
            "{a:?}"
        );
    }

    #[test]
    fn own_process_with_matching_ticks_is_alive_and_mismatch_is_reuse() {
        let dir = session();
        let pid = std::process::id();
        let ticks = csa_process::start_ticks(pid).expect("ticks");
        fs_err::write(dir.path().join("daemon.pid"), format!("{pid} {ticks}\n")).expect("write");
        let a = assess(&LivenessContext::new(), dir.path(), ID, true);
        assert!(matches!(a.verdict, Verdict::Alive(_)), "{a:?}");
        fs_err::write(
            dir.path().join("daemon.pid"),
            format!("{pid} {}\n", ticks + 1),
        )
        .expect("write");
        let a = assess(&LivenessContext::new(), dir.path(), ID, true);
        match a.verdict {
            Verdict::Dead { reason, .. } => assert!(reason.contains("reused"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_lock_body_warns_and_is_no_signal() {
        let dir = session();
        fs_err::create_dir(dir.path().join("locks")).expect("mkdir");
        fs_err::write(dir.path().join("locks/codex.lock"), "{not json").expect("write");
        let a = assess(&LivenessContext::new(), dir.path(), ID, false);
        assert!(matches!(a.verdict, Verdict::Dead { .. }), "{a:?}");
        assert_eq!(a.warnings.len(), 1);
        assert!(
            a.warnings[0].contains("locks/codex.lock"),
            "{:?}",
            a.warnings
        );
    }

    #[test]
    fn foreign_machine_is_never_dead() {
        let dir = session();
        fs_err::create_dir(dir.path().join("locks")).expect("mkdir");
        fs_err::write(
            dir.path().join("locks/x.lock"),
            r#"{"pid": 999999999, "machine_id": "00000000000000000000000000000000"}"#,
        )
        .expect("write");
        let a = assess(&LivenessContext::new(), dir.path(), ID, true);
        assert!(matches!(a.verdict, Verdict::Foreign(_)), "{a:?}");
    }

    #[test]
    fn other_host_is_foreign_when_machine_ids_cannot_be_compared() {
        let dir = session();
        fs_err::create_dir(dir.path().join("locks")).expect("mkdir");
        fs_err::write(
            dir.path().join("locks/x.lock"),
            r#"{"pid": 999999999, "hostname": "some-other-host.invalid"}"#,
        )
        .expect("write");
        let a = assess(&LivenessContext::new(), dir.path(), ID, true);
        assert!(matches!(a.verdict, Verdict::Foreign(_)), "{a:?}");
    }

    #[test]
    fn other_boot_on_this_machine_is_dead() {
        let dir = session();
        let host = HostIdentity::current();
        fs_err::create_dir(dir.path().join("locks")).expect("mkdir");
        let body = serde_json::json!({
            "pid": std::process::id(),
            "machine_id": host.machine_id,
            "pid_ns": host.pid_ns,
            "boot_id": "00000000-0000-0000-0000-000000000000",
        });
        fs_err::write(dir.path().join("locks/x.lock"), body.to_string()).expect("write");
        let a = assess(&LivenessContext::new(), dir.path(), ID, true);
        assert!(matches!(a.verdict, Verdict::Dead { .. }), "{a:?}");
    }

    #[test]
    fn complete_marker_outranks_progress() {
        let dir = session();
        fs_err::write(dir.path().join("output.log"), "fresh").expect("write");
        fs_err::write(dir.path().join(".complete"), "3\n").expect("write");
        let a = assess(&LivenessContext::new(), dir.path(), ID, true);
        assert!(
            matches!(
                a.verdict,
                Verdict::Dead {
                    complete_marker: Some(3),
                    ..
                }
            ),
            "{a:?}"
        );
    }

    #[test]
    fn fresh_output_is_progress_only_while_active() {
        let dir = session();
        fs_err::write(dir.path().join("output.log"), "fresh").expect("write");
        let ctx = LivenessContext::new();
        assert!(assess(&ctx, dir.path(), ID, true).verdict.is_alive());
        assert!(!assess(&ctx, dir.path(), ID, false).verdict.is_alive());
    }
}
