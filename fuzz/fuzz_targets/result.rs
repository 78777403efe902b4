//! result.toml: the head `list` reads and the full result every other command reads, from any
//! bytes. Neither may panic; a parsed result must agree with its head, and writing it back
//! (`to_toml`) must give a file that reads back as the same text.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use csa_session::result::{ResultHead, SessionResult};

fn metadata() -> &'static std::fs::Metadata {
    static META: OnceLock<std::fs::Metadata> = OnceLock::new();
    META.get_or_init(|| fs_err::metadata(std::env::temp_dir()).expect("stat"))
}

fn fuzz(data: &[u8]) {
    let path = Path::new("/fuzz/session/result.toml");
    let head = ResultHead::parse(Ok((data.to_vec(), metadata().clone())), path);
    let Some(full) = std::str::from_utf8(data)
        .ok()
        .and_then(|text| toml::from_str::<SessionResult>(text).ok())
    else {
        return;
    };
    let head = head
        .expect("the head parses whenever the full result does")
        .expect("present");
    assert_eq!(head.status, full.status);
    assert_eq!(head.exit_code, full.exit_code);
    assert_eq!(head.tool, full.tool);
    // Text idempotence rather than value equality: `other` may hold NaN floats.
    let text = full.to_toml();
    let again: SessionResult = toml::from_str(&text).expect("csa's own result.toml reads back");
    assert_eq!(again.to_toml(), text);
}

// The macro's expansion opens a debug file with `std::fs::File::create`, which clippy.toml
// bans; the allowance covers only the generated entry point, not `fuzz`.
#[allow(clippy::disallowed_methods)]
mod entry {
    libfuzzer_sys::fuzz_target!(|data: &[u8]| super::fuzz(data));
}
