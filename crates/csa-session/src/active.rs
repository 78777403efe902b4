//! csa's crash-safe record of which sessions may be active, so that reconcile's cost follows the
//! number of active sessions rather than all sessions.
//!
//! Layout, per project: `sessions/.csa-active/<ULID>` (an empty file per session that may be
//! active), `sessions/.csa-active/.scan.toml` (the fingerprint of `sessions/` at the last scan)
//! and `sessions/.csa-active/.ended` (the sessions a scan found ended, so that a rescan after a
//! new session reads only the new sessions' state). Upstream neither reads nor writes any of it (names starting with `.` are not sessions).
//!
//! Invariants:
//! - **No missing entry.** csa adds a session's entry (and fsyncs the directory) *before* the
//!   session becomes active, and removes it only under the session's [`ReconcileLock`], after
//!   re-reading state.toml and finding the session ended. A stale entry costs one check.
//! - **Sessions created by other writers are found.** Creating a session creates an entry in
//!   `sessions/`, which changes that directory's mtime. [`Fingerprint`] (device, inode, mtime in
//!   nanoseconds) of `sessions/` is recorded *before* a full scan lists it; when the fingerprint
//!   is unchanged at the next run, no session was created since, and only the recorded sessions
//!   are checked. Timestamps are coarse (the kernel stamps mtimes from a clock that ticks every
//!   few milliseconds, some filesystems every second or two), so a change made in the same tick
//!   as the scan could keep the same mtime: a fingerprint younger than [`SETTLE`] when the scan
//!   starts is not recorded, and the next run scans again (git's "racy timestamp" rule).
//! - **Rescans are incremental.** A scan reads the state of sessions that are neither recorded
//!   nor known to have ended, so its cost follows the number of new sessions (plus one
//!   `readdir` of `sessions/`). Knowing that a session ended stays true until it becomes active
//!   again, and csa records a session before it does that.
//! - **Limitation:** a session that another writer moves from an ended phase back to `active`
//!   in place (no new directory entry) is found by the next `--full` scan, which reads every
//!   session's state and rebuilds the record.
//! - Deleting `.csa-active/` is always safe: the next run finds no fingerprint and scans.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::atomic::{sync_dir, write_atomic, Publish};
use crate::dirfd::{Kind, StoreDir};
use crate::lock::ReconcileLock;

/// Name of the record directory inside `sessions/`.
pub const ACTIVE_DIR: &str = ".csa-active";
const SCAN_FILE: &str = ".scan.toml";
/// Sessions a scan found ended, one ULID per line, sorted.
const ENDED_FILE: &str = ".ended";
/// How old the `sessions/` mtime must be, when a scan starts, for its fingerprint to be trusted.
pub const SETTLE: Duration = Duration::from_secs(2);
/// An entry whose session directory does not exist is removed once it is this old (a session
/// being created by `csa run` has its entry before its directory appears).
const ORPHAN_ENTRY_AGE: Duration = Duration::from_secs(3600);

/// Largest `.scan.toml` read (bytes); csa writes about a hundred.
const MAX_SCAN_BYTES: u64 = 4 << 10;
/// Largest `.ended` read (bytes): 27 per ended session, so about 600,000 sessions.
const MAX_ENDED_BYTES: u64 = 16 << 20;

/// The UTF-8 text of the record's file `name`, read with [`StoreDir::read_capped`] (bounded,
/// and not blocked by a FIFO); `None` when it cannot be read, is larger than `max` or is not
/// UTF-8: the record is a cache, and a damaged file only means a slower next scan. Regression:
/// a 100 MB `.scan.toml`, or one linked to /dev/zero, was read whole (tests/cli/corpus.rs).
fn read_text(dir: &StoreDir, name: &str, max: u64) -> Option<String> {
    let (bytes, _) = dir.read_capped(name, max).ok()?;
    String::from_utf8(bytes).ok()
}

