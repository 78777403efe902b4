//! Deleting sessions (`csa session delete`, `csa session clean`): the one predicate that decides
//! whether a session may be deleted ([`decide`]) and the crash-safe deletion protocol
//! ([`delete_session`]), plus the sweep of what a crashed deletion leaves ([`remove_leftovers`]).
//!
//! **The rule.** A session is deleted only while holding its [`ReconcileLock`] (taken without
//! waiting: busy means another process is deciding about it, so it is skipped), after re-reading
//! its state.toml and deciding again with fresh liveness data under the lock. An Active session
//! whose owner is alive, and an ended one with an owned live process, are never deleted; an
//! Active session whose owner is dead only with `force`. A state.toml that does not parse is an
//! error and the session is left as it is. A session directory that is a symbolic link is
//! refused: nothing is ever deleted through a symlink. Every step goes through directory
//! descriptors ([`crate::dirfd`]): `sessions/` opened from the state root and the session
//! directory opened without following a link, then locked.
//!
//! **The protocol**, under the lock, and what a kill -9 (or power loss) leaves at each step:
//!
//! 1. `renameat2(RENAME_NOREPLACE)` `sessions/<ULID>` to `sessions/.deleting-<ULID>`, then check
//!    that what moved is the directory that was locked (same inode): if something was swapped in
//!    at the name (a link), it is moved back and nothing is deleted. Entries of `sessions/` whose
//!    name starts with `.` are never sessions (docs/format.md § 1), so from this instant the
//!    session is listed by no command, csa's or upstream's: a half-deleted session is never seen.
//!    Killed before it: nothing changed (the kernel releases the flock; `.reconcile.lock` may
//!    have been created, empty). `rename` is atomic: the session is either in place, whole, or
//!    moved aside, whole.
//! 2. `fsync` `sessions/`, making the rename durable. Killed before it: after a power loss the
//!    session may be back in place, whole, as if the deletion had not started.
//! 3. Remove the session's entry in the active record (`sessions/.csa-active/<ULID>`, present
//!    for a session that may be Active). Killed before it: a stale entry, which reconcile drops
//!    once its directory has been gone for an hour ([`ActiveRecord::remove_if_orphaned`]); a
//!    stale line in `.ended` is dropped by the next scan, which the changed `sessions/` triggers.
//! 4. Remove the renamed directory through the descriptor its lock holds: every entry but
//!    `.reconcile.lock` (subdirectories opened with `O_NOFOLLOW` and emptied the same way, links
//!    removed with `unlinkat`, never followed: [`StoreDir::remove_tree`], so nothing outside the
//!    directory can be removed, whatever is swapped in meanwhile), then `.reconcile.lock`, then
//!    the directory (`unlinkat(AT_REMOVEDIR)` by name in `sessions/`, which fails on a link). Killed during it: a partly removed `.deleting-<ULID>`, still not a session;
//!    [`remove_leftovers`] (run by `csa session clean`) removes it. Removing the lock file last
//!    is what lets that sweep tell a deletion in progress (lock file present and held) from a
//!    crashed one (present and free) and from one that has only its `rmdir` left (no lock file,
//!    no entries), so it never races a live deleter.
//! 5. Release the lock. The lock file was removed with the directory. That is safe here,
//!    unlike deleting a lock file in place (see [`crate::lock`]): after step 1 the path
//!    `sessions/<ULID>/.reconcile.lock` has no directory, so no process can create and lock a
//!    new file there; a process that opened the old file before step 1 gets the lock on the
//!    removed inode once we release it, and then finds no state.toml to act on.

use std::io;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::active::ActiveRecord;
use crate::atomic::sync_dir;
use crate::dirfd::{gone_is_fine, Kind, StoreDir};
use crate::error::StoreError;
use crate::liveness::{self, LivenessContext, Verdict};
use crate::lock::{ReconcileLock, RECONCILE_LOCK};
use crate::paths::{self, OpenSession, Project};
use crate::state::{Phase, SessionState, StateView};

/// Prefix of a session directory being deleted, in `sessions/` (followed by the session ULID).
pub const DELETING_PREFIX: &str = ".deleting-";

