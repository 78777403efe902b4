//! csa's active record: `.csa-active/.ended` and `.csa-active/.scan.toml`, written from the input
//! and read through `ActiveRecord::known_ended` and `is_current`. Never panics; `.ended` gives
//! sorted ULIDs only; a scan body is current exactly when it names the directory's fingerprint.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use csa_session::active::{ActiveRecord, Fingerprint};
use csa_session::paths::is_ulid;

struct Fixture {
    dir: tempfile::TempDir,
    fingerprint: Fingerprint,
    encoded: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = ActiveRecord::new(dir.path());
        record.ensure_dir().expect("mkdir");
        let fingerprint = Fingerprint::of(dir.path()).expect("stat").expect("exists");
        record.record_scan(&fingerprint, SystemTime::now() + Duration::from_secs(3));
        let text = fs_err::read_to_string(dir.path().join(".csa-active/.scan.toml")).expect("read");
        let table: toml::Table = toml::from_str(&text).expect("toml");
        let encoded = table["fingerprint"].as_str().expect("string").to_owned();
        Fixture {
            dir,
            fingerprint,
            encoded,
        }
    })
}

fn fuzz(data: &[u8]) {
    let f = fixture();
    let record = ActiveRecord::new(f.dir.path());
    let active = f.dir.path().join(".csa-active");
    fs_err::write(active.join(".ended"), data).expect("write");
    let ended = record.known_ended();
    assert!(ended.iter().all(|id| is_ulid(id)));
    assert!(ended.windows(2).all(|w| w[0] <= w[1]));
    fs_err::write(active.join(".scan.toml"), data).expect("write");
    let names_it = std::str::from_utf8(data)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.get("fingerprint").and_then(|v| v.as_str()) == Some(f.encoded.as_str()));
    assert_eq!(record.is_current(&f.fingerprint), names_it);
}

// The macro's expansion opens a debug file with `std::fs::File::create`, which clippy.toml
// bans; the allowance covers only the generated entry point, not `fuzz`.
#[allow(clippy::disallowed_methods)]
mod entry {
    libfuzzer_sys::fuzz_target!(|data: &[u8]| super::fuzz(data));
}
