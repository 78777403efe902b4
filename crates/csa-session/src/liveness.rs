//! Is a session alive? This module gathers the evidence from the files in the session directory
//! (daemon.pid, `locks/*.lock`, csa's `membership.toml`, the legacy `.complete` marker, the
//! progress files) and probes what they name with csa-process, whose
//! [`decide`](csa_process::decide) returns the verdict: the rules, and why unknown counts as
//! alive, are documented there (csa-process `verdict`).
//!
//! What the files contribute:
//! - `daemon.pid` (`<pid> [<start ticks>]`, upstream's format: the portable backend, which has
//!   no ticks, writes the pid alone) names the supervisor;
//! - each `locks/<tool>.lock` is held (flock) by a live owner, and its JSON body names an owner
//!   (the supervisor, then csa's agent) with its start time under its unit's key
//!   (`pid_start_time_ticks`, `pid_start_time_us`, `pid_start_time_boot_s`), and the host
//!   identity csa records (machine, host name, PID namespace, boot id or boot time): a body
//!   from another machine or PID namespace makes the session foreign, one from another boot of
//!   this machine names nothing (csa-process `HostIdentity::other_boot`: a boot id is compared
//!   only with a boot id, a boot time only with a boot time);
//! - `membership.toml` (csa's own, [`crate::membership`]) names the session's cgroup or process
//!   session, enumerated only when no cheaper signal said alive, and only in the boot that
//!   wrote it; a session with such a record is csa's, so its agent is identified by its start
//!   time *and* the marker `CSA_SESSION_ID=<ULID>`;
//! - for an Active session, `.complete` and the progress files (`output.log`, `stderr.log`,
//!   `output/acp-events.jsonl`, and `.liveness.snapshot`, read, never written: upstream's
//!   reconciler rewrites it so an old difference goes away; csa never writes it, so it bounds
//!   the snapshot signal by the snapshot's age instead, otherwise a process that died between
//!   two snapshot updates would read as alive forever).
//!
//! For a session that has ended, only live processes count (its recorded owners, held locks and
//! members).

use std::cell::OnceCell;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::dirfd::StoreDir;

use csa_process::verdict::{Claim, LockEvidence, MembershipEvidence};
use csa_process::{HostIdentity, Identify, LockTable, StartTime};
use serde::Deserialize;

pub use csa_process::Verdict;

use crate::membership::MembershipRecord;

/// A lock file modified this recently (seconds) vouches for a running PID without recorded
/// start ticks (upstream's rule for tools that do not record them).
pub const LOCK_FRESH_SECS: u64 = csa_process::verdict::LOCK_FRESH.as_secs();
/// A progress file modified this recently (seconds) means the agent is still working.
pub const PROGRESS_FRESH_SECS: u64 = csa_process::verdict::PROGRESS_FRESH.as_secs();
/// Largest daemon.pid, lock body, snapshot or `.complete` read (bytes); they are a few dozen.
const MAX_SMALL_FILE: u64 = 64 << 10;
/// The `reason` csa writes in a lock body that names the agent of a turn it supervises.
pub const AGENT_LOCK_REASON: &str = "csa run agent";

/// A liveness decision plus the warnings met on the way (unparsable daemon.pid or lock bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The decision.
    pub verdict: Verdict,
    /// Problems worth telling the user, each naming its file.
    pub warnings: Vec<String>,
}

/// What liveness needs from the environment, read once per command: this host's identity, the
/// lock table (read lazily, only if some session has lock files) and the current time.
#[derive(Debug)]
pub struct LivenessContext {
    host: HostIdentity,
    locks: OnceCell<LockTable>,
    now: SystemTime,
}

impl LivenessContext {
    /// A context for the current host and time.
    pub fn new() -> Self {
        LivenessContext {
            host: HostIdentity::current(),
            locks: OnceCell::new(),
            now: SystemTime::now(),
        }
    }

