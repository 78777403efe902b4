//! The small formats read from memory: daemon.pid, lock bodies, `.liveness.snapshot` and the
//! claim holder record, each read as csa reads it (lossy UTF-8 where csa is lossy). None may
//! panic; a parsed daemon.pid or claim holder written back reads back the same.
#![no_main]

use csa_session::claim::ClaimHolder;
use csa_session::liveness::{DaemonPid, LockBody, Snapshot};

fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(d) = DaemonPid::parse(&text) {
        let written = match d.start_ticks {
            Some(t) => format!("{} {t}\n", d.pid),
            None => format!("{}\n", d.pid),
        };
        assert_eq!(DaemonPid::parse(&written), Some(d));
    }
    let _ = serde_json::from_str::<LockBody>(&text);
    let _ = Snapshot::parse(&text);
    if let Ok(holder) = serde_json::from_slice::<ClaimHolder>(data) {
        let json = serde_json::to_string(&holder).expect("serialize");
        assert_eq!(
            serde_json::from_str::<ClaimHolder>(&json).ok(),
            Some(holder)
        );
    }
}

// The macro's expansion opens a debug file with `std::fs::File::create`, which clippy.toml
// bans; the allowance covers only the generated entry point, not `fuzz`.
#[allow(clippy::disallowed_methods)]
mod entry {
    libfuzzer_sys::fuzz_target!(|data: &[u8]| super::fuzz(data));
}
