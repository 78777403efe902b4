//! Property tests (proptest) of every parser in csa-session, through its public entry points
//! (issue 5, "Bad input"): generated valid values round-trip through their writer (or their
//! documented format where csa only reads), arbitrary and mutated bytes never panic and give the
//! documented error or fallback, and every byte-boundary truncation of a valid file is handled.
//!
//! Parsers: state.toml (`SessionState::load`, `StateView::load_root`/`parse_root`, rewritten by
//! `SessionState::end_turn`), result.toml (`SessionResult::load`, `ResultHead::parse`,
//! `SessionResult::to_toml`), daemon.pid (`DaemonPid::parse`, and through `liveness::assess`),
//! lock bodies (`LockBody`, written as `create::LockRecord`), `.liveness.snapshot`
//! (`Snapshot::parse`), `.complete` (through `assess`), metadata.toml (through
//! `reconcile::synthetic_result`), output.log's tail (`reconcile::output_tail`), the cooldown
//! marker (`write_cooldown_marker`), the active record (`ActiveRecord::ids`, `known_ended`,
//! `record_ended`), the scan fingerprint (`record_scan`, `is_current`), run.toml (`RunRecord`),
//! the claim holder record (`ClaimHolder`, and through `DirClaim`) and the completion records
//! (`completion::load`: upstream's `daemon-completion.toml` and the legacy `.complete`).
//!
//! One test runs every property (each with its own `TestRunner`) so that the number of cases
//! executed is known at the end, for the reliability table.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use csa_session::active::{ActiveRecord, Fingerprint};
use csa_session::claim::{ClaimAttempt, ClaimHolder, DirClaim};
use csa_session::completion::{self, Record, Source};
use csa_session::cooldown::write_cooldown_marker;
use csa_session::create::{LockRecord, RunRecord, TurnRecord};
use csa_session::liveness::{assess, DaemonPid, LivenessContext, LockBody, Snapshot, Verdict};
use csa_session::lock::ReconcileLock;
use csa_session::reconcile::{output_tail, synthetic_result, TAIL_LINES};
use csa_session::result::{Artifact, ResultHead, ResultStatus, SessionResult};
use csa_session::state::{Phase, SessionState, StateView};
use csa_session::{StoreDir, StoreError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases executed, over every property.
static CASES: AtomicU64 = AtomicU64::new(0);
/// Properties checked.
static PROPERTIES: AtomicU64 = AtomicU64::new(0);

/// Runs `test` on `cases` values of `strategy`, counting each execution.
fn check<S>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    PROPERTIES.fetch_add(1, Ordering::Relaxed);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |value| {
        CASES.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    if let Err(err) = result {
        panic!("property `{name}` failed: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_102_444_800, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in range"))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn ulid() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|n| ulid::Ulid(n).to_string())
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Active),
        Just(Phase::Available),
        Just(Phase::Retired),
        Just(Phase::ToolExhausted),
    ]
}

/// Bytes that are often near-valid: arbitrary ones, or a valid file with random edits.
fn mutated(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        (valid, edits).prop_map(|(mut bytes, edits)| {
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => {
                        bytes.remove(i);
                    }
                }
            }
            bytes
        }),
    ]
}