    /// A context for the same host at the current time, with no cached lock table: for the
    /// re-check under a session's lock, which must not decide on data read before the lock.
    pub fn refreshed(&self) -> Self {
        LivenessContext {
            host: self.host.clone(),
            locks: OnceCell::new(),
            now: SystemTime::now(),
        }
    }

    /// The time this context treats as now.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// This host's identity.
    pub fn host(&self) -> &HostIdentity {
        &self.host
    }

    fn locks(&self) -> &LockTable {
        self.locks.get_or_init(LockTable::read)
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
    /// Its start ticks (upstream; csa on the procfs backend).
    pub pid_start_time_ticks: Option<u64>,
    /// Its start in microseconds since the Unix epoch (csa, portable backend on macOS).
    pub pid_start_time_us: Option<u64>,
    /// Its start in whole seconds since boot (csa, portable backend elsewhere).
    pub pid_start_time_boot_s: Option<u64>,
    /// The tool name.
    pub tool_name: Option<String>,
    /// Why it was taken (csa: `csa run supervisor`, then [`AGENT_LOCK_REASON`]).
    pub reason: Option<String>,
    /// `/proc/sys/kernel/random/boot_id` of the owner's boot (csa only, procfs backend).
    pub boot_id: Option<String>,
    /// Start of the owner's boot, seconds since the Unix epoch (csa only, portable backend).
    pub boot_time: Option<u64>,
    /// `/etc/machine-id` of the owner's machine (csa only).
    pub machine_id: Option<String>,
    /// Host name of the owner's machine (csa only).
    pub hostname: Option<String>,
    /// Inode of the owner's `/proc/self/ns/pid` (csa only).
    pub pid_ns: Option<u64>,
}

impl LockBody {
    /// The recorded start time, whichever its unit (ticks first: upstream's key).
    pub fn start(&self) -> Option<StartTime> {
        StartTime::from_recorded(
            self.pid_start_time_ticks,
            self.pid_start_time_us,
            self.pid_start_time_boot_s,
        )
    }
}

/// Decides whether the session in `session_dir` (id `session_id`) is alive. `active` says
/// whether its phase is Active (then progress and `.complete` count; otherwise only live
/// processes do).
///
/// Never fails: an unreadable file is treated as a signal of life (fail closed) and named in
/// the verdict.
pub fn assess(
    ctx: &LivenessContext,
    session_dir: &StoreDir,
    session_id: &str,
    active: bool,
) -> Assessment {
    let (evidence, warnings) = gather(ctx, session_dir, session_id, active);
    Assessment {
        verdict: csa_process::decide(&evidence),
        warnings,
    }
}

/// Reads the session's files and probes what they name (see the module docs), skipping the
/// membership enumeration when an owner already reads alive.
pub fn gather(
    ctx: &LivenessContext,
    session_dir: &StoreDir,
    session_id: &str,
    active: bool,
) -> (csa_process::Evidence, Vec<String>) {
    let mut e = csa_process::Evidence::new(active);
    let mut warnings = Vec::new();
    let dir_text = session_dir.path().to_string_lossy();
    let names: [&[u8]; 2] = [session_id.as_bytes(), dir_text.as_bytes()];

    let record = match MembershipRecord::load(session_dir) {
        Ok(record) => record,
        Err(err) if err.kind() == io::ErrorKind::InvalidData => {
            warnings.push(err.to_string());
            None
        }
        Err(err) => {
            e.unreadable
                .push(format!("membership.toml unreadable ({err})"));
            None
        }
    };
    // A record of another boot names nothing: every process of that boot is gone.
    let record = record.filter(|r| {
        ctx.host
            .other_boot(r.boot_id.as_deref(), r.boot_time)
            .is_none()
    });
    let csa_session = record.is_some();

    // daemon.pid
    let daemon_path = session_dir.join("daemon.pid");
    match read_small(session_dir, "daemon.pid") {
        Ok(None) => {}
        Ok(Some((text, _))) => match DaemonPid::parse(&text) {
            Some(d) => e.claims.push(claim(
                "daemon.pid",
                session_id,
                &names,
                d.pid,
                d.start_ticks.map(StartTime::Ticks),
                false,
                None,
            )),
            None => warnings.push(format!(
                "{}: does not parse as \"<pid> [<start ticks>]\"; it names no process",
                daemon_path.display()
            )),
        },
        Err(err) if err.kind() == io::ErrorKind::InvalidData => warnings.push(format!(
            "{}: {err}; it names no process",
            daemon_path.display()
        )),
        Err(err) => e.unreadable.push(format!("daemon.pid unreadable ({err})")),
    }

    // locks/*.lock
    gather_locks(
        ctx,
        session_dir,
        session_id,
        &names,
        csa_session,
        &mut e,
        &mut warnings,
    );

    // membership.toml
    e.membership = match &record {
        None => MembershipEvidence::NotRecorded,
        Some(_) if e.owner_alive() => MembershipEvidence::NotConsulted,
        Some(record) => match record.membership() {
            None => MembershipEvidence::Unknown("the record names no cgroup".into()),
            Some(membership) => match membership.members(session_id, &[], &record.released()) {
                Ok(live) => MembershipEvidence::Enumerated {
                    mechanism: membership.describe(),
                    live,
                },
                Err(err) => MembershipEvidence::Unknown(err.to_string()),
            },
        },
    };

    if active {
        // legacy .complete
        let complete_path = session_dir.join(".complete");
        match read_small(session_dir, ".complete") {
            Ok(None) => {}
            Ok(Some((text, _))) => match text.trim().parse::<i64>() {
                Ok(code) => e.complete_marker = Some(code),
                Err(_) => warnings.push(format!(
                    "{}: not an integer exit code; ignored",
                    complete_path.display()
                )),
            },
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                warnings.push(format!("{}: {err}; ignored", complete_path.display()))
            }
            Err(err) => e.unreadable.push(format!(".complete unreadable ({err})")),
        }
        progress(ctx, session_dir, &mut e);
    }
    (e, warnings)
}