/// What, besides the session's own files, decides whether it may be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Also delete an Active session whose owner is dead (`csa session delete --force`).
    pub force: bool,
    /// Only sessions whose `last_accessed` is strictly before this instant
    /// (`csa session clean --older-than`); `None`: any age.
    pub last_accessed_before: Option<DateTime<Utc>>,
}

/// Why a session is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// Active and its owner is alive. Never deleted. The string names the deciding signal.
    Running(String),
    /// Foreign: its owner (or, ended, a process of it) is on another machine or in another PID
    /// namespace, which cannot be checked from here, so it counts as alive. Never deleted.
    Foreign {
        /// The session's phase.
        phase: Phase,
        /// The deciding signal.
        signal: String,
    },
    /// Active and its owner is dead: deleted only with [`Policy::force`]. The string says why it
    /// is dead.
    Orphaned(String),
    /// Ended, but a process of the session (daemon.pid or a held tool lock) is still alive.
    /// Never deleted. The string names the signal.
    EndedAlive {
        /// The session's phase.
        phase: Phase,
        /// The deciding signal.
        signal: String,
    },
    /// Used at or after [`Policy::last_accessed_before`].
    Recent(DateTime<Utc>),
}

/// The deletion predicate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// May be deleted; the string says why (phase, last use, liveness).
    Delete(String),
    /// Must be kept.
    Keep(Keep),
}

/// The one predicate deciding whether a session may be deleted (`delete` and `clean` both use
/// it, through [`delete_session`]), from its state (`state`, read from `dir`), its liveness and
/// `policy`. Liveness is [`liveness::assess`] with `active` set for an Active session; for an
/// ended one only an owned live process counts, so the fresh logs of a session that has just
/// finished do not keep it.
///
/// Returns the decision and the liveness warnings (unparsable daemon.pid or lock bodies, each
/// naming its file). Never fails: unreadable liveness files count as alive (fail closed).
pub fn decide(
    ctx: &LivenessContext,
    dir: &StoreDir,
    id: &str,
    state: &StateView,
    policy: &Policy,
) -> (Decision, Vec<String>) {
    let last = state.last_accessed;
    if let Some(cutoff) = policy.last_accessed_before {
        if last >= cutoff {
            return (Decision::Keep(Keep::Recent(last)), Vec::new());
        }
    }
    let active = state.phase == Phase::Active;
    let assessment = liveness::assess(ctx, dir, id, active);
    let decision = match (assessment.verdict, active) {
        (Verdict::Foreign(signal), _) => Decision::Keep(Keep::Foreign {
            phase: state.phase,
            signal,
        }),
        (Verdict::Alive(why), true) => Decision::Keep(Keep::Running(why)),
        (Verdict::Alive(signal), false) => Decision::Keep(Keep::EndedAlive {
            phase: state.phase,
            signal,
        }),
        (Verdict::Dead { reason, .. }, true) if !policy.force => {
            Decision::Keep(Keep::Orphaned(reason))
        }
        (Verdict::Dead { reason, .. }, true) => {
            Decision::Delete(format!("active, owner dead ({reason}); forced"))
        }
        (Verdict::Dead { .. }, false) => Decision::Delete(format!(
            "{}, last accessed {}",
            state.phase.as_str(),
            last.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )),
    };
    (decision, assessment.warnings)
}

/// What [`delete_session`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The session was deleted; the string is the predicate's reason.
    Deleted(String),
    /// Dry run: the session would be deleted (decided without the lock; the real run decides
    /// again under it).
    WouldDelete(String),
    /// The predicate kept it.
    Kept(Keep),
    /// Another process holds the session's `.reconcile.lock`: nothing was done.
    Busy,
    /// The session directory disappeared while it was being looked at: another process
    /// deleted it.
    Gone,
}

/// [`delete_session`]'s outcome plus the liveness warnings met on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// What was done.
    pub outcome: Outcome,
    /// Problems worth telling the user that are not errors, each naming its file.
    pub warnings: Vec<String>,
}

