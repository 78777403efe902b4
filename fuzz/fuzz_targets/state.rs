//! state.toml: the root-table view `csa session list` reads and the full typed view every other
//! command reads, from any bytes. Neither may panic; when the full view parses, the root view
//! must agree with it.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use csa_session::state::StateView;

fn metadata() -> &'static std::fs::Metadata {
    static META: OnceLock<std::fs::Metadata> = OnceLock::new();
    META.get_or_init(|| fs_err::metadata(std::env::temp_dir()).expect("stat"))
}

fn fuzz(data: &[u8]) {
    let dir = Path::new("/fuzz/session");
    let path = dir.join("state.toml");
    let root = StateView::parse_root(Ok((data.to_vec(), metadata().clone())), dir, &path);
    let full = std::str::from_utf8(data)
        .ok()
        .and_then(|text| toml::from_str::<StateView>(text).ok());
    if let Some(full) = full {
        let root = root.expect("the root view parses whenever the full view does");
        assert_eq!(root.meta_session_id, full.meta_session_id);
        assert_eq!(root.phase, full.phase);
        assert_eq!(root.last_accessed, full.last_accessed);
        assert_eq!(root.is_resumable(), full.is_resumable());
        let _ = full.latest_tool();
    }
}

// The macro's expansion opens a debug file with `std::fs::File::create`, which clippy.toml
// bans; the allowance covers only the generated entry point, not `fuzz`.
#[allow(clippy::disallowed_methods)]
mod entry {
    libfuzzer_sys::fuzz_target!(|data: &[u8]| super::fuzz(data));
}
