//! The one atomic-write helper of the store. Every file csa writes goes through [`write_atomic`],
//! relative to a directory opened without following links ([`StoreDir`], crate::dirfd), so a
//! directory swapped for a link mid-write changes nothing outside it.
//!
//! Protocol (as jj's `persist_temp_file`, and the classic write-fsync-rename of ext4 guidance):
//! 1. create a temp file `.tmp-<pid>.<ticks>-<random>` in the *same directory* as the target
//!    (`openat(O_CREAT | O_EXCL)`, so it never follows or reuses a symlink), with the requested
//!    mode; `<pid>` and `<ticks>` name the writing process (its start time in clock ticks), so
//!    that a later command can tell a crashed writer's leftover from a write in progress
//!    ([`crate::leftovers`]);
//! 2. write all bytes and `fsync` the temp file;
//! 3. publish: [`Publish::Replace`] `renameat(2)`s it over the target (which replaces a symlink
//!    rather than writing through it); [`Publish::CreateNew`] `linkat(2)`s it to the target,
//!    which fails with `EEXIST` when the target exists, so an existing file is never replaced,
//!    then unlinks the temp name;
//! 4. `fsync` the directory (its descriptor) so the new name is durable.
//!
//! What a crash (kill -9, power loss) leaves behind at each step:
//! - during 1–2: the target is untouched; a stray `.tmp-*` file may remain (names starting with
//!   `.` are never sessions, and readers ignore them) until a later command sweeps it;
//! - during 3: `rename` and `link` are atomic: the target is either the old file (or absent) or
//!   the complete new one, never a mix; after a `link`, a stray `.tmp-*` hard link may remain;
//! - during 4: after a kill -9 the new name is there (the kernel has it); only a power loss
//!   before the directory fsync can lose the new name, leaving the old state, never a torn file.
//!
//! Each step is preceded by a [`failpoint!`](crate::failpoint!) (`atomic::create_temp`,
//! `atomic::write`, `atomic::fsync`, `atomic::publish`, `atomic::sync_dir`), so the reliability
//! tests crash or fail every write of every path at each step.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;

use crate::dirfd::{Kind, StoreDir};
use crate::failpoint;

/// How [`write_atomic`] publishes the new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Replace the target if it exists (`rename(2)`), keeping the existing file's permission
    /// bits.
    Replace,
    /// Create the target only if it does not exist (`link(2)`); fails with
    /// [`io::ErrorKind::AlreadyExists`] otherwise.
    CreateNew,
    /// As [`Publish::Replace`], without steps 2's and 4's `fsync`s: for a file whose content
    /// means nothing after a reboot (csa's membership record names processes of this boot). A
    /// kill -9 still leaves the old file or the new one; a power loss may leave the old one, or
    /// an empty file, which readers take as absent.
    ReplaceBootScoped,
}