/// Identity and modification time of a directory, as `dev:ino:sec.nsec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    mtime_sec: i64,
    mtime_nsec: i64,
}

impl Fingerprint {
    /// The fingerprint of the open directory `dir` now (`fstat`).
    ///
    /// # Errors
    /// The `fstat`'s error, naming the directory.
    pub fn of(dir: &StoreDir) -> io::Result<Self> {
        let meta = dir.meta()?;
        let since = meta
            .modified
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Ok(Fingerprint {
            dev: meta.dev,
            ino: meta.ino,
            mtime_sec: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            mtime_nsec: i64::from(since.subsec_nanos()),
        })
    }

    fn mtime(&self) -> SystemTime {
        let nanos = u32::try_from(self.mtime_nsec).unwrap_or(0);
        match u64::try_from(self.mtime_sec) {
            Ok(secs) => UNIX_EPOCH + Duration::new(secs, nanos),
            Err(_) => UNIX_EPOCH,
        }
    }

    /// Whether the mtime was at least [`SETTLE`] old at `scan_start`.
    pub fn is_settled(&self, scan_start: SystemTime) -> bool {
        scan_start
            .duration_since(self.mtime())
            .is_ok_and(|age| age >= SETTLE)
    }

    fn encode(&self) -> String {
        format!(
            "{}:{}:{}.{:09}",
            self.dev, self.ino, self.mtime_sec, self.mtime_nsec
        )
    }
}

/// The record of one project (`<sessions>/.csa-active`), reached through the project's open
/// `sessions/` directory.
#[derive(Debug, Clone, Copy)]
pub struct ActiveRecord<'a> {
    sessions: &'a StoreDir,
}

impl<'a> ActiveRecord<'a> {
    /// The record of the project whose `sessions/` is open as `sessions`.
    pub fn new(sessions: &'a StoreDir) -> Self {
        ActiveRecord { sessions }
    }

    /// The project's `sessions/` directory this record belongs to.
    pub fn sessions(&self) -> &StoreDir {
        self.sessions
    }

    /// The record directory, opened without following a link and verified; `None` when missing.
    fn dir(&self) -> io::Result<Option<StoreDir>> {
        Ok(self.sessions.open_private_dir_if_exists(ACTIVE_DIR)?)
    }

    /// The ids with an entry. A missing record has none.
    ///
    /// # Errors
    /// Any I/O error reading the record directory other than its absence (a refused one
    /// included, naming it).
    pub fn ids(&self) -> io::Result<Vec<String>> {
        let Some(dir) = self.dir()? else {
            return Ok(Vec::new());
        };
        let mut ids = Vec::new();
        for entry in dir.entries()? {
            if let Some(name) = entry.name_str() {
                if crate::paths::is_ulid(name) {
                    ids.push(name.to_owned());
                }
            }
        }
        Ok(ids)
    }

    /// Whether `id` has an entry.
    pub fn contains(&self, id: &str) -> bool {
        crate::paths::is_ulid(id) && matches!(self.dir(), Ok(Some(dir)) if dir.exists(id))
    }

    /// Adds an entry for `id` (idempotent) and makes it durable (fsync of the record directory).
    /// Creates the record directory (0700) when missing.
    ///
    /// # Errors
    /// Any I/O error creating the directory or the entry, naming the path.
    pub fn add(&self, id: &str) -> io::Result<()> {
        let created = crate::failpoint!("active::make_dir")
            .map_err(|e| crate::atomic::with_path(e, "create", &self.sessions.join(ACTIVE_DIR)))
            .and_then(|()| self.sessions.mkdir(ACTIVE_DIR))?;
        if created {
            sync_dir(self.sessions)?;
        }
        let dir = self.sessions.open_private_dir(ACTIVE_DIR)?;
        crate::failpoint!("active::add")
            .map_err(|e| crate::atomic::with_path(e, "create", &dir.join(id)))?;
        dir.touch(id)?;
        sync_dir(&dir)
    }

