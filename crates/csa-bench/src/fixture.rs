//! Generated state roots: N ended sessions plus a few live ones in one project, cached on disk.
//!
//! A fixture lives in `<cache>/<N>/` (the harness uses `target/bench-state/<N>/`):
//! - `project/`: the project directory (empty); its canonical path gives the project key;
//! - `cli-sub-agent/`: the state root passed as `--state-dir`, holding
//!   `<key>/sessions/<ULID>/` for every session ([`crate::layout`]);
//! - `fixture.toml`: the completion marker, written last, holding the generator version, the
//!   number of ended sessions and the ids of the live ones. A folder without a valid marker is a
//!   half-written fixture and is deleted and generated again.
//!
//! Invariants:
//! - Directories are 0700 and files 0600, as upstream creates them. Files are written without
//!   fsync: a crash mid-generation leaves no marker, so the next run starts over.
//! - Session ids and times are a pure function of the session count and index (a fixed
//!   pseudo-random sequence, timestamps spread over the past), so two fixtures of the same size
//!   have the same shape. Ended sessions are three quarters `retired`, one quarter `available`.
//! - Live sessions read as alive only while `csa-bench` runs: their `daemon.pid` names this
//!   process (pid and start ticks), so [`Fixture::refresh_live`] rewrites them on every run.
//! - The `sessions` directory's mtime is set [`SESSIONS_MTIME_AGE`] into the past after every
//!   change, because csa distrusts a directory mtime younger than about 2 s (the racy-timestamp
//!   rule) and would otherwise rebuild its cache on every run.

use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};
use filetime::FileTime;
use fs_err::os::unix::fs::OpenOptionsExt;
use ulid::Ulid;

use crate::layout::{
    self, SessionKind, SessionSpec, DAEMON_PID_FILE, METADATA_FILE, METADATA_TOML, RESULT_FILE,
    SESSIONS_DIR, STATE_FILE,
};
use crate::BenchError;

/// Version of the generated layout; bump it when the texts change so cached fixtures regenerate.
const GENERATOR_VERSION: i64 = 1;
/// Name of the completion marker inside a fixture folder.
const MARKER_FILE: &str = "fixture.toml";
/// Name of the state root inside a fixture folder (as upstream names its state directory).
const STATE_ROOT_DIR: &str = "cli-sub-agent";
/// Name of the project directory inside a fixture folder.
const PROJECT_DIR: &str = "project";
/// How far into the past the `sessions` directory's mtime is set.
pub const SESSIONS_MTIME_AGE: Duration = Duration::from_secs(60);
/// Spacing between the creation times of consecutive ended sessions, in seconds.
const ENDED_SPACING_SECS: i64 = 30;

/// A generated state root with one project.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The fixture folder (`<cache>/<N>`).
    pub dir: PathBuf,
    /// The state root, passed to csa as `--state-dir`.
    pub state_dir: PathBuf,
    /// The canonical project directory, passed to csa as `--cd`.
    pub project: PathBuf,
    /// `<state_dir>/<key>/sessions`.
    pub sessions_dir: PathBuf,
    /// Number of ended sessions.
    pub ended: usize,
    /// Ids of the live (`active`) sessions.
    pub live: Vec<Ulid>,
}