#[derive(Debug, Clone)]
struct GenTool {
    summary: Option<String>,
    code: Option<i64>,
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
enum Extra {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// A state.toml as upstream or csa may write it, with unknown keys csa must keep.
#[derive(Debug, Clone)]
struct GenState {
    id: String,
    project_path: String,
    created_at: DateTime<Utc>,
    last_accessed: DateTime<Utc>,
    phase: Option<Phase>,
    reason: Option<String>,
    description: Option<String>,
    turn_count: Option<i64>,
    depth: Option<u32>,
    parent: Option<String>,
    tools: BTreeMap<String, GenTool>,
    extra: BTreeMap<String, Extra>,
}

fn gen_state() -> impl Strategy<Value = GenState> {
    let tool = (
        prop::option::of(any::<String>()),
        prop::option::of(any::<i64>()),
        prop::option::of(timestamp()),
    )
        .prop_map(|(summary, code, updated_at)| GenTool {
            summary,
            code,
            updated_at,
        });
    let extra = prop_oneof![
        any::<String>().prop_map(Extra::Text),
        any::<i64>().prop_map(Extra::Int),
        any::<bool>().prop_map(Extra::Bool),
    ];
    (
        (ulid(), any::<String>(), timestamp(), timestamp()),
        (
            prop::option::of(phase()),
            prop::option::of(any::<String>()),
            prop::option::of(any::<String>()),
            prop::option::of(0..=i64::MAX),
            prop::option::of(any::<u32>()),
            prop::option::of(ulid()),
        ),
        prop::collection::btree_map("[a-z0-9_-]{1,12}", tool, 0..3),
        prop::collection::btree_map("x_[a-z0-9_]{0,10}", extra, 0..4),
    )
        .prop_map(
            |(
                (id, project_path, created_at, last_accessed),
                (phase, reason, description, turn_count, depth, parent),
                tools,
                extra,
            )| GenState {
                id,
                project_path,
                created_at,
                last_accessed,
                phase,
                reason,
                description,
                turn_count,
                depth,
                parent,
                tools,
                extra,
            },
        )
}

impl GenState {
    /// The file, written with toml_edit as csa's own writer writes it.
    fn text(&self) -> String {
        use toml_edit::{value, DocumentMut, Item, Table};
        let mut doc = DocumentMut::new();
        doc["meta_session_id"] = value(self.id.as_str());
        if let Some(d) = &self.description {
            doc["description"] = value(d.as_str());
        }
        doc["project_path"] = value(self.project_path.as_str());
        doc["created_at"] = value(rfc3339(self.created_at));
        doc["last_accessed"] = value(rfc3339(self.last_accessed));
        if let Some(p) = self.phase {
            doc["phase"] = value(p.as_str());
        }
        if let Some(r) = &self.reason {
            doc["termination_reason"] = value(r.as_str());
        }
        if let Some(n) = self.turn_count {
            doc["turn_count"] = value(n);
        }
        for (key, v) in &self.extra {
            doc[key.as_str()] = match v {
                Extra::Text(s) => value(s.as_str()),
                Extra::Int(n) => value(*n),
                Extra::Bool(b) => value(*b),
            };
        }
        if self.depth.is_some() || self.parent.is_some() {
            let mut g = Table::new();
            if let Some(d) = self.depth {
                g["depth"] = value(i64::from(d));
            }
            if let Some(p) = &self.parent {
                g["parent_session_id"] = value(p.as_str());
            }
            doc["genealogy"] = Item::Table(g);
        }
        if !self.tools.is_empty() {
            let mut tools = Table::new();
            tools.set_implicit(true);
            for (name, t) in &self.tools {
                let mut entry = Table::new();
                if let Some(s) = &t.summary {
                    entry["last_action_summary"] = value(s.as_str());
                }
                if let Some(c) = t.code {
                    entry["last_exit_code"] = value(c);
                }
                if let Some(at) = t.updated_at {
                    entry["updated_at"] = value(rfc3339(at));
                }
                tools[name.as_str()] = Item::Table(entry);
            }
            doc["tools"] = Item::Table(tools);
        }
        doc.to_string()
    }