    /// Removes the entry of the session `lock` protects, which the caller has found ended after
    /// re-reading its state under that lock.
    ///
    /// # Errors
    /// Any I/O error of the unlink other than absence.
    pub fn remove(&self, id: &str, lock: &ReconcileLock) -> io::Result<()> {
        debug_assert!(lock.session_dir().ends_with(id));
        let path = self.sessions.join(ACTIVE_DIR).join(id);
        crate::failpoint!("active::remove", "remove", &path)?;
        let Some(dir) = self.dir()? else {
            return Ok(());
        };
        crate::dirfd::gone_is_fine(dir.remove_file(id))
    }

    /// Removes the entry of `id` if its session directory does not exist and the entry is older
    /// than an hour (a session being created has its entry before its directory). Best effort.
    pub fn remove_if_orphaned(&self, id: &str, now: SystemTime) {
        let Ok(Some(dir)) = self.dir() else {
            return;
        };
        let old = dir.symlink_metadata(id).is_ok_and(|m| {
            now.duration_since(m.modified)
                .is_ok_and(|age| age > ORPHAN_ENTRY_AGE)
        });
        if old {
            if let Err(err) = dir.remove_file(id) {
                tracing::warn!(%err, "could not remove an orphaned active-record entry");
            }
        }
    }

    /// Whether the recorded fingerprint equals `current`.
    pub fn is_current(&self, current: &Fingerprint) -> bool {
        let Ok(Some(dir)) = self.dir() else {
            return false;
        };
        let Some(text) = read_text(&dir, SCAN_FILE, MAX_SCAN_BYTES) else {
            return false;
        };
        let Ok(table) = text.parse::<toml::Table>() else {
            return false;
        };
        table.get("fingerprint").and_then(|v| v.as_str()) == Some(current.encode().as_str())
    }