/// Name prefix of every temp file [`write_atomic`] creates.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Atomically writes `bytes` to the file `name` of `dir`. A new file gets permission bits
/// `mode` (e.g. `0o600`) whatever the umask; a file replaced ([`Publish::Replace`]) keeps its
/// own.
///
/// # Errors
/// Any I/O error of the steps above, naming the path; with [`Publish::CreateNew`], an error of
/// kind [`io::ErrorKind::AlreadyExists`] when `dir/name` exists (nothing was changed). After an
/// error the target is as it was; the temp file is removed.
pub fn write_atomic(
    dir: &StoreDir,
    name: &str,
    bytes: &[u8],
    mode: u32,
    publish: Publish,
) -> io::Result<()> {
    let target = dir.join(name);
    let mode = match publish {
        // lstat: a symlink's own bits are meaningless; it is replaced by a file of `mode`.
        Publish::Replace | Publish::ReplaceBootScoped => match dir.symlink_metadata(name) {
            Ok(meta) if meta.kind == Kind::File => meta.mode,
            _ => mode,
        },
        Publish::CreateNew => mode,
    };
    let durable = publish != Publish::ReplaceBootScoped;
    let (mut file, temp) = failpoint!("atomic::create_temp")
        .and_then(|()| create_temp(dir, mode))
        .map_err(|e| with_path(e, "create a temp file in", dir.path()))?;
    // From here, any failure removes the temp file.
    let temp_path = dir.join(&temp);
    let written = (|| {
        // The umask may have narrowed the mode at creation; set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| with_path(e, "set permissions of", &temp_path))?;
        failpoint!("atomic::write")
            .and_then(|()| file.write_all(bytes))
            .map_err(|e| with_path(e, "write", &temp_path))?;
        failpoint!("atomic::fsync")
            .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
            .map_err(|e| with_path(e, "fsync", &temp_path))?;
        failpoint!("atomic::publish").map_err(|e| with_path(e, "publish", &target))?;
        match publish {
            Publish::Replace | Publish::ReplaceBootScoped => dir
                .rename(&temp, dir, name)
                .map_err(|e| with_path(e, "rename a temp file to", &target)),
            Publish::CreateNew => dir.hard_link(&temp, dir, name),
        }
    })();
    let published = written.is_ok() && publish != Publish::CreateNew;
    if !published {
        // Unpublished, or linked (the temp name is a second link to the target's inode).
        if let Err(err) = crate::dirfd::gone_is_fine(dir.remove_file(&temp)) {
            tracing::warn!(%err, "could not remove a temp file");
        }
    }
    written?;
    if durable {
        sync_dir(dir)?;
    }
    tracing::debug!(
        path = %target.display(),
        bytes = bytes.len(),
        how = match publish {
            Publish::Replace => "temp, fsync, rename, fsync dir",
            Publish::CreateNew => "temp, fsync, link, fsync dir",
            Publish::ReplaceBootScoped => "temp, rename (boot-scoped: no fsync)",
        },
        "wrote"
    );
    Ok(())
}

/// Creates a new temp file in `dir` (`O_CREAT | O_EXCL`, mode `mode`): returns it and its name.
fn create_temp(dir: &StoreDir, mode: u32) -> io::Result<(std::fs::File, String)> {
    let mut last = None;
    for _ in 0..16 {
        let name = format!("{}{}", temp_prefix(), random_suffix());
        match dir.create_new(OsStr::new(&name), mode) {
            Ok(file) => return Ok((file, name)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
}

/// Six random characters of Crockford base32 (from a ULID's random part), as tempfile's names
/// have.
fn random_suffix() -> String {
    let random = ulid::Ulid::new().to_string();
    random[random.len() - 6..].to_owned()
}

/// `fsync`s a directory, making the names created or removed in it durable.
///
/// # Errors
/// Any I/O error of the fsync, naming the path.
pub fn sync_dir(dir: &StoreDir) -> io::Result<()> {
    failpoint!("atomic::sync_dir").map_err(|e| with_path(e, "fsync", dir.path()))?;
    dir.sync()
}

/// `.tmp-<pid>.<start>-` for this process: [`owner_tag`].
fn temp_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| format!("{TEMP_PREFIX}{}-", owner_tag()))
}

/// `<pid>.<start>` naming this process in the names of the files and builds it leaves while
/// it writes: its start ticks, or the portable backend's start time with its unit's letter
/// (csa-process `StartTime::tag`); `0` when unknown.
pub(crate) fn owner_tag() -> String {
    let pid = std::process::id();
    let start = csa_process::start_time(pid).map_or_else(|| "0".to_owned(), |s| s.tag());
    format!("{pid}.{start}")
}

/// Whether the process a `.tmp-<pid>.<start>-…` name (or a `<pid>.<start>` owner tag,
/// [`owner_tag`]) names is gone: not running, a zombie, or a different process under a reused
/// pid (another start time in a comparable unit). An unknown start (`0`), one that cannot be
/// compared, and names in any other form count as not gone: fails closed, so a write in
/// progress is never disturbed.
pub(crate) fn owner_gone(tag: &str) -> bool {
    let Some((pid, start)) = tag.split_once('.') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if start != "0" && csa_process::StartTime::from_tag(start).is_none() {
        return false;
    }
    match csa_process::probe(pid) {
        csa_process::Probe::Invalid | csa_process::Probe::Exited { .. } => true,
        csa_process::Probe::Running { start_time } => {
            let recorded = csa_process::StartTime::from_tag(start);
            matches!(
                recorded.zip(start_time),
                Some((recorded, now)) if csa_process::StartTime::same_process(recorded, now) == Some(false)
            )
        }
    }
}

/// The owner tag (`<pid>.<ticks>`) of a temp file name `.tmp-<pid>.<ticks>-…` this module
/// made; `None` for any other name (a rollback's set-aside result, another program's file).
pub(crate) fn temp_owner(name: &str) -> Option<&str> {
    let (tag, _) = name.strip_prefix(TEMP_PREFIX)?.split_once('-')?;
    tag.contains('.').then_some(tag)
}

/// Wraps an error from a crate that does not name paths (tempfile) so that it does.
pub(crate) fn with_path(err: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("failed to {op} `{}`: {err}", path.display()),
    )
}