    /// Whether `view` holds exactly the generated values (`root_only`: the tables are not read).
    fn matches(&self, view: &StateView, root_only: bool) -> Result<(), TestCaseError> {
        prop_assert_eq!(&view.meta_session_id, &self.id);
        prop_assert_eq!(&view.project_path, &self.project_path);
        prop_assert_eq!(view.created_at, self.created_at);
        prop_assert_eq!(view.last_accessed, self.last_accessed);
        prop_assert_eq!(view.phase, self.phase.unwrap_or(Phase::Active));
        prop_assert_eq!(&view.termination_reason, &self.reason);
        prop_assert_eq!(&view.description, &self.description);
        prop_assert_eq!(
            view.turn_count,
            self.turn_count
                .map(|n| u64::try_from(n).expect("non-negative"))
        );
        if root_only {
            return Ok(());
        }
        prop_assert_eq!(view.genealogy.as_ref().and_then(|g| g.depth), self.depth);
        prop_assert_eq!(
            view.genealogy
                .as_ref()
                .and_then(|g| g.parent_session_id.clone()),
            self.parent.clone()
        );
        prop_assert_eq!(
            view.tools.keys().collect::<Vec<_>>(),
            self.tools.keys().collect::<Vec<_>>()
        );
        for (name, t) in &self.tools {
            let got = &view.tools[name];
            prop_assert_eq!(&got.last_action_summary, &t.summary);
            prop_assert_eq!(got.last_exit_code, t.code);
            prop_assert_eq!(got.updated_at, t.updated_at);
        }
        Ok(())
    }
}

fn status() -> impl Strategy<Value = ResultStatus> {
    prop_oneof![
        Just(ResultStatus::Success),
        Just(ResultStatus::Failure),
        Just(ResultStatus::Timeout),
        Just(ResultStatus::Signal),
        Just(ResultStatus::Error),
        any::<String>()
            .prop_filter("a known status", |s| {
                !["success", "failure", "timeout", "signal", "error"].contains(&s.as_str())
            })
            .prop_map(ResultStatus::Other),
    ]
}

fn gen_result() -> impl Strategy<Value = SessionResult> {
    let extra = prop::collection::btree_map(
        "x_[a-z0-9_]{0,10}",
        prop_oneof![
            any::<String>().prop_map(toml::Value::String),
            any::<i64>().prop_map(toml::Value::Integer),
            any::<bool>().prop_map(toml::Value::Boolean),
        ],
        0..4,
    );
    (
        (status(), any::<i64>(), any::<String>(), any::<String>()),
        (timestamp(), timestamp()),
        prop::collection::vec(any::<String>(), 0..3),
        extra,
    )
        .prop_map(
            |((status, exit_code, summary, tool), (started_at, completed_at), artifacts, extra)| {
                SessionResult {
                    status,
                    exit_code,
                    summary,
                    tool,
                    started_at,
                    completed_at,
                    artifacts: artifacts
                        .into_iter()
                        .map(|path| Artifact { path })
                        .collect(),
                    other: extra.into_iter().collect(),
                }
            },
        )
}

fn gen_run() -> impl Strategy<Value = RunRecord> {
    let turn = (
        any::<u32>(),
        prop::collection::vec(any::<String>(), 0..4),
        any::<String>(),
        prop::collection::btree_map("[A-Z_]{1,8}", any::<String>(), 0..3),
        any::<String>(),
        any::<(Option<u64>, Option<u64>)>(),
    )
        .prop_map(
            |(turn, command, cwd, env, started_at, (stdout_offset, stderr_offset))| TurnRecord {
                turn,
                command,
                cwd,
                env,
                started_at,
                stdout_offset,
                stderr_offset,
            },
        );
    prop::collection::vec(turn, 0..4).prop_map(|turns| RunRecord { turns })
}

fn gen_holder() -> impl Strategy<Value = ClaimHolder> {
    (ulid(), any::<u32>(), any::<String>()).prop_map(|(session_id, pid, started_at)| ClaimHolder {
        session_id,
        pid,
        started_at,
    })
}

#[derive(Debug, Clone)]
struct GenLock {
    pid: u32,
    start: Option<csa_process::StartTime>,
    tool: String,
    boot_id: Option<String>,
    machine_id: Option<String>,
    hostname: Option<String>,
    pid_ns: Option<u64>,
}

fn gen_lock() -> impl Strategy<Value = GenLock> {
    (
        any::<u32>(),
        prop::option::of((0u8..3, any::<u64>()).prop_map(|(unit, v)| match unit {
            0 => csa_process::StartTime::Ticks(v),
            1 => csa_process::StartTime::Micros(v),
            _ => csa_process::StartTime::BootSeconds(v),
        })),
        any::<String>(),
        prop::option::of(any::<String>()),
        prop::option::of(any::<String>()),
        prop::option::of(any::<String>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(pid, start, tool, boot_id, machine_id, hostname, pid_ns)| GenLock {
                pid,
                start,
                tool,
                boot_id,
                machine_id,
                hostname,
                pid_ns,
            },
        )
}

impl GenLock {
    fn json(&self) -> String {
        let host = csa_process::HostIdentity {
            boot_id: self.boot_id.clone(),
            boot_time: None,
            machine_id: self.machine_id.clone(),
            hostname: self.hostname.clone(),
            pid_ns: self.pid_ns,
        };
        serde_json::to_string(&LockRecord::new(
            self.pid,
            self.start,
            &self.tool,
            "2026-01-01T00:00:00Z",
            "proptest",
            &host,
        ))
        .expect("serialize")
    }
}

fn gen_snapshot() -> impl Strategy<Value = (Snapshot, String)> {
    let field = || prop::option::of(any::<u64>());
    (
        (field(), field(), field(), field()),
        prop::collection::vec("[a-z_]{0,12}=[^\n]{0,12}|[^=\n]{0,20}", 0..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|((a, b, c, d), noise, at)| {
            let snap = Snapshot {
                spool_bytes_written: a,
                observed_spool_bytes_written: b,
                acp_events_size: c,
                stderr_log_size: d,
            };
            let mut lines: Vec<String> = [
                ("spool_bytes_written", a),
                ("observed_spool_bytes_written", b),
                ("acp_events_size", c),
                ("stderr_log_size", d),
            ]
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} = {v}")))
            .collect();
            // Unknown keys and lines that do not parse, which the parser ignores.
            let known = [
                "spool_bytes_written",
                "observed_spool_bytes_written",
                "acp_events_size",
                "stderr_log_size",
            ];
            for line in noise {
                let key = line.split('=').next().unwrap_or_default().trim().to_owned();
                if !known.contains(&key.as_str()) {
                    let i = at.index(lines.len() + 1);
                    lines.insert(i, line);
                }
            }
            (snap, lines.join("\n"))
        })
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn session_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The directory at `path` as the store opens it.
fn open(path: &Path) -> StoreDir {
    StoreDir::open_root(path).expect("open").expect("exists")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).expect("mkdir");
    }
    fs_err::write(path, bytes).expect("write");
}

fn meta(dir: &Path) -> std::fs::Metadata {
    fs_err::metadata(dir).expect("metadata")
}

/// A state.toml with no `[tools]`, for the metadata.toml property.
const TOOLLESS_STATE: &str = "meta_session_id = \"01M7YCZAQ6TZ9E7YGFW7ZMM2X7\"\n\
project_path = \"/p\"\ncreated_at = \"2026-01-01T00:00:00Z\"\nlast_accessed = \"2026-01-01T00:00:00Z\"\n";

// ---------------------------------------------------------------------------------------------
// Properties.

fn state_properties() {
    check(
        "state: generated files load exactly",
        128,
        gen_state(),
        |s| {
            let dir = session_dir();
            write(dir.path(), "state.toml", s.text().as_bytes());
            let state = SessionState::load(&open(dir.path()))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            s.matches(&state.view, false)?;
            let root = StateView::load_root(&open(dir.path()))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            s.matches(&root, true)
        },
    );
    check(
        "state: end_turn changes phase, reason and last_accessed, keeps every other key and the mode",
        96,
        (
            gen_state(),
            phase(),
            any::<String>(),
            prop_oneof![Just(0o600u32), Just(0o640), Just(0o400)],
        ),
        |(s, new_phase, reason, mode)| {
            let dir = session_dir();
            let text = s.text();
            write(dir.path(), "state.toml", text.as_bytes());
            let path = dir.path().join("state.toml");
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let state = SessionState::load(&open(dir.path())).expect("load");
            let lock = ReconcileLock::try_acquire(&open(dir.path()))
                .expect("lock")
                .expect("free");
            let ended = Utc::now();
            state
                .end_turn(&lock, new_phase, &reason, ended)
                .expect("write");
            let after = SessionState::load(&open(dir.path())).expect("reload");
            prop_assert_eq!(after.view.phase, new_phase);
            prop_assert_eq!(after.view.last_accessed, ended.max(state.view.last_accessed));
            prop_assert_eq!(
                after.view.termination_reason.as_deref(),
                Some(reason.as_str())
            );
            let strip = |t: &str| {
                let mut table: toml::Table = toml::from_str(t).expect("toml");
                table.remove("phase");
                table.remove("termination_reason");
                table.remove("last_accessed");
                table
            };
            prop_assert_eq!(strip(after.text()), strip(&text));
            let got = fs_err::metadata(&path).expect("stat").permissions().mode() & 0o7777;
            prop_assert_eq!(got, mode);
            Ok(())
        },
    );
    check(
        "state: any bytes load or fail as InvalidState, never panic; load agrees with load_root",
        256,
        mutated(gen_state().prop_map(|s| s.text().into_bytes())),
        |bytes| {
            let dir = session_dir();
            write(dir.path(), "state.toml", &bytes);
            let full = SessionState::load(&open(dir.path()));
            let root = StateView::load_root(&open(dir.path()));
            match &full {
                Ok(state) => {
                    let root =
                        root.map_err(|e| TestCaseError::fail(format!("root failed: {e}")))?;
                    prop_assert_eq!(&root.meta_session_id, &state.view.meta_session_id);
                    prop_assert_eq!(root.phase, state.view.phase);
                    prop_assert_eq!(root.last_accessed, state.view.last_accessed);
                }
                Err(StoreError::InvalidState { path, .. }) => {
                    prop_assert_eq!(path, &dir.path().join("state.toml"));
                }
                Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other}"))),
            }
            Ok(())
        },
    );
    check(
        "state: every truncation of a valid file parses or fails cleanly",
        48,
        gen_state(),
        |s| {
            let dir = session_dir();
            let m = meta(dir.path());
            let text = s.text().into_bytes();
            let path = dir.path().join("state.toml");
            for n in 0..=text.len() {
                let prefix = &text[..n];
                let root =
                    StateView::parse_root(Ok((prefix.to_vec(), m.clone())), dir.path(), &path);
                let full = std::str::from_utf8(prefix)
                    .ok()
                    .map(toml::from_str::<StateView>);
                if n == text.len() {
                    prop_assert!(root.is_ok() && matches!(full, Some(Ok(_))));
                }
                if let Err(err) = root {
                    prop_assert!(matches!(err, StoreError::InvalidState { .. }), "{err}");
                }
            }
            Ok(())
        },
    );
}

fn result_properties() {
    check(
        "result: to_toml round-trips through load and ResultHead",
        192,
        gen_result(),
        |r| {
            let text = r.to_toml();
            let again: SessionResult =
                toml::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&again, &r);
            let dir = session_dir();
            write(dir.path(), "result.toml", text.as_bytes());
            let loaded = SessionResult::load(&open(dir.path()))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(loaded.as_ref(), Some(&r));
            let head = ResultHead::load(&open(dir.path()))
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .expect("present");
            prop_assert_eq!(&head.status, &r.status);
            prop_assert_eq!(head.exit_code, r.exit_code);
            prop_assert_eq!(&head.tool, &r.tool);
            Ok(())
        },
    );
    check(
        "result: any bytes load or fail as InvalidResult; the head agrees with the full load",
        256,
        mutated(gen_result().prop_map(|r| r.to_toml().into_bytes())),
        |bytes| {
            let dir = session_dir();
            write(dir.path(), "result.toml", &bytes);
            let path = dir.path().join("result.toml");
            let full = SessionResult::load(&open(dir.path()));
            let head = ResultHead::parse(Ok((bytes.clone(), meta(dir.path()))), &path);
            match full {
                Ok(Some(r)) => {
                    let head = head
                        .map_err(|e| TestCaseError::fail(format!("head failed: {e}")))?
                        .expect("present");
                    prop_assert_eq!(head.exit_code, r.exit_code);
                    prop_assert_eq!(head.tool, r.tool);
                }
                Ok(None) => return Err(TestCaseError::fail("present file read as absent")),
                Err(StoreError::InvalidResult { path: p, .. }) => prop_assert_eq!(p, path),
                Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other}"))),
            }
            Ok(())
        },
    );
    check(
        "result: every truncation of a valid file is handled",
        64,
        gen_result(),
        |r| {
            let dir = session_dir();
            let m = meta(dir.path());
            let path = dir.path().join("result.toml");
            let text = r.to_toml().into_bytes();
            for n in 0..=text.len() {
                let head = ResultHead::parse(Ok((text[..n].to_vec(), m.clone())), &path);
                let full = std::str::from_utf8(&text[..n])
                    .ok()
                    .map(toml::from_str::<SessionResult>);
                if n == text.len() {
                    prop_assert!(matches!(head, Ok(Some(_))) && matches!(full, Some(Ok(_))));
                }
                if let Err(err) = head {
                    prop_assert!(matches!(err, StoreError::InvalidResult { .. }), "{err}");
                }
            }
            Ok(())
        },
    );
}