    /// The sessions a past scan found ended, sorted; empty when unknown (a missing or damaged
    /// file is only a slower next scan). Valid whatever the fingerprint: csa records a session
    /// before moving it from an ended phase back to active.
    pub fn known_ended(&self) -> Vec<String> {
        let Ok(Some(dir)) = self.dir() else {
            return Vec::new();
        };
        let Some(text) = read_text(&dir, ENDED_FILE, MAX_ENDED_BYTES) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = text
            .lines()
            .filter(|l| crate::paths::is_ulid(l))
            .map(str::to_owned)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Replaces the list of sessions known to have ended with `ended` (sorted). Best effort.
    pub fn record_ended(&self, ended: &[String]) {
        let mut body = String::with_capacity(ended.len() * 27);
        for id in ended {
            body.push_str(id);
            body.push('\n');
        }
        let result = self.ensure_dir().and_then(|dir| {
            write_atomic(&dir, ENDED_FILE, body.as_bytes(), 0o600, Publish::Replace)
        });
        if let Err(err) = result {
            tracing::debug!(%err, "could not record the ended sessions");
        }
    }

    /// Creates the record directory (0700) if missing, and opens it (verified).
    ///
    /// # Errors
    /// The error of `mkdir` other than `EEXIST`, or of the open, naming the path.
    pub fn ensure_dir(&self) -> io::Result<StoreDir> {
        Ok(self.sessions.create_private_dir(ACTIVE_DIR)?)
    }

    /// Records `fingerprint`, taken before a full scan that added an entry for every session it
    /// found active or unreadable. Does nothing unless the fingerprint had settled when the scan
    /// started. Best effort: a failure only means the next run scans again.
    pub fn record_scan(&self, fingerprint: &Fingerprint, scan_start: SystemTime) {
        if !fingerprint.is_settled(scan_start) {
            return;
        }
        let body = format!(
            "# csa's cache: fingerprint of sessions/ at the last full scan. Safe to delete.\nfingerprint = \"{}\"\n",
            fingerprint.encode()
        );
        let result = self.ensure_dir().and_then(|dir| {
            write_atomic(&dir, SCAN_FILE, body.as_bytes(), 0o600, Publish::Replace)
        });
        if let Err(err) = result {
            tracing::debug!(%err, "could not record the scan fingerprint");
        }
    }
}

/// The sessions in `sessions` (a project's `sessions/`) that may be Active, unsorted: the
/// record's entries that are session directories (not a session being created, or an entry
/// left by a crash), plus, unless the record's fingerprint of `sessions/` is current, every
/// session not known to have ended. The same trust reconcile places in the record (module
/// documentation). Reads the record and at most `sessions/` and the known-ended list; writes
/// nothing.
///
/// # Errors
/// An I/O error reading `sessions/` or the record, naming the path.
pub fn may_be_active(sessions: &StoreDir) -> io::Result<Vec<String>> {
    let record = ActiveRecord::new(sessions);
    let fingerprint = Fingerprint::of(sessions)?;
    let mut ids: std::collections::BTreeSet<String> = record
        .ids()?
        .into_iter()
        .filter(|id| {
            sessions
                .symlink_metadata(id)
                .is_ok_and(|m| m.kind == Kind::Dir)
        })
        .collect();
    if !record.is_current(&fingerprint) {
        let ended = record.known_ended();
        ids.extend(
            crate::paths::session_ids_in(sessions)?
                .into_iter()
                .filter(|id| ended.binary_search(id).is_err()),
        );
    }
    Ok(ids.into_iter().collect())
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::dirfd::test_dir;

    const ID: &str = "01M7YCZAQ6TZ9E7YGFW7ZMM2X7";

    #[test]
    fn add_list_remove() {
        let sessions = tempfile::tempdir().expect("tempdir");
        let sessions_dir = test_dir(sessions.path());
        let record = ActiveRecord::new(&sessions_dir);
        assert!(record.ids().expect("ids").is_empty());
        record.add(ID).expect("add");
        record.add(ID).expect("add twice");
        assert_eq!(record.ids().expect("ids"), [ID]);
        let session_dir = sessions_dir.create_private_dir(ID).expect("mkdir");
        let lock = ReconcileLock::try_acquire(&session_dir)
            .expect("io")
            .expect("free");
        record.remove(ID, &lock).expect("remove");
        assert!(record.ids().expect("ids").is_empty());
    }

    #[test]
    fn known_ended_round_trips_and_ignores_garbage() {
        let sessions = tempfile::tempdir().expect("tempdir");
        let sessions_dir = test_dir(sessions.path());
        let record = ActiveRecord::new(&sessions_dir);
        assert!(record.known_ended().is_empty());
        let ids = vec![ID.to_owned(), "01M7YCZAQ6TZ9E7YGFW7ZMM2X8".to_owned()];
        record.record_ended(&ids);
        assert_eq!(record.known_ended(), ids);
        fs_err::write(
            sessions.path().join(ACTIVE_DIR).join(ENDED_FILE),
            "garbage\n../x\n",
        )
        .expect("write");
        assert!(record.known_ended().is_empty());
        assert!(
            record.ids().expect("ids").is_empty(),
            ".ended is not an entry"
        );
    }

    #[test]
    fn fingerprint_is_recorded_only_once_settled() {
        let sessions = tempfile::tempdir().expect("tempdir");
        let sessions_dir = test_dir(sessions.path());
        let record = ActiveRecord::new(&sessions_dir);
        let fp = Fingerprint::of(&sessions_dir).expect("stat");
        record.record_scan(&fp, SystemTime::now());
        assert!(!record.is_current(&fp), "a fresh mtime must not be trusted");
        record.record_scan(&fp, SystemTime::now() + Duration::from_secs(3));
        assert!(record.is_current(&fp));
        // A new session changes the directory's fingerprint.
        filetime::set_file_mtime(sessions.path(), filetime::FileTime::from_unix_time(1, 0))
            .expect("touch");
        let changed = Fingerprint::of(&sessions_dir).expect("stat");
        assert!(!record.is_current(&changed));
    }
}
