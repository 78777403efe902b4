//! run.toml (read lossily, as `csa session resume` reads it): never panics; a parsed record
//! written back reads back as the same record.
#![no_main]

use csa_session::create::RunRecord;

fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(run) = toml::from_str::<RunRecord>(&text) {
        let written = toml::to_string(&run).expect("serialize");
        let again: RunRecord = toml::from_str(&written).expect("csa's own run.toml reads back");
        assert_eq!(again, run);
    }
}

// The macro's expansion opens a debug file with `std::fs::File::create`, which clippy.toml
// bans; the allowance covers only the generated entry point, not `fuzz`.
#[allow(clippy::disallowed_methods)]
mod entry {
    libfuzzer_sys::fuzz_target!(|data: &[u8]| super::fuzz(data));
}
