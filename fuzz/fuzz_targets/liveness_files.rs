//! The files liveness reads from a session directory (daemon.pid, a lock body, `.complete`,
//! `.liveness.snapshot`) and metadata.toml (a synthetic result's tool), written from the input
//! and read through the public functions: `liveness::assess` and `reconcile::synthetic_result`.
//! Never panics; a daemon.pid that does not parse is named in a warning; the synthetic result's
//! tool is metadata.toml's string `tool`, else "unknown".
#![no_main]

use std::sync::OnceLock;

use csa_session::liveness::{assess, DaemonPid, LivenessContext};
use csa_session::reconcile::synthetic_result;
use csa_session::state::SessionState;

const STATE: &str = "meta_session_id = \"01M7YCZAQ6TZ9E7YGFW7ZMM2X7\"\nproject_path = \"/p\"\n\
created_at = \"2026-01-01T00:00:00Z\"\nlast_accessed = \"2026-01-01T00:00:00Z\"\n";

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        fs_err::create_dir(dir.path().join("locks")).expect("mkdir");
        fs_err::write(dir.path().join("state.toml"), STATE).expect("write");
        dir
    })
}

fn fuzz(data: &[u8]) {
    let dir = dir().path();
    // Five files from one input: split at the first four 0xff bytes; a missing part is a
    // missing file.
    let files = [
        "daemon.pid",
        "locks/x.lock",
        ".complete",
        ".liveness.snapshot",
        "metadata.toml",
    ];
    let mut parts = data.splitn(files.len(), |b| *b == 0xff);
    for name in files {
        let path = dir.join(name);
        match parts.next() {
            Some(bytes) => fs_err::write(&path, bytes).expect("write"),
            None => {
                let _ = fs_err::remove_file(&path);
            }
        }
    }
    let a = assess(
        &LivenessContext::new(),
        dir,
        "01M7YCZAQ6TZ9E7YGFW7ZMM2X7",
        true,
    );
    if let Ok(text) = fs_err::read(dir.join("daemon.pid")) {
        if DaemonPid::parse(&String::from_utf8_lossy(&text)).is_none() {
            let path = dir.join("daemon.pid").display().to_string();
            assert!(a.warnings.iter().any(|w| w.contains(&path)), "{a:?}");
        }
    }
    let state = SessionState::load(dir).expect("state");
    let r = synthetic_result(&state, dir, "fuzz", "dead", None, state.view.last_accessed);
    let want = fs_err::read(dir.join("metadata.toml"))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("tool").and_then(|v| v.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    assert_eq!(r.tool, want);
}

// The macro's expansion opens a debug file with `std::fs::File::create`, which clippy.toml
// bans; the allowance covers only the generated entry point, not `fuzz`.
#[allow(clippy::disallowed_methods)]
mod entry {
    libfuzzer_sys::fuzz_target!(|data: &[u8]| super::fuzz(data));
}
