//! The files the corpus breaks, the forms it breaks them in, and the valid files they start
//! from (session bodies in upstream's format).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Target {
    State,
    Result,
    Metadata,
    DaemonPid,
    Lock,
    Snapshot,
    Complete,
    DaemonCompletion,
    Run,
    Log,
    Cooldown,
    ActiveEntry,
    Scan,
    Ended,
    Claim,
}

impl Target {
    pub(super) const ALL: [Target; 15] = [
        Target::State,
        Target::Result,
        Target::Metadata,
        Target::DaemonPid,
        Target::Lock,
        Target::Snapshot,
        Target::Complete,
        Target::DaemonCompletion,
        Target::Run,
        Target::Log,
        Target::Cooldown,
        Target::ActiveEntry,
        Target::Scan,
        Target::Ended,
        Target::Claim,
    ];

    /// Where the file is: relative to the session directory, or (project-level files) to the
    /// project's `sessions/` directory; `id` is the case's session.
    pub(super) fn rel(self, id: &str) -> String {
        match self {
            Target::State => "state.toml".into(),
            Target::Result => "result.toml".into(),
            Target::Metadata => "metadata.toml".into(),
            Target::DaemonPid => "daemon.pid".into(),
            Target::Lock => "locks/codex.lock".into(),
            Target::Snapshot => ".liveness.snapshot".into(),
            Target::Complete => ".complete".into(),
            Target::DaemonCompletion => "daemon-completion.toml".into(),
            Target::Run => "run.toml".into(),
            Target::Log => "output.log".into(),
            Target::Cooldown => "cooldown-marker.toml".into(),
            Target::ActiveEntry => format!(".csa-active/{id}"),
            Target::Scan => ".csa-active/.scan.toml".into(),
            Target::Ended => ".csa-active/.ended".into(),
            Target::Claim => ".csa-claim.lock".into(),
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Target::State => "state.toml",
            Target::Result => "result.toml",
            Target::Metadata => "metadata.toml",
            Target::DaemonPid => "daemon.pid",
            Target::Lock => "locks/<tool>.lock",
            Target::Snapshot => ".liveness.snapshot",
            Target::Complete => ".complete",
            Target::DaemonCompletion => "daemon-completion.toml",
            Target::Run => "run.toml",
            Target::Log => "output.log",
            Target::Cooldown => "cooldown-marker.toml",
            Target::ActiveEntry => ".csa-active/<ULID>",
            Target::Scan => ".csa-active/.scan.toml",
            Target::Ended => ".csa-active/.ended",
            Target::Claim => ".csa-claim.lock",
        }
    }

    pub(super) fn project_level(self) -> bool {
        matches!(
            self,
            Target::Cooldown | Target::ActiveEntry | Target::Scan | Target::Ended | Target::Claim
        )
    }

    /// A valid file of this kind, for a session `id` (bodies have the same length for every id).
    pub(super) fn valid_body(self, id: &str, t: &Times) -> Vec<u8> {
        let body = match self {
            Target::State => state_body(id, Phase::Active, t),
            Target::Result => result_body(t),
            Target::Metadata => "tool = \"codex\"\ntool_locked = true\n".into(),
            Target::DaemonPid => format!("{DEAD_PID} 12345\n"),
            Target::Lock => format!(
                "{{\"pid\":{DEAD_PID},\"pid_start_time_ticks\":12345,\"tool_name\":\"codex\",\
                 \"acquired_at\":\"{}\",\"reason\":\"corpus\"}}",
                t.hour_ago
            ),
            Target::Snapshot => {
                "spool_bytes_written=10\nobserved_spool_bytes_written=10\nstderr_log_size=0\n"
                    .into()
            }
            Target::Complete => "1\n".into(),
            Target::DaemonCompletion => {
                "exit_code = 2\nstatus = \"failure\"\nreason = \"corpus\"\n".into()
            }
            Target::Run => run_body(),
            Target::Log => "first line\nlast line\n".into(),
            Target::Cooldown => {
                format!("session_id = \"{id}\"\ncompleted_at = \"{}\"\n", t.hour_ago)
            }
            Target::ActiveEntry => String::new(),
            Target::Scan => "fingerprint = \"1:2:3.000000004\"\n".into(),
            Target::Ended => "01J00000000000000000000000\n01J00000000000000000000001\n".into(),
            Target::Claim => format!(
                "{{\"session_id\":\"{id}\",\"pid\":{DEAD_PID},\"started_at\":\"{}\"}}",
                t.hour_ago
            ),
        };
        body.into_bytes()
    }

