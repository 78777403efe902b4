//! `sessions/cooldown-marker.toml`: when the last session of a project completed. Upstream reads
//! it to space out launches; csa writes it after a successful reconcile. It is a cache: it is
//! replaced whole (atomically), whatever the old one contained.

use std::io;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::atomic::{write_atomic, Publish};
use crate::dirfd::StoreDir;

/// File name of the marker, in the project's `sessions/` directory.
pub const COOLDOWN_MARKER: &str = "cooldown-marker.toml";

#[derive(Serialize)]
struct CooldownMarker<'a> {
    session_id: &'a str,
    completed_at: DateTime<Utc>,
}

/// Replaces the `cooldown-marker.toml` of the open `sessions/` directory `sessions_dir` with
/// `session_id` and `completed_at`.
///
/// # Errors
/// Any I/O error of the atomic write, naming the path.
pub fn write_cooldown_marker(
    sessions_dir: &StoreDir,
    session_id: &str,
    completed_at: DateTime<Utc>,
) -> io::Result<()> {
    let body = toml::to_string(&CooldownMarker {
        session_id,
        completed_at,
    })
    .map_err(io::Error::other)?;
    write_atomic(
        sessions_dir,
        COOLDOWN_MARKER,
        body.as_bytes(),
        0o600,
        Publish::Replace,
    )
}