impl Fixture {
    /// Opens the fixture with `ended` ended and `live` live sessions cached in `dir`, if its
    /// marker is present and matches; returns `Ok(None)` when it must be generated.
    ///
    /// Errors: [`BenchError::Io`] when the project directory cannot be resolved.
    pub fn open_cached(dir: &Path, ended: usize, live: usize) -> Result<Option<Self>, BenchError> {
        let marker = dir.join(MARKER_FILE);
        let Ok(text) = fs_err::read_to_string(&marker) else {
            return Ok(None);
        };
        let Ok(table) = toml::from_str::<toml::Table>(&text) else {
            return Ok(None);
        };
        let version = table.get("generator").and_then(toml::Value::as_integer);
        let count = table.get("ended").and_then(toml::Value::as_integer);
        let ids: Option<Vec<Ulid>> = table
            .get("live")
            .and_then(toml::Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().and_then(|s| Ulid::from_string(s).ok()))
                    .collect()
            });
        match (version, count, ids) {
            (Some(GENERATOR_VERSION), Some(count), Some(ids))
                if usize::try_from(count) == Ok(ended) && ids.len() == live =>
            {
                Ok(Some(Self::at(dir, ended, ids)?))
            }
            _ => Ok(None),
        }
    }

    /// Generates the fixture in `dir` (deleting whatever is there first): `ended` ended sessions
    /// created over the past, then `live` active sessions created in the last minutes, then the
    /// marker. The live sessions are not made alive yet: call [`Fixture::refresh_live`].
    ///
    /// Errors: [`BenchError::Io`] naming the path that could not be removed, created or written.
    pub fn generate(dir: &Path, ended: usize, live: usize) -> Result<Self, BenchError> {
        if fs_err::symlink_metadata(dir).is_ok() {
            fs_err::remove_dir_all(dir)?;
        }
        create_private_dir(&dir.join(PROJECT_DIR))?;
        let project = fs_err::canonicalize(dir.join(PROJECT_DIR))?;
        let project_text = project.to_string_lossy().into_owned();
        let state_dir = dir.join(STATE_ROOT_DIR);
        let sessions_dir = state_dir
            .join(layout::project_key(&project))
            .join(SESSIONS_DIR);
        create_private_dir(&sessions_dir)?;

        let now = Utc::now();
        let seed = ended as u64;
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(4);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|worker| {
                    let (sessions_dir, project_text) = (&sessions_dir, &project_text);
                    scope.spawn(move || -> io::Result<()> {
                        for index in (worker..ended).step_by(threads) {
                            let age = TimeDelta::hours(1)
                                + TimeDelta::seconds(ENDED_SPACING_SECS * (ended - index) as i64);
                            let kind = if index % 4 == 0 {
                                SessionKind::Available
                            } else {
                                SessionKind::Retired
                            };
                            let id = session_id(now - age, seed, index as u64);
                            write_session(sessions_dir, &spec(id, kind, project_text))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|worker| match worker.join() {
                    Ok(result) => result,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
        })?;

        let live_ids: Vec<Ulid> = (0..live)
            .map(|index| {
                let age = TimeDelta::minutes((live - index) as i64);
                session_id(now - age, seed, (ended + index) as u64)
            })
            .collect();
        for &id in &live_ids {
            write_session(&sessions_dir, &spec(id, SessionKind::Active, &project_text))?;
        }
        backdate(&sessions_dir)?;

        let ids: Vec<String> = live_ids.iter().map(Ulid::to_string).collect();
        let marker = format!(
            "# Written last by csa-bench; delete this folder to regenerate.\n\
             generator = {GENERATOR_VERSION}\nended = {ended}\nlive = {}\n",
            toml::Value::from(ids),
        );
        write_private(&dir.join(MARKER_FILE), marker.as_bytes())?;
        Self::at(dir, ended, live_ids)
    }

    /// Makes the live sessions read as alive for as long as this process runs: restores their
    /// `state.toml` and `metadata.toml` if anything changed them, removes a `result.toml`, and
    /// points `daemon.pid` at this process (`std::process::id()` and its start ticks, field 22 of
    /// `/proc/self/stat`, read by `csa-process`). Files already right are not rewritten.
    ///
    /// A repaired session went back to `active` in place, which no new directory entry
    /// announces, so a cache keyed on the `sessions` directory's mtime would miss it: after a
    /// repair the mtime is always set anew ([`SESSIONS_MTIME_AGE`] into the past), which forces
    /// csa's next run to rescan. Otherwise the directory is only [settled](Fixture::settle).
    ///
    /// Errors: [`BenchError::NoStartTicks`] without `/proc`; [`BenchError::Io`] naming the path
    /// that could not be read, written or removed.
    pub fn refresh_live(&self) -> Result<(), BenchError> {
        let pid = std::process::id();
        // Upstream's daemon.pid: start ticks from /proc, whichever backend the csa measured uses.
        let ticks = csa_process::platform::stat(pid)
            .map(|s| s.start_ticks)
            .map_err(|_| BenchError::NoStartTicks { pid })?;
        let daemon = layout::daemon_pid(pid, ticks);
        let project_text = self.project.to_string_lossy();
        let mut repaired = false;
        for &id in &self.live {
            let dir = self.sessions_dir.join(id.to_string());
            repaired |= fs_err::symlink_metadata(&dir).is_err();
            create_private_dir(&dir)?;
            let state = spec(id, SessionKind::Active, &project_text).state_toml();
            repaired |= write_if_changed(&dir.join(STATE_FILE), state.as_bytes())?;
            repaired |= write_if_changed(&dir.join(METADATA_FILE), METADATA_TOML.as_bytes())?;
            write_if_changed(&dir.join(DAEMON_PID_FILE), daemon.as_bytes())?;
            let result = dir.join(RESULT_FILE);
            if fs_err::symlink_metadata(&result).is_ok() {
                fs_err::remove_file(&result)?;
                repaired = true;
            }
        }
        if repaired {
            backdate(&self.sessions_dir)?;
        } else {
            self.settle()?;
        }
        Ok(())
    }

    /// Sets the `sessions` directory's mtime [`SESSIONS_MTIME_AGE`] into the past if it is
    /// younger than that (csa itself changes it, e.g. when it first creates its own records
    /// there), so csa trusts the directory's fingerprint from its next run on; returns whether
    /// it did. The harness calls this after the first warm-up run of every case.
    ///
    /// Errors: [`BenchError::Io`] naming the directory.
    pub fn settle(&self) -> Result<bool, BenchError> {
        let modified = fs_err::metadata(&self.sessions_dir)?.modified()?;
        let young = SystemTime::now()
            .duration_since(modified)
            .map_or(true, |age| age < SESSIONS_MTIME_AGE);
        if young {
            backdate(&self.sessions_dir)?;
        }
        Ok(young)
    }

    /// Moves the `sessions` directory's mtime (to [`SESSIONS_MTIME_AGE`] before now, a new value
    /// at every call), as creating a session there would: csa's next reconcile must rescan.
    ///
    /// Errors: [`BenchError::Io`] naming the directory.
    pub fn touch_sessions(&self) -> Result<(), BenchError> {
        backdate(&self.sessions_dir)?;
        Ok(())
    }

    /// Checks that every live session is still as [`Fixture::refresh_live`] left it: `active`
    /// in `state.toml` and no `result.toml`.
    ///
    /// Errors: [`BenchError::LiveSessionEnded`] naming the first session that is not.
    pub fn check_live(&self) -> Result<(), BenchError> {
        let project_text = self.project.to_string_lossy();
        for &id in &self.live {
            let dir = self.sessions_dir.join(id.to_string());
            let state = spec(id, SessionKind::Active, &project_text).state_toml();
            let intact = fs_err::read(dir.join(STATE_FILE)).is_ok_and(|s| s == state.as_bytes())
                && fs_err::symlink_metadata(dir.join(RESULT_FILE)).is_err();
            if !intact {
                return Err(BenchError::LiveSessionEnded { id: id.to_string() });
            }
        }
        Ok(())
    }

    /// Total number of sessions (ended plus live).
    pub fn sessions(&self) -> usize {
        self.ended + self.live.len()
    }

    fn at(dir: &Path, ended: usize, live: Vec<Ulid>) -> Result<Self, BenchError> {
        let project = fs_err::canonicalize(dir.join(PROJECT_DIR))?;
        let state_dir = dir.join(STATE_ROOT_DIR);
        let sessions_dir = state_dir
            .join(layout::project_key(&project))
            .join(SESSIONS_DIR);
        Ok(Self {
            dir: dir.to_path_buf(),
            state_dir,
            project,
            sessions_dir,
            ended,
            live,
        })
    }
}

/// The spec of a generated session; its creation time comes from its id (the ULID's
/// millisecond timestamp plus sub-millisecond nanoseconds taken from its random part).
fn spec(id: Ulid, kind: SessionKind, project_path: &str) -> SessionSpec<'_> {
    let nanos = id.timestamp_ms() as i64 * 1_000_000 + (id.random() % 1_000_000) as i64;
    SessionSpec {
        id,
        kind,
        project_path,
        created_at: DateTime::from_timestamp_nanos(nanos),
    }
}

/// A ULID for a session created at `created`, its random part from `(seed, index)`.
fn session_id(created: DateTime<Utc>, seed: u64, index: u64) -> Ulid {
    let high = splitmix64(seed.rotate_left(32) ^ index);
    let low = splitmix64(high ^ 0x9e37_79b9_7f4a_7c15);
    let millis = u64::try_from(created.timestamp_millis()).unwrap_or(0);
    Ulid::from_parts(millis, (u128::from(high) << 64) | u128::from(low))
}

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014).
fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn write_session(sessions_dir: &Path, spec: &SessionSpec<'_>) -> io::Result<()> {
    let dir = sessions_dir.join(spec.id.to_string());
    create_private_dir(&dir)?;
    write_private(&dir.join(STATE_FILE), spec.state_toml().as_bytes())?;
    write_private(&dir.join(METADATA_FILE), METADATA_TOML.as_bytes())?;
    if let Some(result) = spec.result_toml() {
        write_private(&dir.join(RESULT_FILE), result.as_bytes())?;
    }
    Ok(())
}

