//! The quarantine: a way out for a session whose state.toml cannot be parsed.
//!
//! csa never rewrites, repairs or deletes a file it cannot parse, so such a session can be
//! neither finalized nor deleted. `csa session delete --force` moves it, whole and unchanged,
//! to `sessions/.quarantine/<ULID>-<UTC time>/` ([`quarantine_session`]), where nothing lists or
//! reconciles it (entries of `sessions/` starting with `.` are never sessions, and project walks
//! never descend into `sessions/`), and `csa doctor` lists it ([`list`]) until the user
//! inspects and removes it by hand.
//!
//! **The rule.** Only when no process of the session lives: [`liveness::assess`] as for an
//! Active session (its daemon.pid, its `locks/*.lock` pids and held flocks, its recent progress;
//! anything unreadable counts as alive, so it fails closed), decided once without the lock and
//! again under the session's [`ReconcileLock`] (taken without waiting) with fresh data, after
//! re-reading state.toml: one that parses by then is left to the ordinary deletion.
//!
//! **The move**, under the lock: `rename(2)` of `sessions/<ULID>` into `sessions/.quarantine/`
//! (created 0700 if missing; refused when it is a symbolic link, another user's or writable by
//! others), within one filesystem, so it is atomic: a kill -9 leaves the session either in place
//! or quarantined, whole. Then `sessions/` and `.quarantine/` are fsynced and the session's
//! active-record entry is removed (a stale entry is pruned by reconcile an hour later). The
//! lock file moves with the directory, like the rest; as for a deletion, no process can lock a
//! new file at the old path, which no longer has a directory.

use std::io;
use std::path::PathBuf;

use chrono::Utc;

use crate::active::ActiveRecord;
use crate::atomic::sync_dir;
use crate::dirfd::{Kind, StoreDir};
use crate::error::StoreError;
use crate::liveness::{self, LivenessContext, Verdict};
use crate::lock::ReconcileLock;
use crate::paths::{OpenSession, Project};
use crate::state::SessionState;

/// Directory of quarantined sessions, in a project's `sessions/`.
pub const QUARANTINE_DIR: &str = ".quarantine";

/// Whether `err`, from reading a session's state.toml ([`SessionState::load`]), says the file is
/// there but unusable: it does not parse (not UTF-8, not TOML, a key missing or mistyped), or it
/// is larger than csa reads, or not a regular file (a FIFO, a device). A missing state.toml, or
/// an I/O error, is not corrupt: it may be a session being created, or a passing failure.
pub fn is_corrupt(err: &StoreError) -> bool {
    match err {
        StoreError::InvalidState { .. } => true,
        StoreError::Io(e) => e.kind() == io::ErrorKind::InvalidData,
        _ => false,
    }
}

/// What [`quarantine_session`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The session was moved, whole, to this directory.
    Quarantined(PathBuf),
    /// A process of the session may be alive (the liveness signal, or a foreign owner):
    /// nothing was done.
    Alive(String),
    /// state.toml parses now: nothing was done (delete the session the ordinary way).
    Parses,
    /// Another process holds the session's `.reconcile.lock`: nothing was done.
    Busy,
    /// The session directory disappeared meanwhile (another process deleted or moved it).
    Gone,
}

/// [`quarantine_session`]'s outcome plus the liveness warnings met on the way (each naming its
/// file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// What was done.
    pub outcome: Outcome,
    /// Problems worth telling the user that are not errors.
    pub warnings: Vec<String>,
}

/// Moves the session `id` of `project`, whose state.toml is corrupt ([`is_corrupt`]), to the
/// project's quarantine, if no process of it lives (see the module docs for the rule and the
/// protocol).
///
/// # Errors
/// [`StoreError::Insecure`] when the session directory or `.quarantine/` is a symbolic link,
/// another user's or writable by others; [`StoreError::Io`] for the lock, `mkdir`, the rename or
/// an fsync of `sessions/` (after a failed fsync the session is moved back when it can be), each
/// naming the path. Nothing is rewritten in any case.
pub fn quarantine_session(
    ctx: &LivenessContext,
    project: &Project,
    id: &str,
) -> Result<Quarantine, StoreError> {
    let session = match project.open(id) {
        Ok(session) => session,
        Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(with(Outcome::Gone, Vec::new()))
        }
        Err(err) => return Err(err),
    };
    let dir = &session.dir;
    // 1. Without the lock: a live session is refused before anything is created.
    let assessment = liveness::assess(ctx, dir, id, true);
    let mut warnings = assessment.warnings;
    if let Verdict::Alive(why) | Verdict::Foreign(why) = assessment.verdict {
        return Ok(Quarantine {
            outcome: Outcome::Alive(why),
            warnings,
        });
    }
    // 2. Lock, never waiting.
    let lock = match ReconcileLock::try_acquire(dir) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Ok(with(Outcome::Busy, warnings)),
        Err(_) if is_gone(&session) => return Ok(with(Outcome::Gone, warnings)),
        Err(err) => return Err(err),
    };
    // 3. Again under the lock, from scratch, in the directory still at `sessions/<ULID>`.
    if !session.in_place()? {
        return Ok(with(Outcome::Gone, warnings));
    }
    match SessionState::load(lock.dir()) {
        Ok(_) => return Ok(with(Outcome::Parses, warnings)),
        Err(err) if is_corrupt(&err) => {}
        Err(_) if is_gone(&session) => return Ok(with(Outcome::Gone, warnings)),
        Err(err) => return Err(err),
    }
    let fresh = liveness::assess(&ctx.refreshed(), lock.dir(), id, true);
    for w in fresh.warnings {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    if let Verdict::Alive(why) | Verdict::Foreign(why) = fresh.verdict {
        return Ok(with(Outcome::Alive(why), warnings));
    }
    let to = move_aside(&lock, &session.sessions, id)?;
    Ok(with(Outcome::Quarantined(to), warnings))
}