#[cfg(test)]
// Tests lay out and inspect their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::dirfd::test_dir;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replace_writes_bytes_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = test_dir(dir.path());
        write_atomic(&d, "f", b"one", 0o600, Publish::Replace).expect("write");
        let path = dir.path().join("f");
        assert_eq!(fs_err::metadata(&path).expect("stat").mode() & 0o777, 0o600);
        // A rewrite keeps the mode the file has now (here set by its owner), not `mode`.
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_atomic(&d, "f", b"two", 0o600, Publish::Replace).expect("rewrite");
        assert_eq!(fs_err::read(&path).expect("read"), b"two");
        assert_eq!(fs_err::metadata(&path).expect("stat").mode() & 0o777, 0o640);
        assert_eq!(
            fs_err::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn create_new_never_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = test_dir(dir.path());
        write_atomic(&d, "r", b"real", 0o600, Publish::CreateNew).expect("first");
        let err = write_atomic(&d, "r", b"fake", 0o600, Publish::CreateNew)
            .expect_err("second must fail");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs_err::read(dir.path().join("r")).expect("read"), b"real");
        assert_eq!(
            fs_err::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn replace_does_not_write_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        fs_err::write(&outside, b"keep").expect("write");
        std::os::unix::fs::symlink(&outside, dir.path().join("f")).expect("symlink");
        let d = test_dir(dir.path());
        write_atomic(&d, "f", b"new", 0o600, Publish::Replace).expect("write");
        assert_eq!(fs_err::read(&outside).expect("read"), b"keep");
    }

    #[test]
    fn sweep_removes_only_temp_files_of_gone_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A process that has exited and been reaped: its pid names nothing (or another process
        // with other start ticks).
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("reap");
        let me = std::process::id();
        let mine = owner_tag();
        // Our pid with a start a minute earlier, in the backend's unit: reused.
        let earlier = match csa_process::start_time(me).expect("start time") {
            csa_process::StartTime::Ticks(t) => {
                let hz = csa_process::clock_ticks_per_second().expect("CLK_TCK");
                t.saturating_sub(60 * hz).to_string()
            }
            csa_process::StartTime::Micros(us) => format!("u{}", us.saturating_sub(60_000_000)),
            csa_process::StartTime::BootSeconds(s) => format!("b{}", s.saturating_sub(60)),
        };
        let names = [
            format!(".tmp-{dead}.1-abc"),       // gone writer: removed
            format!(".tmp-{mine}-abc"),         // live writer (us): kept
            format!(".tmp-{me}.{earlier}-abc"), // our pid, other start: reused, removed
            format!(".tmp-{me}.0-abc"),         // unknown start, pid running: kept
            ".tmp-rollback-01M7YCZAQ6TZ9E7YGFW7ZMM2X7".to_owned(), // not a temp: kept
            ".tmpXYZ".to_owned(),               // another program's: kept
        ];
        for n in &names {
            fs_err::write(dir.path().join(n), b"x").expect("write");
        }
        let removed = crate::leftovers::sweep_temp_files(&test_dir(dir.path())).expect("sweep");
        let mut left: Vec<String> = fs_err::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            names[1].clone(),
            names[3].clone(),
            names[4].clone(),
            names[5].clone(),
        ];
        want.sort();
        assert_eq!(left, want, "removed {removed:?}");
    }

    #[test]
    fn temp_names_carry_the_writer() {
        let prefix = temp_prefix();
        let tag = prefix
            .strip_prefix(TEMP_PREFIX)
            .and_then(|r| r.strip_suffix('-'))
            .expect("tag");
        assert!(!owner_gone(tag), "this process is alive: {prefix}");
    }
}