/// Errors of a deletion. The session is left as it was, except for
/// [`DeleteError::Incomplete`].
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// state.toml could not be read or parsed (the file is left byte-identical), or another
    /// store error; the message names the file.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The session directory is a symbolic link (or not a directory): csa never deletes through
    /// a link.
    #[error("{}: is a symbolic link, not a session directory: refusing to delete through it", path.display())]
    NotADirectory {
        /// The session path.
        path: PathBuf,
    },

    /// The session was moved aside (it is no longer listed) but removing its files failed; the
    /// next `csa session clean` retries.
    #[error("session moved aside to {} but not fully removed", path.display())]
    Incomplete {
        /// The `.deleting-<ULID>` directory left behind.
        path: PathBuf,
        /// Why the removal failed (naming the file).
        #[source]
        source: io::Error,
    },
}

/// Deletes the session `id` of `project` if [`decide`] allows it under `policy`.
///
/// First a lock-free pre-check (reads only, so a refused or dry-run session is left
/// byte-identical); then, unless `dry_run`, the session's [`ReconcileLock`] is taken without
/// waiting (busy: [`Outcome::Busy`]), state.toml is re-read, the predicate is asked again with
/// fresh liveness data, and the session is removed by the protocol in the module docs. A session
/// whose directory disappears on the way (another process deleted it) is [`Outcome::Gone`].
///
/// # Errors
/// [`DeleteError::NotADirectory`] when the session path is a symbolic link or not a directory;
/// [`DeleteError::Store`] when state.toml is missing or does not parse ([`StoreError::MissingState`],
/// [`StoreError::InvalidState`]) or for an I/O error before the session was moved aside (taking
/// the lock, the rename, the fsync of `sessions/`), in which case nothing was deleted;
/// [`DeleteError::Incomplete`] when the files could not all be removed after the move.
pub fn delete_session(
    ctx: &LivenessContext,
    project: &Project,
    id: &str,
    policy: &Policy,
    dry_run: bool,
) -> Result<Deletion, DeleteError> {
    let session = match project.open(id) {
        Ok(session) => session,
        Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(deletion(Outcome::Gone, Vec::new()))
        }
        Err(StoreError::Insecure(insecure))
            if matches!(
                insecure.problem,
                crate::secure::Problem::Symlink | crate::secure::Problem::NotADirectory
            ) =>
        {
            return Err(DeleteError::NotADirectory {
                path: insecure.path,
            })
        }
        Err(err) => return Err(err.into()),
    };
    match attempt(ctx, &session, policy, dry_run) {
        Err(err) if !matches!(err, DeleteError::Incomplete { .. }) && is_gone(&session) => {
            Ok(deletion(Outcome::Gone, Vec::new()))
        }
        other => other,
    }
}