    /// The valid file with its keys or values of the wrong type (`None`: the file has none).
    pub(super) fn wrong_types(self, valid: &[u8]) -> Option<Vec<u8>> {
        let text = String::from_utf8_lossy(valid);
        let body = match self {
            Target::State => text
                .replace("turn_count = 1", "turn_count = \"zero\"")
                .replace("phase = \"active\"", "phase = 7"),
            Target::Result => text.replace("exit_code = 1", "exit_code = \"one\""),
            Target::Metadata => "tool = 5\ntool_locked = \"yes\"\n".into(),
            Target::DaemonPid => "-5 twelve\n".into(),
            Target::Lock => "{\"pid\":\"999\",\"pid_start_time_ticks\":-1}".into(),
            Target::Snapshot => "spool_bytes_written=ten\nobserved_spool_bytes_written=-1\n".into(),
            Target::Complete => "one\n".into(),
            Target::DaemonCompletion => "exit_code = \"two\"\nstatus = 2\n".into(),
            Target::Run => "turns = \"true\"\n".into(),
            Target::Cooldown => "session_id = 1\ncompleted_at = true\n".into(),
            Target::Scan => "fingerprint = 12\n".into(),
            Target::Ended => "../x\nnot-a-ulid\n01m7\n".into(),
            Target::Claim => "{\"session_id\":1,\"pid\":\"x\",\"started_at\":[]}".into(),
            Target::Log | Target::ActiveEntry => return None,
        };
        Some(body.into_bytes())
    }

    /// The valid file with a key given twice (`None`: the format has no keys).
    pub(super) fn duplicate_keys(self, valid: &[u8]) -> Option<Vec<u8>> {
        let text = String::from_utf8_lossy(valid).into_owned();
        let body = match self {
            Target::Lock | Target::Claim => text.replacen('{', "{\"pid\":1,", 1),
            Target::DaemonPid | Target::Complete => text.repeat(2),
            Target::Log | Target::ActiveEntry => return None,
            // TOML and key=value files: the first `key = value` line, twice.
            _ => {
                let mut out = String::new();
                let mut done = false;
                for line in text.split_inclusive('\n') {
                    out.push_str(line);
                    if !done && line.contains('=') {
                        out.push_str(line);
                        done = true;
                    }
                }
                if !done {
                    out.push_str(&text);
                }
                out
            }
        };
        Some(body.into_bytes())
    }

    /// Whether csa parses `bytes` as this file, decided in-process by csa-session's own types
    /// (lossy UTF-8 where csa reads lossily), for the files whose validity decides an outcome.
    pub(super) fn parses(self, bytes: &[u8]) -> bool {
        let lossy = String::from_utf8_lossy(bytes);
        let strict = std::str::from_utf8(bytes).ok();
        match self {
            Target::State => strict.is_some_and(|t| toml::from_str::<StateView>(t).is_ok()),
            Target::Result => strict.is_some_and(|t| toml::from_str::<SessionResult>(t).is_ok()),
            Target::Run => toml::from_str::<RunRecord>(&lossy).is_ok(),
            Target::DaemonPid => DaemonPid::parse(&lossy).is_some(),
            Target::Lock => serde_json::from_str::<LockBody>(&lossy).is_ok(),
            Target::Complete => lossy.trim().parse::<i64>().is_ok(),
            Target::DaemonCompletion => {
                strict.is_some_and(|t| toml::from_str::<completion::Record>(t).is_ok())
            }
            Target::Claim => serde_json::from_str::<ClaimHolder>(&lossy).is_ok(),
            // Content csa ignores or only uses as a hint (or never reads).
            _ => true,
        }
    }