fn liveness_properties() {
    check(
        "daemon.pid: both forms round-trip; whitespace around them is allowed",
        256,
        (
            any::<u32>(),
            prop::option::of(any::<u64>()),
            "[ \t\n]{0,3}",
            "[ \t\n]{0,3}",
        ),
        |(pid, ticks, pre, post)| {
            let body = match ticks {
                Some(t) => format!("{pre}{pid} {t}{post}"),
                None => format!("{pre}{pid}{post}"),
            };
            prop_assert_eq!(
                DaemonPid::parse(&body),
                Some(DaemonPid {
                    pid,
                    start_ticks: ticks
                })
            );
            Ok(())
        },
    );
    check(
        "daemon.pid, lock bodies, .complete: any bytes never panic; what does not parse is named in a warning",
        160,
        (
            mutated(Just(b"4242 12345\n".to_vec())),
            mutated(gen_lock().prop_map(|l| l.json().into_bytes())),
            mutated(Just(b"0\n".to_vec())),
        ),
        |(daemon, lock, complete)| {
            let dir = session_dir();
            write(dir.path(), "daemon.pid", &daemon);
            write(dir.path(), "locks/x.lock", &lock);
            write(dir.path(), ".complete", &complete);
            let a = assess(&LivenessContext::new(), &open(dir.path()), "01M7YCZAQ6TZ9E7YGFW7ZMM2X7", true);
            let warned = |name: &str| {
                let path = dir.path().join(name).display().to_string();
                a.warnings.iter().any(|w| w.contains(&path))
            };
            let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            // A verdict decided by daemon.pid or the lock stops before the later files.
            let decided_early = matches!(a.verdict, Verdict::Alive(_) | Verdict::Foreign(_));
            if DaemonPid::parse(&lossy(&daemon)).is_none() {
                prop_assert!(warned("daemon.pid"), "{a:?}");
            }
            let lock_parses = serde_json::from_str::<LockBody>(&lossy(&lock)).is_ok();
            if !lock_parses && !decided_early {
                prop_assert!(warned("locks/x.lock"), "{a:?}");
            }
            let marker = lossy(&complete).trim().parse::<i64>().ok();
            if !decided_early {
                match (&a.verdict, marker) {
                    (Verdict::Dead { complete_marker, .. }, Some(code)) => {
                        prop_assert_eq!(*complete_marker, Some(code));
                    }
                    (_, None) => prop_assert!(warned(".complete"), "{a:?}"),
                    (v, Some(_)) => return Err(TestCaseError::fail(format!("marker ignored: {v:?}"))),
                }
            }
            Ok(())
        },
    );
    check(
        "lock bodies: csa's LockRecord reads back as a LockBody; no strict prefix parses",
        256,
        gen_lock(),
        |l| {
            let json = l.json();
            let body: LockBody =
                serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(body.pid, l.pid);
            prop_assert_eq!(body.start(), l.start);
            prop_assert_eq!(
                body.pid_start_time_ticks,
                l.start.and_then(csa_process::StartTime::ticks),
                "ticks only under upstream's key"
            );
            prop_assert_eq!(body.tool_name.as_deref(), Some(l.tool.as_str()));
            prop_assert_eq!(&body.boot_id, &l.boot_id);
            prop_assert_eq!(&body.machine_id, &l.machine_id);
            prop_assert_eq!(&body.hostname, &l.hostname);
            prop_assert_eq!(body.pid_ns, l.pid_ns);
            let bytes = json.as_bytes();
            for n in 0..bytes.len() {
                prop_assert!(serde_json::from_slice::<LockBody>(&bytes[..n]).is_err());
            }
            Ok(())
        },
    );
    check(
        ".liveness.snapshot: known keys read back whatever the noise around them",
        256,
        gen_snapshot(),
        |(snap, text)| {
            prop_assert_eq!(Snapshot::parse(&text), snap);
            for n in 0..=text.len() {
                if text.is_char_boundary(n) {
                    let _ = Snapshot::parse(&text[..n]);
                }
            }
            Ok(())
        },
    );
    check(
        ".liveness.snapshot: any text never panics",
        256,
        any::<String>(),
        |text| {
            let _ = Snapshot::parse(&text);
            Ok(())
        },
    );
}