fn attempt(
    ctx: &LivenessContext,
    session: &OpenSession,
    policy: &Policy,
    dry_run: bool,
) -> Result<Deletion, DeleteError> {
    let (dir, id) = (&session.dir, session.id.as_str());
    // 1. Lock-free pre-check: refusals and dry runs write nothing, not even the lock file.
    let state = SessionState::load(dir)?;
    let (decision, mut warnings) = decide(ctx, dir, id, &state.view, policy);
    match decision {
        Decision::Keep(keep) => return Ok(deletion(Outcome::Kept(keep), warnings)),
        Decision::Delete(reason) if dry_run => {
            return Ok(deletion(Outcome::WouldDelete(reason), warnings))
        }
        Decision::Delete(_) => {}
    }
    // 2. Lock, never waiting.
    let Some(lock) = ReconcileLock::try_acquire(dir)? else {
        return Ok(deletion(Outcome::Busy, warnings));
    };
    // 3. Re-check from scratch under the lock, with fresh liveness data: the locked directory
    //    must still be the session at `sessions/<ULID>` (not deleted or moved meanwhile, nor
    //    swapped for a link).
    if !session.in_place()? {
        return if is_gone(session) {
            Ok(deletion(Outcome::Gone, warnings))
        } else {
            Err(DeleteError::NotADirectory {
                path: session.sessions.join(id),
            })
        };
    }
    let state = SessionState::load(lock.dir())?;
    let (decision, fresh) = decide(&ctx.refreshed(), lock.dir(), id, &state.view, policy);
    for w in fresh {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    match decision {
        Decision::Keep(keep) => Ok(deletion(Outcome::Kept(keep), warnings)),
        Decision::Delete(reason) => {
            remove_session(&lock, &session.sessions, id)?;
            Ok(deletion(Outcome::Deleted(reason), warnings))
        }
    }
}

/// Whether nothing is left at the session's name in `sessions/` (`fstatat` without following).
fn is_gone(session: &OpenSession) -> bool {
    matches!(
        session.sessions.symlink_metadata(&session.id),
        Err(e) if e.kind() == io::ErrorKind::NotFound
    )
}

impl From<io::Error> for DeleteError {
    fn from(err: io::Error) -> Self {
        DeleteError::Store(StoreError::Io(err))
    }
}

fn deletion(outcome: Outcome, warnings: Vec<String>) -> Deletion {
    Deletion { outcome, warnings }
}

/// Steps 1–4 of the protocol (module docs) for the session `lock` protects, which the caller
/// has decided to delete under that lock. `sessions` is its project's open `sessions/`.
///
/// The rename is by name, so what it moves is checked: if something was swapped in at
/// `sessions/<ULID>` (a link) since the check, it is moved back and nothing is deleted. The
/// removal then walks the locked directory's own descriptor, never a path.
fn remove_session(lock: &ReconcileLock, sessions: &StoreDir, id: &str) -> Result<(), DeleteError> {
    let aside = format!("{DELETING_PREFIX}{id}");
    crate::failpoint!("delete::rename", "rename", &sessions.join(id))?;
    sessions.rename_noreplace(id, sessions, &aside)?;
    if !sessions.same_dir(&aside, lock.dir()).unwrap_or(false) {
        // Not the directory we locked: put back what we moved, delete nothing.
        return Err(match sessions.rename_noreplace(&aside, sessions, id) {
            Ok(()) => DeleteError::NotADirectory {
                path: sessions.join(id),
            },
            Err(source) => DeleteError::Incomplete {
                path: sessions.join(&aside),
                source,
            },
        });
    }
    if let Err(err) = sync_dir(sessions) {
        // The move is not known to be durable: put the session back and report the error, so
        // that a failed delete leaves the session as it was (and is never mistaken for one
        // that another process deleted).
        return Err(match sessions.rename_noreplace(&aside, sessions, id) {
            Ok(()) => DeleteError::Store(StoreError::Io(err)),
            Err(_) => DeleteError::Incomplete {
                path: sessions.join(&aside),
                source: err,
            },
        });
    }
    if let Err(err) = ActiveRecord::new(sessions).remove(id, lock) {
        // A stale entry costs reconcile one check until it is pruned (module docs, step 3).
        tracing::warn!(%err, "could not remove a deleted session's active-record entry");
    }
    remove_aside(sessions, &aside, lock.dir()).map_err(|source| DeleteError::Incomplete {
        path: sessions.join(&aside),
        source,
    })
}

/// Removes a directory moved aside (`.deleting-<ULID>`, the entry `name` of `sessions`, open as
/// `dir`): every entry but `.reconcile.lock` (subdirectories through descriptors,
/// [`StoreDir::remove_tree`]: a link is removed, never followed), then `.reconcile.lock`, then
/// the directory itself. The lock file goes last, so a `.deleting-*` directory whose deleter
/// is still at work always has it (held), and one without it is empty but for a pending
/// `rmdir` (see `sweep`). Something already gone counts as removed.
///
/// A command that opened the session directory before it was moved aside can still create its
/// `.reconcile.lock` in it (through its descriptor) after that file was removed; it then finds
/// the session gone (`OpenSession::in_place`) and does nothing, but the `rmdir` fails with
/// `ENOTEMPTY`: the removal is repeated, a few times. Regression: found by
/// `concurrent_cleans_delete_each_session_exactly_once`, where one of four cleans reported an
/// error for a session another clean had opened.
fn remove_aside(sessions: &StoreDir, name: &str, dir: &StoreDir) -> io::Result<()> {
    const ATTEMPTS: usize = 8;
    for attempt in 1.. {
        remove_entries(sessions, name, dir)?;
        match gone_is_fine(sessions.remove_dir(name)) {
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty && attempt < ATTEMPTS => {}
            other => return other,
        }
    }
    Ok(())
}

/// One pass of [`remove_aside`]: the entries, `.reconcile.lock` last, then the `rmdir`'s
/// failpoint.
fn remove_entries(sessions: &StoreDir, name: &str, dir: &StoreDir) -> io::Result<()> {
    for entry in dir.entries()? {
        if entry.name == RECONCILE_LOCK {
            continue;
        }
        crate::failpoint!("delete::remove_entry", "remove", &dir.join(&entry.name))?;
        // The type of the entry itself, never of a symlink's target.
        if entry.kind == Kind::Dir {
            dir.remove_tree(&entry.name)?;
        } else {
            gone_is_fine(dir.remove_file(&entry.name))?;
        }
    }
    crate::failpoint!(
        "delete::remove_lock_file",
        "remove",
        &dir.join(RECONCILE_LOCK)
    )?;
    gone_is_fine(dir.remove_file(RECONCILE_LOCK))?;
    crate::failpoint!("delete::remove_dir", "remove", &sessions.join(name))
}

/// What [`remove_leftovers`] did with one leftover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftoverAction {
    /// Removed.
    Removed,
    /// Dry run: would be removed.
    WouldRemove,
    /// A deletion in progress holds its lock: left to it.
    SkippedBusy,
    /// Could not be removed (see the error).
    Error,
}