    /// Whether csa promises a diagnostic naming this file when it does not parse: state and
    /// result (errors), run.toml (resume's error), daemon.pid, lock bodies and `.complete`
    /// (warnings, or the alive reason of an unreadable one), `daemon-completion.toml`
    /// (reconcile's warning; liveness never reads it), output.log (logs' error). The others
    /// are documented as ignored when they do not parse (metadata: tool "unknown"; the snapshot;
    /// csa's caches, replaced whole; the claim's holder record, informational).
    pub(super) fn named_when_broken(self) -> bool {
        matches!(
            self,
            Target::State
                | Target::Result
                | Target::Run
                | Target::DaemonPid
                | Target::Lock
                | Target::Complete
                | Target::DaemonCompletion
        )
    }

    /// Whether liveness (`is-alive`) reads this file, so that its diagnostics name it.
    pub(super) fn read_by_liveness(self) -> bool {
        self != Target::DaemonCompletion
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Form {
    Empty,
    Truncated(usize),
    Garbage,
    InvalidUtf8,
    WrongTypes,
    DuplicateKeys,
    Huge,
    Directory,
    LinkElsewhere,
    LinkDevZero,
    LinkLoop,
    NoPermissions,
    Fifo,
}

impl Form {
    pub(super) const SHAPES: [Form; 12] = [
        Form::Empty,
        Form::Garbage,
        Form::InvalidUtf8,
        Form::WrongTypes,
        Form::DuplicateKeys,
        Form::Huge,
        Form::Directory,
        Form::LinkElsewhere,
        Form::LinkDevZero,
        Form::LinkLoop,
        Form::NoPermissions,
        Form::Fifo,
    ];

    /// The bytes of a content form (`None` for the forms that are not a regular file's bytes).
    pub(super) fn bytes(self, target: Target, valid: &[u8]) -> Option<Vec<u8>> {
        match self {
            Form::Empty => Some(Vec::new()),
            Form::Truncated(n) => Some(valid[..n].to_vec()),
            Form::Garbage => Some(garbage()),
            Form::InvalidUtf8 => {
                let mut b = valid.to_vec();
                let mid = b.len() / 2;
                b.splice(mid..mid, [0xff, 0xfe, 0xc3]);
                Some(b)
            }
            Form::WrongTypes => target.wrong_types(valid),
            Form::DuplicateKeys => target.duplicate_keys(valid),
            Form::NoPermissions => Some(valid.to_vec()),
            _ => None,
        }
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Form::Truncated(n) => write!(f, "truncated at {n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// 512 bytes of binary garbage (NULs, control bytes, invalid UTF-8), the same every run.
pub(super) fn garbage() -> Vec<u8> {
    (0u32..512)
        .map(|i| u8::try_from((i * 131 + 7) % 251).expect("below 256"))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Spec {
    pub(super) target: Target,
    pub(super) form: Form,
}

impl Spec {
    pub(super) fn applies(&self, valid: &[u8]) -> bool {
        match self.form {
            Form::WrongTypes | Form::DuplicateKeys => self.form.bytes(self.target, valid).is_some(),
            Form::InvalidUtf8 => self.target != Target::ActiveEntry || !valid.is_empty(),
            _ => true,
        }
    }
}

/// Every case: every target in every form, truncations at every byte boundary (1..len: 0 is
/// `Empty`, len is the valid file).
pub(super) fn all_specs(t: &Times) -> Vec<Spec> {
    let mut specs = Vec::new();
    for target in Target::ALL {
        let valid = target.valid_body(TEMPLATE_ID, t);
        for form in Form::SHAPES {
            let spec = Spec { target, form };
            if spec.applies(&valid) {
                specs.push(spec);
            }
        }
        if target != Target::Log {
            for n in 1..valid.len() {
                specs.push(Spec {
                    target,
                    form: Form::Truncated(n),
                });
            }
        }
    }
    specs
}

/// The per-session sample: every non-truncation form, and six truncation boundaries per file.
pub(super) fn sampled_specs(all: &[Spec], t: &Times) -> Vec<Spec> {
    all.iter()
        .copied()
        .filter(|s| match s.form {
            Form::Truncated(n) => {
                let len = s.target.valid_body(TEMPLATE_ID, t).len();
                let picks: BTreeSet<usize> = [1, len / 5, 2 * len / 5, 3 * len / 5, 4 * len / 5]
                    .into_iter()
                    .chain([len - 1])
                    .collect();
                picks.contains(&n)
            }
            _ => true,
        })
        .collect()
}

pub(super) const TEMPLATE_ID: &str = "01J0000000000000000000000T";

// ---------------------------------------------------------------------------------------------
// Session bodies.

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Active, owner dead (daemon.pid names no process), no result.
    Active,
    /// Ended and resumable (`retired` / `orphaned_process`), with a result.
    Resumable,
    /// Retired long ago, with a result: `clean --older-than 30d` deletes it.
    Old,
}

pub(super) struct Times {
    pub(super) hour_ago: String,
    pub(super) two_months_ago: String,
}

impl Times {
    pub(super) fn now() -> Self {
        let at = |secs: i64| {
            (Utc::now() - chrono::Duration::seconds(secs))
                .to_rfc3339_opts(SecondsFormat::Nanos, true)
        };
        Times {
            hour_ago: at(3600),
            two_months_ago: at(60 * 86400),
        }
    }
}

pub(super) fn state_body(id: &str, phase: Phase, t: &Times) -> String {
    let (phase, termination, accessed) = match phase {
        Phase::Active => ("active", "", &t.hour_ago),
        Phase::Resumable => (
            "retired",
            "termination_reason = \"orphaned_process\"\n",
            &t.hour_ago,
        ),
        Phase::Old => (
            "retired",
            "termination_reason = \"completed\"\n",
            &t.two_months_ago,
        ),
    };
    format!(
        r#"meta_session_id = "{id}"
description = "corpus"
project_path = "/"
created_at = "{accessed}"
last_accessed = "{accessed}"
csa_version = "0.1.1142"
phase = "{phase}"
{termination}turn_count = 1
is_seed_candidate = false

[genealogy]
depth = 0

[tools.codex]
last_action_summary = "working"
last_exit_code = 0
updated_at = "{accessed}"

[sandbox_info]
mode = "cgroup"
"#
    )
}

pub(super) fn result_body(t: &Times) -> String {
    format!(
        r#"status = "failure"
exit_code = 1
summary = "a real result"
tool = "codex"
started_at = "{0}"
completed_at = "{0}"

[[artifacts]]
path = "output/a.txt"
"#,
        t.hour_ago
    )
}

pub(super) fn run_body() -> String {
    toml::to_string(&RunRecord {
        turns: vec![csa_session::create::TurnRecord {
            turn: 1,
            command: vec!["true".into()],
            cwd: "/".into(),
            env: BTreeMap::new(),
            started_at: "2026-01-01T00:00:00.000000000Z".into(),
            stdout_offset: Some(0),
            stderr_offset: Some(0),
        }],
    })
    .expect("run.toml")
}

/// Writes a healthy session of `phase` in `dir`.
pub(super) fn write_session(dir: &Path, id: &str, phase: Phase, t: &Times) {
    fs_err::create_dir_all(dir).expect("mkdir session");
    let mut files = vec![
        ("state.toml", state_body(id, phase, t)),
        ("metadata.toml", utf8(Target::Metadata.valid_body(id, t))),
        ("daemon.pid", format!("{DEAD_PID} 12345\n")),
        ("output.log", "first line\nlast line\n".into()),
        ("run.toml", run_body()),
        (".reconcile.lock", String::new()),
    ];
    if phase != Phase::Active {
        files.push(("result.toml", result_body(t)));
    }
    for (name, body) in files {
        fs_err::write(dir.join(name), body).expect("write session file");
    }
}

pub(super) fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("valid bodies are UTF-8")
}