/// A claim on `pid` from `source`, probed.
fn claim(
    source: &str,
    session_id: &str,
    names: &[&[u8]],
    pid: u32,
    recorded: Option<StartTime>,
    marker_required: bool,
    lock_age: Option<Duration>,
) -> Claim {
    let observed = csa_process::observe(
        pid,
        &Identify {
            session_id,
            names,
            recorded,
            marker_required,
        },
    );
    Claim {
        source: source.to_owned(),
        pid,
        recorded,
        marker_required,
        lock_age,
        observed,
    }
}

/// Each `locks/*.lock`: whether it is held, and the owner its body names.
fn gather_locks(
    ctx: &LivenessContext,
    session_dir: &StoreDir,
    session_id: &str,
    names: &[&[u8]],
    csa_session: bool,
    e: &mut csa_process::Evidence,
    warnings: &mut Vec<String>,
) {
    // Read through a link in its place, as upstream would have written through it; csa never
    // writes there (its tool locks refuse such a `locks/`).
    let locks_dir = match session_dir.open_dir_for_reading("locks") {
        Ok(Some(dir)) => dir,
        Ok(None) => return,
        Err(err) => return e.unreadable.push(format!("locks/ unreadable ({err})")),
    };
    let entries = match locks_dir.entries() {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return,
        Err(err) => return e.unreadable.push(format!("locks/ unreadable ({err})")),
    };
    for entry in entries {
        let name = entry.name.to_string_lossy().into_owned();
        if !name.ends_with(".lock") {
            continue;
        }
        let path = locks_dir.join(&entry.name);
        let label = format!("locks/{name}");
        let (text, file) = match read_small(&locks_dir, &entry.name) {
            Ok(Some(read)) => read,
            Ok(None) => continue,
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                warnings.push(format!("{}: {err}; it names no process", path.display()));
                continue;
            }
            Err(err) => {
                e.unreadable.push(format!("{label} unreadable ({err})"));
                continue;
            }
        };
        e.locks.push(LockEvidence {
            source: label.clone(),
            held: ctx.locks().state(&file).map_err(|err| err.to_string()),
        });
        let Ok(body) = serde_json::from_str::<LockBody>(&text) else {
            warnings.push(format!(
                "{}: body is not a JSON object with a \"pid\"; it names no process",
                path.display()
            ));
            continue;
        };
        if let Some(why) = foreign_owner(&ctx.host, &body) {
            e.foreign.push(format!("{label}: {why}"));
            continue;
        }
        if let Some(boot) = ctx.host.other_boot(body.boot_id.as_deref(), body.boot_time) {
            e.other_boot
                .push(format!("{label}: owner's {boot} has ended"));
            continue;
        }
        let age = file
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .map(|m| ctx.age(m));
        let marker_required = csa_session && body.reason.as_deref() == Some(AGENT_LOCK_REASON);
        e.claims.push(claim(
            &label,
            session_id,
            names,
            body.pid,
            body.start(),
            marker_required,
            age,
        ));
    }
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
    // A namespace recorded that this process cannot read its own of (the portable backend):
    // the pid may mean nothing here, so it cannot be decided here.
    if let (None, Some(theirs)) = (host.pid_ns, body.pid_ns) {
        return Some(format!(
            "owner is in PID namespace {theirs}, which this process backend cannot compare"
        ));
    }
    None
}