/// One `.deleting-<ULID>` entry found in a project's `sessions/`.
#[derive(Debug, Clone)]
pub struct Leftover {
    /// Its path.
    pub path: PathBuf,
    /// What was done.
    pub action: LeftoverAction,
    /// For [`LeftoverAction::Error`], the error (naming the file).
    pub error: Option<String>,
}

/// Removes what crashed deletions left in `project`'s `sessions/`: every `.deleting-<ULID>`
/// directory (or symbolic link, which is removed without being followed) whose deletion is not in
/// progress. A deletion in progress holds the flock of the `.reconcile.lock` inside the
/// directory; that file is opened without creating it and never through a symlink, and a held
/// lock leaves the directory to its deleter. Other entries (sessions, csa's records, upstream's
/// files, anything else that merely starts with `.deleting-`) are not touched. With `dry_run`
/// nothing is removed and each leftover is reported [`LeftoverAction::WouldRemove`].
///
/// # Errors
/// The error of listing `sessions/` (other than its absence); errors removing one leftover are
/// reported in its [`Leftover`] and the others are still processed.
pub fn remove_leftovers(project: &Project, dry_run: bool) -> io::Result<Vec<Leftover>> {
    let Some(sessions) = project.open_sessions()? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in sessions.entries()? {
        let Some(id) = entry
            .name_str()
            .and_then(|n| n.strip_prefix(DELETING_PREFIX))
        else {
            continue;
        };
        // The type of the entry itself, never of a link's target.
        if paths::is_ulid(id) && matches!(entry.kind, Kind::Dir | Kind::Symlink) {
            found.push((entry.name_str().unwrap_or_default().to_owned(), entry.kind));
        }
    }
    found.sort();
    let mut out = Vec::with_capacity(found.len());
    for (name, kind) in found {
        let (action, error) = if dry_run {
            (LeftoverAction::WouldRemove, None)
        } else {
            match sweep(&sessions, &name, kind) {
                Ok(true) => (LeftoverAction::Removed, None),
                Ok(false) => (LeftoverAction::SkippedBusy, None),
                Err(err) => (LeftoverAction::Error, Some(err.to_string())),
            }
        };
        out.push(Leftover {
            path: sessions.join(&name),
            action,
            error,
        });
    }
    Ok(out)
}