fn with(outcome: Outcome, warnings: Vec<String>) -> Quarantine {
    Quarantine { outcome, warnings }
}

fn is_gone(session: &OpenSession) -> bool {
    matches!(
        session.sessions.symlink_metadata(&session.id),
        Err(e) if e.kind() == io::ErrorKind::NotFound
    )
}

/// The move (module docs), under `lock`, of session `id` of the open `sessions`. The rename is
/// by name, so what moved is checked to be the locked directory; anything else swapped in at
/// the name is moved back, and nothing is quarantined.
fn move_aside(lock: &ReconcileLock, sessions: &StoreDir, id: &str) -> Result<PathBuf, StoreError> {
    let quarantine = sessions.create_private_dir(QUARANTINE_DIR)?;
    let name = format!("{id}-{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let to = quarantine.join(&name);
    // An existing name is an error, not a loss.
    crate::failpoint!("quarantine::rename", "rename", &sessions.join(id))?;
    sessions.rename_noreplace(id, &quarantine, &name)?;
    if !quarantine.same_dir(&name, lock.dir()).unwrap_or(false) {
        if let Err(back) = quarantine.rename_noreplace(&name, sessions, id) {
            tracing::warn!(%back, "could not move back what was swapped in for a session");
        }
        return Err(crate::secure::refused(
            &sessions.join(id),
            crate::secure::Problem::Symlink,
        ));
    }
    if let Err(err) = sync_dir(sessions).and_then(|()| sync_dir(&quarantine)) {
        // Not known to be durable: put it back and report, so a failure leaves it as it was.
        if let Err(back) = quarantine.rename_noreplace(&name, sessions, id) {
            tracing::warn!(%back, "could not move a quarantined session back");
        }
        return Err(err.into());
    }
    if let Err(err) = ActiveRecord::new(sessions).remove(id, lock) {
        tracing::warn!(%err, "could not remove a quarantined session's active-record entry");
    }
    Ok(to)
}

/// The quarantined sessions of `project`: the directories in its `sessions/.quarantine/`,
/// sorted by name (`<ULID>-<UTC time>`). None when there is no quarantine.
///
/// # Errors
/// The error of listing `.quarantine/` other than its absence, naming the path.
pub fn list(project: &Project) -> io::Result<Vec<PathBuf>> {
    let Some(sessions) = project.open_sessions()? else {
        return Ok(Vec::new());
    };
    let Some(dir) = sessions.open_dir_if_exists(QUARANTINE_DIR)? else {
        return Ok(Vec::new());
    };
    let mut found: Vec<PathBuf> = dir
        .entries()?
        .into_iter()
        .filter(|e| e.kind == Kind::Dir)
        .map(|e| dir.join(&e.name))
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    const ID: &str = "01M7YCZAQ6TZ9E7YGFW7ZMM2X7";

    fn project_with_corrupt_session() -> (tempfile::TempDir, Project) {
        let root = tempfile::tempdir().expect("tempdir");
        let project = Project::new(root.path(), "p");
        let dir = project.session_dir(ID);
        fs_err::create_dir_all(&dir).expect("mkdir");
        for d in [
            root.path().join("p"),
            project.sessions_dir.clone(),
            dir.clone(),
        ] {
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        fs_err::write(dir.join("state.toml"), "phase = [").expect("write");
        fs_err::write(dir.join("output.log"), "keep me").expect("write");
        filetime::set_file_mtime(
            dir.join("output.log"),
            filetime::FileTime::from_unix_time(1_000_000_000, 0),
        )
        .expect("backdate");
        (root, project)
    }

    #[test]
    fn a_dead_corrupt_session_moves_whole_and_is_listed() {
        let (_root, project) = project_with_corrupt_session();
        let ctx = LivenessContext::new();
        let err = SessionState::load(&crate::dirfd::test_dir(&project.session_dir(ID)))
            .expect_err("corrupt");
        assert!(is_corrupt(&err));
        let q = quarantine_session(&ctx, &project, ID).expect("quarantine");
        let Outcome::Quarantined(to) = q.outcome else {
            panic!("{q:?}");
        };
        assert!(!project.session_dir(ID).exists());
        assert_eq!(
            fs_err::read(to.join("state.toml")).expect("read"),
            b"phase = ["
        );
        assert_eq!(
            fs_err::read(to.join("output.log")).expect("read"),
            b"keep me"
        );
        assert_eq!(list(&project).expect("list"), std::slice::from_ref(&to));
        assert!(to
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{ID}-"))));
        assert!(
            project.session_ids().expect("ids").is_empty(),
            "not a session"
        );
    }

    #[test]
    fn fresh_progress_counts_as_alive() {
        let (_root, project) = project_with_corrupt_session();
        fs_err::write(project.session_dir(ID).join("output.log"), "fresh").expect("write");
        let q = quarantine_session(&LivenessContext::new(), &project, ID).expect("decide");
        assert!(matches!(q.outcome, Outcome::Alive(_)), "{q:?}");
        assert!(project.session_dir(ID).join("state.toml").exists());
    }
}