/// The progress files: the freshest non-empty one, and a recent snapshot recording other sizes.
fn progress(ctx: &LivenessContext, session_dir: &StoreDir, e: &mut csa_process::Evidence) {
    let mut sizes = [None; 3];
    for (i, name) in ["output.log", "stderr.log", "output/acp-events.jsonl"]
        .iter()
        .enumerate()
    {
        match session_dir.metadata(name) {
            Ok(meta) => {
                sizes[i] = Some(meta.len);
                let age = ctx.age(meta.modified);
                let fresher = e.progress.newest.as_ref().is_none_or(|(_, a)| age < *a);
                if meta.len > 0 && fresher {
                    e.progress.newest = Some(((*name).to_owned(), age));
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => e.unreadable.push(format!("{name} unreadable ({err})")),
        }
    }
    let Ok(meta) = session_dir.metadata(".liveness.snapshot") else {
        return;
    };
    let age = ctx.age(meta.modified);
    if age > csa_process::verdict::PROGRESS_FRESH {
        return;
    }
    let Ok(Some((text, _))) = read_small(session_dir, ".liveness.snapshot") else {
        return;
    };
    let snapshot = Snapshot::parse(&text);
    let [_, stderr_size, acp_size] = sizes;
    let changed = |recorded: Option<u64>, current: Option<u64>| matches!((recorded, current), (Some(a), Some(b)) if a != b);
    if changed(
        snapshot.spool_bytes_written,
        snapshot.observed_spool_bytes_written,
    ) || changed(snapshot.acp_events_size, acp_size)
        || changed(snapshot.stderr_log_size, stderr_size)
    {
        e.progress.snapshot_changed = Some(age);
    }
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

/// Reads at most [`MAX_SMALL_FILE`] bytes of the small file `name` of `dir` as (lossy) UTF-8,
/// with the open file (for a lock test); `Ok(None)` when it does not exist. The open does not
/// wait for a FIFO's writer (`O_NONBLOCK`): a FIFO nobody writes reads as empty. Regression: a
/// FIFO daemon.pid hung every command (tests/cli/corpus.rs).
fn read_small(
    dir: &StoreDir,
    name: impl AsRef<Path>,
) -> io::Result<Option<(String, std::fs::File)>> {
    let mut buf = Vec::new();
    match dir.open_read(name) {
        Ok(file) => {
            let regular = file.metadata().map(|m| m.is_file())?;
            if !regular {
                // A FIFO, a device, a directory: it names no process (and is never locked by
                // an owner).
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a regular file",
                ));
            }
            (&file).take(MAX_SMALL_FILE).read_to_end(&mut buf)?;
            Ok(Some((String::from_utf8_lossy(&buf).into_owned(), file)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::dirfd::test_dir;

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
        let a = assess(&LivenessContext::new(), &test_dir(dir.path()), ID, true);
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
        // Upstream's daemon.pid carries ticks (read from /proc whatever the backend); a backend
        // without ticks compares them to the second, so the mismatch is a minute.
        let ticks = csa_process::platform::stat(pid).expect("stat").start_ticks;
        fs_err::write(dir.path().join("daemon.pid"), format!("{pid} {ticks}\n")).expect("write");
        let a = assess(&LivenessContext::new(), &test_dir(dir.path()), ID, true);
        assert!(matches!(a.verdict, Verdict::Alive(_)), "{a:?}");
        let hz = csa_process::clock_ticks_per_second().expect("CLK_TCK");
        fs_err::write(
            dir.path().join("daemon.pid"),
            format!("{pid} {}\n", ticks.saturating_sub(60 * hz)),
        )
        .expect("write");
        let a = assess(&LivenessContext::new(), &test_dir(dir.path()), ID, true);
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
        let a = assess(&LivenessContext::new(), &test_dir(dir.path()), ID, false);
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
        let a = assess(&LivenessContext::new(), &test_dir(dir.path()), ID, true);
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
        let a = assess(&LivenessContext::new(), &test_dir(dir.path()), ID, true);
        assert!(matches!(a.verdict, Verdict::Foreign(_)), "{a:?}");
    }

    #[test]
    fn other_boot_on_this_machine_is_dead() {
        let dir = session();
        let host = HostIdentity::current();
        fs_err::create_dir(dir.path().join("locks")).expect("mkdir");
        let mut body = serde_json::json!({
            "pid": std::process::id(),
            "machine_id": host.machine_id,
            "pid_ns": host.pid_ns,
            "boot_id": "00000000-0000-0000-0000-000000000000",
        });
        // The portable backend knows a boot by its start time only: two hours earlier.
        if let Some(boot_time) = host.boot_time {
            body["boot_id"] = serde_json::Value::Null;
            body["boot_time"] = boot_time.saturating_sub(7200).into();
        }
        fs_err::write(dir.path().join("locks/x.lock"), body.to_string()).expect("write");
        let a = assess(&LivenessContext::new(), &test_dir(dir.path()), ID, true);
        assert!(matches!(a.verdict, Verdict::Dead { .. }), "{a:?}");
    }

    /// A lock body of another PID namespace, read where this process's own namespace is
    /// unknown (the portable backend): foreign, never judged by its pid.
    #[test]
    fn a_namespace_that_cannot_be_compared_is_foreign() {
        let host = HostIdentity {
            pid_ns: None,
            ..HostIdentity::current()
        };
        let body: LockBody =
            serde_json::from_str(r#"{"pid": 1, "pid_ns": 4026531836}"#).expect("body");
        assert!(foreign_owner(&host, &body).is_some_and(|why| why.contains("cannot compare")));
        let body: LockBody = serde_json::from_str(r#"{"pid": 1}"#).expect("body");
        assert_eq!(foreign_owner(&host, &body), None);
    }

    #[test]
    fn complete_marker_outranks_progress() {
        let dir = session();
        fs_err::write(dir.path().join("output.log"), "fresh").expect("write");
        fs_err::write(dir.path().join(".complete"), "3\n").expect("write");
        let a = assess(&LivenessContext::new(), &test_dir(dir.path()), ID, true);
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
        assert!(assess(&ctx, &test_dir(dir.path()), ID, true)
            .verdict
            .is_alive());
        assert!(!assess(&ctx, &test_dir(dir.path()), ID, false)
            .verdict
            .is_alive());
    }
}