/// Removes the leftover `name` of `sessions` unless a deletion in progress holds its lock.
/// `Ok(false)`: busy.
///
/// A deleter holds the flock of the leftover's `.reconcile.lock` until it is done and removes
/// that file last (`remove_aside`), so: a held lock means a deletion in progress (skip it); a
/// free one, a crashed deleter (take it and remove the rest); no lock file, a directory that is
/// empty but for its `rmdir` (only `rmdir` it), unless it still has entries, which no deleter
/// of csa's leaves without the lock file (then remove them too).
fn sweep(sessions: &StoreDir, name: &str, kind: Kind) -> io::Result<bool> {
    if kind == Kind::Symlink {
        return gone_is_fine(sessions.remove_file(name)).map(|()| true);
    }
    let dir = match sessions.open_dir(name) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        // No longer a directory (a link swapped in): the entry itself goes.
        Err(_) if !sessions.symlink_metadata(name).is_ok_and(|m| m.is_dir()) => {
            return gone_is_fine(sessions.remove_file(name)).map(|()| true)
        }
        Err(e) => return Err(e),
    };
    match try_lock_existing(&dir)? {
        LockState::Held => Ok(false),
        // Held while removing, so that a concurrent sweep sees it busy.
        LockState::Taken(_lock) => remove_aside(sessions, name, &dir).map(|()| true),
        LockState::Missing => match gone_is_fine(sessions.remove_dir(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                remove_aside(sessions, name, &dir).map(|()| true)
            }
            Err(e) => Err(e),
        },
    }
}

/// The lock of a leftover, as [`try_lock_existing`] found it.
enum LockState {
    /// No lock file (or a symlink or non-regular file in its place: not a lock of ours).
    Missing,
    /// Another process holds it.
    Held,
    /// Now held by us.
    Taken(Flock<std::fs::File>),
}