/// Creates `path` and its missing parents with mode 0700 (`fs-err` has no `DirBuilder`, so the
/// error names the path here). An existing directory is fine.
fn create_private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|err| naming(err, "create directory", path))
}

/// Writes `bytes` to `path` (mode 0600 when created, truncated when it exists), without fsync.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    fs_err::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// Writes `bytes` to `path` unless it already holds exactly them; returns whether it wrote.
fn write_if_changed(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    match fs_err::read(path) {
        Ok(current) if current == bytes => Ok(false),
        _ => write_private(path, bytes).map(|()| true),
    }
}

/// Sets the mtime of `dir` [`SESSIONS_MTIME_AGE`] into the past.
fn backdate(dir: &Path) -> io::Result<()> {
    let past = SystemTime::now() - SESSIONS_MTIME_AGE;
    filetime::set_file_mtime(dir, FileTime::from_system_time(past))
        .map_err(|err| naming(err, "set the mtime of", dir))
}

fn naming(err: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("failed to {action} `{}`: {err}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs_err::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn generates_ended_and_live_sessions_with_private_modes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("12");
        let fixture = Fixture::generate(&dir, 12, 3).expect("generate");
        fixture.refresh_live().expect("refresh");

        let project = fs_err::canonicalize(dir.join("project")).expect("project");
        let key = project.strip_prefix("/").expect("absolute");
        assert_eq!(
            fixture.sessions_dir,
            dir.join("cli-sub-agent").join(key).join("sessions")
        );
        let mut ended = 0;
        let mut live = 0;
        for entry in fs_err::read_dir(&fixture.sessions_dir).expect("read_dir") {
            let session = entry.expect("entry").path();
            assert_eq!(mode(&session), 0o700);
            let name = session.file_name().expect("name").to_string_lossy();
            let id = Ulid::from_string(&name).expect("dir is a ULID");
            let state = fs_err::read_to_string(session.join(STATE_FILE)).expect("state");
            let table: toml::Table = toml::from_str(&state).expect("state parses");
            assert_eq!(table["meta_session_id"].as_str(), Some(&*name));
            assert_eq!(table["project_path"].as_str(), project.to_str());
            assert_eq!(mode(&session.join(STATE_FILE)), 0o600);
            assert_eq!(
                fs_err::read_to_string(session.join(METADATA_FILE)).expect("metadata"),
                METADATA_TOML
            );
            if fixture.live.contains(&id) {
                live += 1;
                assert_eq!(table["phase"].as_str(), Some("active"));
                assert!(!session.join(RESULT_FILE).exists());
                let pid = fs_err::read_to_string(session.join(DAEMON_PID_FILE)).expect("pid");
                let ticks = csa_process::platform::stat(std::process::id())
                    .expect("ticks")
                    .start_ticks;
                assert_eq!(pid, format!("{} {ticks}\n", std::process::id()));
            } else {
                ended += 1;
                assert!(matches!(
                    table["phase"].as_str(),
                    Some("retired" | "available")
                ));
                assert!(session.join(RESULT_FILE).exists());
                assert!(!session.join(DAEMON_PID_FILE).exists());
            }
        }
        assert_eq!((ended, live), (12, 3));

        let modified = fs_err::metadata(&fixture.sessions_dir)
            .expect("metadata")
            .modified()
            .expect("mtime");
        let age = SystemTime::now()
            .duration_since(modified)
            .expect("in the past");
        assert!(age >= SESSIONS_MTIME_AGE - Duration::from_secs(1));
    }

    #[test]
    fn reuses_a_complete_fixture_and_regenerates_a_partial_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("5");
        assert!(Fixture::open_cached(&dir, 5, 2).expect("open").is_none());
        let generated = Fixture::generate(&dir, 5, 2).expect("generate");
        let cached = Fixture::open_cached(&dir, 5, 2)
            .expect("open")
            .expect("cached");
        assert_eq!(cached.live, generated.live);
        assert_eq!(cached.sessions_dir, generated.sessions_dir);
        assert!(Fixture::open_cached(&dir, 6, 2).expect("open").is_none());

        fs_err::remove_file(dir.join(MARKER_FILE)).expect("remove marker");
        assert!(Fixture::open_cached(&dir, 5, 2).expect("open").is_none());
    }

    #[test]
    fn refresh_restores_a_live_session_that_was_retired() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fixture = Fixture::generate(&tmp.path().join("1"), 1, 1).expect("generate");
        let session = fixture.sessions_dir.join(fixture.live[0].to_string());
        fs_err::write(session.join(STATE_FILE), "phase = \"retired\"\n").expect("write");
        fs_err::write(session.join(RESULT_FILE), "status = \"failure\"\n").expect("write");
        let old_mtime = FileTime::from_unix_time(1_000_000_000, 0);
        filetime::set_file_mtime(&fixture.sessions_dir, old_mtime).expect("set mtime");
        fixture.refresh_live().expect("refresh");
        let mtime = fs_err::metadata(&fixture.sessions_dir).expect("metadata");
        assert_ne!(
            FileTime::from_last_modification_time(&mtime),
            old_mtime,
            "a repair must force csa to rescan"
        );
        let state = fs_err::read_to_string(session.join(STATE_FILE)).expect("state");
        assert!(state.contains("phase = \"active\""));
        assert!(!session.join(RESULT_FILE).exists());
        fixture.check_live().expect("intact");
        fs_err::write(session.join(RESULT_FILE), "status = \"failure\"\n").expect("write");
        assert!(matches!(
            fixture.check_live(),
            Err(BenchError::LiveSessionEnded { .. })
        ));
    }
}