fn metadata_and_log_properties() {
    check(
        "metadata.toml: a string `tool` names a synthetic result's tool, anything else gives \"unknown\"",
        128,
        prop_oneof![
            any::<String>().prop_map(|t| format!("tool = {}\ntool_locked = true\n", toml::Value::String(t)).into_bytes()),
            mutated(Just(b"tool = \"codex\"\ntool_locked = true\n".to_vec())),
        ],
        |bytes| {
            let dir = session_dir();
            write(dir.path(), "state.toml", TOOLLESS_STATE.as_bytes());
            write(dir.path(), "metadata.toml", &bytes);
            let state = SessionState::load(&open(dir.path())).expect("load");
            let r = synthetic_result(&state, &open(dir.path()), "proptest", "dead", None, Utc::now());
            let want = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .and_then(|t| t.get("tool").and_then(|v| v.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            prop_assert_eq!(r.tool, want);
            Ok(())
        },
    );
    check(
        "output.log: the tail has at most TAIL_LINES lines, each a non-empty line of the log",
        192,
        prop::collection::vec(any::<u8>(), 0..6000),
        |bytes| {
            let dir = session_dir();
            write(dir.path(), "output.log", &bytes);
            let tail = output_tail(&open(dir.path()), "output.log");
            let lossy = String::from_utf8_lossy(&bytes);
            prop_assert!(tail.lines().count() <= TAIL_LINES);
            for line in tail.lines() {
                prop_assert!(!line.trim().is_empty() && lossy.contains(line));
            }
            Ok(())
        },
    );
}

fn record_properties() {
    check(
        "cooldown marker: replaces whatever was there with the given id and time",
        128,
        (
            any::<String>(),
            timestamp(),
            prop::collection::vec(any::<u8>(), 0..200),
        ),
        |(id, at, old)| {
            let dir = session_dir();
            write(dir.path(), "cooldown-marker.toml", &old);
            write_cooldown_marker(&open(dir.path()), &id, at).expect("write");
            let text =
                fs_err::read_to_string(dir.path().join("cooldown-marker.toml")).expect("read");
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(
                table.get("session_id").and_then(|v| v.as_str()),
                Some(id.as_str())
            );
            let completed = table
                .get("completed_at")
                .and_then(|v| v.as_str())
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&Utc));
            prop_assert_eq!(completed, Some(at));
            Ok(())
        },
    );
    check(
        "active record: entries are exactly the ULID names; .ended round-trips and ignores garbage",
        128,
        (
            prop::collection::btree_set(ulid(), 0..6),
            prop::collection::btree_set("[0-9A-Za-z._-]{1,30}", 0..6),
            prop::collection::btree_set(ulid(), 0..6),
            mutated(Just(
                b"01M7YCZAQ6TZ9E7YGFW7ZMM2X7\n01M7YCZAQ6TZ9E7YGFW7ZMM2X8\n".to_vec(),
            )),
        ),
        |(entries, others, ended, garbage)| {
            let sessions = session_dir();
            let sessions_dir = open(sessions.path());
            let record = ActiveRecord::new(&sessions_dir);
            record.ensure_dir().expect("mkdir");
            for name in entries.iter().chain(&others) {
                if name != "." && name != ".." {
                    write(&sessions.path().join(".csa-active"), name, b"");
                }
            }
            let mut ids = record.ids().expect("ids");
            ids.sort();
            let want: Vec<String> = entries
                .iter()
                .chain(&others)
                .filter(|n| csa_session::paths::is_ulid(n))
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            prop_assert_eq!(ids, want);
            let ended: Vec<String> = ended.into_iter().collect();
            record.record_ended(&ended);
            prop_assert_eq!(record.known_ended(), ended.clone());
            // Every truncation of the file, and garbage, give sorted ULIDs of what was there.
            let file = sessions.path().join(".csa-active/.ended");
            let body = fs_err::read(&file).expect("read");
            for n in 0..=body.len() {
                fs_err::write(&file, &body[..n]).expect("write");
                let got = record.known_ended();
                prop_assert!(got.iter().all(|id| ended.contains(id)));
                prop_assert!(got.windows(2).all(|w| w[0] <= w[1]));
            }
            fs_err::write(&file, &garbage).expect("write");
            let got = record.known_ended();
            prop_assert!(got.iter().all(|id| csa_session::paths::is_ulid(id)));
            Ok(())
        },
    );
    check(
        "scan fingerprint: recorded one is current; any other body is current only if it names it",
        128,
        (
            any::<prop::sample::Index>(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ),
        |(cut, edits)| {
            let sessions = session_dir();
            let sessions_dir = open(sessions.path());
            let record = ActiveRecord::new(&sessions_dir);
            let fp = Fingerprint::of(&sessions_dir).expect("stat");
            record.record_scan(&fp, SystemTime::now() + Duration::from_secs(3));
            prop_assert!(record.is_current(&fp));
            let file = sessions.path().join(".csa-active/.scan.toml");
            let valid = fs_err::read(&file).expect("read");
            let encoded = toml::from_str::<toml::Table>(&String::from_utf8_lossy(&valid))
                .expect("toml")["fingerprint"]
                .as_str()
                .expect("string")
                .to_owned();
            let mut bytes = valid[..cut.index(valid.len() + 1)].to_vec();
            for (at, byte) in edits {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
            }
            fs_err::write(&file, &bytes).expect("write");
            let names_it = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .is_some_and(|t| {
                    t.get("fingerprint").and_then(|v| v.as_str()) == Some(encoded.as_str())
                });
            prop_assert_eq!(record.is_current(&fp), names_it);
            Ok(())
        },
    );
}

fn run_and_claim_properties() {
    check(
        "run.toml: RunRecord round-trips; truncations never panic",
        128,
        gen_run(),
        |run| {
            let text = toml::to_string(&run).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again: RunRecord =
                toml::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&again, &run);
            for n in 0..text.len() {
                let _ =
                    toml::from_str::<RunRecord>(&String::from_utf8_lossy(&text.as_bytes()[..n]));
            }
            Ok(())
        },
    );
    check(
        "run.toml: any bytes parse or fail, never panic",
        256,
        mutated(gen_run().prop_map(|r| toml::to_string(&r).expect("toml").into_bytes())),
        |bytes| {
            let _ = toml::from_str::<RunRecord>(&String::from_utf8_lossy(&bytes));
            Ok(())
        },
    );
    check(
        "claim holder: round-trips; no strict prefix parses; any bytes never panic",
        256,
        (gen_holder(), prop::collection::vec(any::<u8>(), 0..300)),
        |(holder, junk)| {
            let json = serde_json::to_string(&holder).expect("json");
            prop_assert_eq!(
                serde_json::from_str::<ClaimHolder>(&json).ok(),
                Some(holder)
            );
            for n in 0..json.len() {
                prop_assert!(serde_json::from_slice::<ClaimHolder>(&json.as_bytes()[..n]).is_err());
            }
            let _ = serde_json::from_slice::<ClaimHolder>(&junk);
            Ok(())
        },
    );
    check(
        "claim holder: a busy claim reports the record its holder wrote",
        16,
        gen_holder(),
        |mut holder| {
            holder.pid = std::process::id();
            let root = session_dir();
            let project = csa_session::paths::Project::new(root.path(), "p");
            let ClaimAttempt::Claimed(mut claim) = DirClaim::try_acquire(&project).expect("claim")
            else {
                return Err(TestCaseError::fail("a fresh claim was busy"));
            };
            claim.record_holder(&holder).expect("record");
            match DirClaim::try_acquire(&project).expect("second claim") {
                ClaimAttempt::Busy(busy) => {
                    prop_assert_eq!(busy.session_id, Some(holder.session_id.clone()));
                    prop_assert_eq!(busy.pid, Some(holder.pid));
                    prop_assert_eq!(busy.started_at, Some(holder.started_at.clone()));
                }
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            Ok(())
        },
    );
}

/// A `daemon-completion.toml` as upstream writes it (`toml::to_string_pretty` of its packet:
/// `exit_code`, `status`, then `reason` when there is one), and the record it holds.
fn gen_completion() -> impl Strategy<Value = (Record, String)> {
    (
        any::<i32>(),
        prop_oneof![
            Just("success".to_owned()),
            Just("failure".to_owned()),
            Just("signal".to_owned()),
            "[a-z_]{0,12}",
        ],
        prop::option::of(any::<String>()),
    )
        .prop_map(|(exit_code, status, reason)| {
            let mut text = format!(
                "exit_code = {exit_code}\nstatus = {}\n",
                toml::Value::String(status.clone())
            );
            if let Some(r) = &reason {
                text.push_str(&format!("reason = {}\n", toml::Value::String(r.clone())));
            }
            (
                Record {
                    exit_code,
                    status,
                    reason,
                },
                text,
            )
        })
}

fn completion_properties() {
    check(
        "daemon-completion.toml: upstream's records read back exactly; no strict prefix with a missing key does",
        256,
        gen_completion(),
        |(record, text)| {
            let dir = session_dir();
            write(dir.path(), completion::DAEMON_COMPLETION_FILE, text.as_bytes());
            let got = completion::load(&open(dir.path()))
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .expect("a record");
            prop_assert_eq!(got.source, Source::DaemonCompletion);
            prop_assert_eq!(&got.record, &record);
            // The outcome is always a status and an exit code upstream would write.
            let outcome = record.outcome(false);
            prop_assert!(outcome.exit_code != 0 || outcome.status.to_string() != "failure");
            for n in 0..text.len() {
                if !text.is_char_boundary(n) {
                    continue;
                }
                write(dir.path(), completion::DAEMON_COMPLETION_FILE, &text.as_bytes()[..n]);
                if let Ok(Some(c)) = completion::load(&open(dir.path())) {
                    // Only a cut after both required keys still parses, and then it holds them.
                    prop_assert_eq!(c.record.exit_code, record.exit_code);
                    prop_assert_eq!(&c.record.status, &record.status);
                }
            }
            Ok(())
        },
    );
    check(
        "daemon-completion.toml and .complete: any bytes never panic; what does not parse is an error naming the file",
        192,
        (
            mutated(gen_completion().prop_map(|(_, t)| t.into_bytes())),
            mutated(Just(b"137\n".to_vec())),
            any::<bool>(),
        ),
        |(daemon, marker, with_daemon)| {
            let dir = session_dir();
            write(dir.path(), completion::COMPLETE_MARKER, &marker);
            if with_daemon {
                write(dir.path(), completion::DAEMON_COMPLETION_FILE, &daemon);
            }
            let (bytes, name) = if with_daemon {
                (&daemon, completion::DAEMON_COMPLETION_FILE)
            } else {
                (&marker, completion::COMPLETE_MARKER)
            };
            let parses = std::str::from_utf8(bytes).ok().is_some_and(|t| {
                if with_daemon {
                    toml::from_str::<Record>(t).is_ok()
                } else {
                    t.trim().parse::<i32>().is_ok()
                }
            });
            match completion::load(&open(dir.path())) {
                Ok(Some(c)) => {
                    prop_assert!(parses, "accepted {bytes:?}");
                    prop_assert_eq!(c.path, dir.path().join(name));
                    if !with_daemon {
                        let code: i32 = String::from_utf8_lossy(&marker)
                            .trim()
                            .parse()
                            .expect("parses");
                        prop_assert_eq!(c.record, Record::legacy_marker(code));
                    }
                }
                Ok(None) => return Err(TestCaseError::fail("the record exists")),
                Err(e) => {
                    prop_assert!(!parses, "refused a valid record: {e}");
                    prop_assert!(e.to_string().contains(&dir.path().join(name).display().to_string()));
                }
            }
            Ok(())
        },
    );
}

#[test]
fn every_parser_holds_its_properties() {
    // The rollback tests of this binary configure global fail points; a scenario excludes them
    // for the duration, so no injected fault reaches these writes.
    #[cfg(feature = "failpoints")]
    let scenario = fail::FailScenario::setup();
    let started = Instant::now();
    state_properties();
    result_properties();
    liveness_properties();
    metadata_and_log_properties();
    record_properties();
    run_and_claim_properties();
    completion_properties();
    #[cfg(feature = "failpoints")]
    scenario.teardown();
    let cases = CASES.load(Ordering::Relaxed);
    let detail = format!(
        "{cases} generated cases over {} properties of 14 parsers in {:.1}s",
        PROPERTIES.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    println!("proptest: {detail}");
    csa_reliability::record(&csa_reliability::Row {
        key: "5-proptest".into(),
        area: "property tests".into(),
        cases,
        failure_kind: "panics or broken properties".into(),
        failures: 0,
        detail,
    });
}