/// Tries to flock the existing `.reconcile.lock` of `dir` without creating it (`O_NOFOLLOW`,
/// `O_NONBLOCK` so that a FIFO in its place cannot block the open).
fn try_lock_existing(dir: &StoreDir) -> io::Result<LockState> {
    let path = dir.join(RECONCILE_LOCK);
    let file = match dir.open_existing_nofollow(RECONCILE_LOCK) {
        Ok(file) => file,
        Err((rustix::io::Errno::NOENT | rustix::io::Errno::LOOP, _)) => {
            return Ok(LockState::Missing)
        }
        Err((_, err)) => return Err(err),
    };
    let is_file = file
        .metadata()
        .map_err(|e| crate::atomic::with_path(e, "stat", &path))?
        .is_file();
    if !is_file {
        return Ok(LockState::Missing);
    }
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(LockState::Taken(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(LockState::Held),
        Err((_, errno)) => Err(crate::atomic::with_path(
            io::Error::from(errno),
            "flock",
            &path,
        )),
    }
}

#[cfg(test)]
// Tests lay out their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::dirfd::test_dir;

    const ID: &str = "01M7YCZAQ6TZ9E7YGFW7ZMM2X7";

    fn project_with_session(phase: &str) -> (tempfile::TempDir, Project) {
        let root = tempfile::tempdir().expect("tempdir");
        let project = Project::new(root.path(), "p");
        let dir = project.session_dir(ID);
        fs_err::create_dir_all(dir.join("output")).expect("mkdir");
        fs_err::write(
            dir.join("state.toml"),
            format!(
                "meta_session_id = \"{ID}\"\nproject_path = \"/p\"\n\
                 created_at = \"2026-01-01T00:00:00Z\"\nlast_accessed = \"2026-01-01T00:00:00Z\"\n\
                 phase = \"{phase}\"\n"
            ),
        )
        .expect("write");
        fs_err::write(dir.join("output/x"), "x").expect("write");
        (root, project)
    }

    #[test]
    fn deletes_an_ended_session_and_its_record_entry() {
        let (_root, project) = project_with_session("retired");
        let sessions = test_dir(&project.sessions_dir);
        let record = ActiveRecord::new(&sessions);
        record.add(ID).expect("add");
        let ctx = LivenessContext::new();
        let d = delete_session(&ctx, &project, ID, &Policy::default(), false).expect("delete");
        assert!(matches!(d.outcome, Outcome::Deleted(_)), "{d:?}");
        assert!(!project.session_dir(ID).exists());
        assert!(record.ids().expect("ids").is_empty());
        let names: Vec<_> = fs_err::read_dir(&project.sessions_dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(".csa-active")]);
    }

    #[test]
    fn active_dead_needs_force_and_cutoff_keeps_recent() {
        let (_root, project) = project_with_session("active");
        let ctx = LivenessContext::new();
        let d = delete_session(&ctx, &project, ID, &Policy::default(), false).expect("decide");
        assert!(
            matches!(d.outcome, Outcome::Kept(Keep::Orphaned(_))),
            "{d:?}"
        );
        let old = "2025-01-01T00:00:00Z".parse().expect("date");
        let policy = Policy {
            force: true,
            last_accessed_before: Some(old),
        };
        let d = delete_session(&ctx, &project, ID, &policy, false).expect("decide");
        assert!(matches!(d.outcome, Outcome::Kept(Keep::Recent(_))), "{d:?}");
        assert!(project.session_dir(ID).is_dir());
        let force = Policy {
            force: true,
            last_accessed_before: None,
        };
        let d = delete_session(&ctx, &project, ID, &force, true).expect("dry run");
        assert!(matches!(d.outcome, Outcome::WouldDelete(_)), "{d:?}");
        assert!(project.session_dir(ID).is_dir());
        let d = delete_session(&ctx, &project, ID, &force, false).expect("delete");
        assert!(matches!(d.outcome, Outcome::Deleted(_)), "{d:?}");
    }

    #[test]
    fn never_deletes_through_a_symlink() {
        let (root, project) = project_with_session("retired");
        let real = root.path().join("elsewhere");
        fs_err::rename(project.session_dir(ID), &real).expect("move");
        std::os::unix::fs::symlink(&real, project.session_dir(ID)).expect("symlink");
        let ctx = LivenessContext::new();
        let err =
            delete_session(&ctx, &project, ID, &Policy::default(), false).expect_err("must refuse");
        assert!(matches!(err, DeleteError::NotADirectory { .. }), "{err}");
        assert!(real.join("state.toml").is_file());
        assert!(
            !real.join(RECONCILE_LOCK).exists(),
            "no lock taken through it"
        );
    }

    #[test]
    fn leftovers_are_removed_unless_their_deleter_holds_the_lock() {
        let (root, project) = project_with_session("retired");
        let outside = root.path().join("outside");
        fs_err::create_dir(&outside).expect("mkdir");
        fs_err::write(outside.join("keep"), "keep").expect("write");
        let crashed = project
            .sessions_dir
            .join(format!("{DELETING_PREFIX}01M7YCZAQ6TZ9E7YGFW7ZMM2X8"));
        fs_err::create_dir_all(crashed.join("output")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, crashed.join("output/link")).expect("symlink");
        let busy = project
            .sessions_dir
            .join(format!("{DELETING_PREFIX}01M7YCZAQ6TZ9E7YGFW7ZMM2X9"));
        fs_err::create_dir(&busy).expect("mkdir");
        let held = ReconcileLock::try_acquire(&test_dir(&busy))
            .expect("io")
            .expect("free");
        // A deleter that had only its rmdir left: no lock file, no entries.
        let emptied = project
            .sessions_dir
            .join(format!("{DELETING_PREFIX}01M7YCZAQ6TZ9E7YGFW7ZMM2XA"));
        fs_err::create_dir(&emptied).expect("mkdir");
        let other = project.sessions_dir.join(".deleting-notaulid");
        fs_err::create_dir(&other).expect("mkdir");

        let dry = remove_leftovers(&project, true).expect("sweep");
        assert_eq!(dry.len(), 3);
        assert!(dry.iter().all(|l| l.action == LeftoverAction::WouldRemove));
        assert!(crashed.exists());

        let done = remove_leftovers(&project, false).expect("sweep");
        let actions: Vec<_> = done.iter().map(|l| l.action).collect();
        assert_eq!(
            actions,
            [
                LeftoverAction::Removed,
                LeftoverAction::SkippedBusy,
                LeftoverAction::Removed
            ]
        );
        assert!(!emptied.exists());
        assert!(!crashed.exists());
        assert!(busy.exists());
        assert!(other.exists(), "not a leftover of ours");
        assert_eq!(fs_err::read(outside.join("keep")).expect("read"), b"keep");
        assert!(project.session_dir(ID).join("state.toml").is_file());
        drop(held);
        let done = remove_leftovers(&project, false).expect("sweep");
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].action, LeftoverAction::Removed);
        assert!(!busy.exists());
    }
}
