//! `turn-end.toml`: csa's own record of how a turn ended, so that the outcome survives a full
//! disk. (Not to be confused with upstream's `daemon-completion.toml`, crate::completion.)
//!
//! `csa run`'s supervisor reserves the record before the agent starts: [`RESERVED_BYTES`] of
//! blanks, written (not fsynced), so its blocks are allocated. When the agent's turn ends, the
//! supervisor writes the turn's outcome (the result it is about to publish, and the phase to
//! move to) *into those blocks* ([`Reservation::fill`]: `pwrite` at offset 0, padded with
//! blanks), which needs no new space on filesystems that overwrite in place (ext4, xfs, tmpfs;
//! copy-on-write ones such as btrfs may still need space for the new extent), then finalizes
//! the turn as usual and removes the record. If finalizing fails (ENOSPC while publishing
//! result.toml or rewriting state.toml), the filled record is fsynced and stays
//! ([`Reservation::persist`]); once the owner is gone, reconcile publishes the recorded result
//! and moves the session to the recorded phase, so the session ends with the agent's real exit
//! status, not a synthetic failure.
//!
//! Format: TOML, then blanks. A record that is all blanks is reserved but not filled: it says
//! nothing. Keys: `turn` (the turn it ends), `phase` (`available`), `termination_reason`
//! (optional), `result` (the whole result.toml text, upstream's format). Upstream never reads it.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dirfd::StoreDir;
use crate::result::SessionResult;
use crate::state::Phase;

/// File name of the record, in the session directory.
pub const TURN_END_FILE: &str = "turn-end.toml";
/// Bytes reserved for the record (a result's summary quotes at most about 8 KiB of logs).
pub const RESERVED_BYTES: usize = 16 << 10;

/// The outcome of a turn, as its supervisor recorded it before finalizing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnEnd {
    /// The turn it ends (state.toml's `turn_count` while it ran).
    pub turn: u32,
    /// The phase to move to.
    pub phase: Phase,
    /// The termination reason to set, if any.
    pub termination_reason: Option<String>,
    /// The result to publish, as result.toml text.
    pub result: String,
}

impl TurnEnd {
    /// The recorded result.
    ///
    /// # Errors
    /// `InvalidData` when the recorded text is not a result.
    pub fn session_result(&self) -> io::Result<SessionResult> {
        toml::from_str(&self.result)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    /// Reads the record of the session directory `dir`: `Ok(None)` when there is none, or it
    /// is reserved but not filled.
    ///
    /// # Errors
    /// An unreadable file, or one that does not parse (`InvalidData`), naming the path.
    pub fn load(dir: &StoreDir) -> io::Result<Option<Self>> {
        let path = dir.join(TURN_END_FILE);
        let bytes = match dir.read_capped(TURN_END_FILE, 1 << 20) {
            Ok((bytes, _)) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&bytes);
        if text.trim().is_empty() {
            return Ok(None);
        }
        toml::from_str(&text).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: does not parse ({})",
                    path.display(),
                    crate::state::one_line(&e)
                ),
            )
        })
    }
}

/// A reserved record, held open by the supervisor.
#[derive(Debug)]
pub struct Reservation {
    file: File,
    path: PathBuf,
    dir: StoreDir,
}

impl Reservation {
    /// Reserves the record in the session directory `dir` (replacing a previous turn's):
    /// [`RESERVED_BYTES`] of blanks, not fsynced. Never through a symlink (`O_NOFOLLOW`), and
    /// always in `dir` (the reservation keeps a descriptor of it for [`Reservation::persist`]
    /// and [`Reservation::remove`]).
    ///
    /// # Errors
    /// The open or write errors (`ENOSPC` on a full disk: the turn should not start), naming
    /// the path.
    pub fn create(dir: &StoreDir) -> io::Result<Self> {
        let path = dir.join(TURN_END_FILE);
        crate::failpoint!("turn_end::reserve", "write", &path)?;
        let mut file = dir.create_truncated(TURN_END_FILE)?;
        // Writing the blanks allocates the blocks (or reserves them, with delayed allocation);
        // no fsync here: `fill` makes the record durable when it says something.
        let mut blanks = vec![b' '; RESERVED_BYTES - 1];
        blanks.push(b'\n');
        file.write_all(&blanks)
            .map_err(|e| crate::atomic::with_path(e, "write", &path))?;
        Ok(Reservation {
            file,
            path,
            dir: dir.try_clone()?,
        })
    }

    /// Where the record is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `end` into the reserved blocks (visible at once to every other process: a
    /// supervisor killed after this leaves it; [`Reservation::persist`] makes it survive a power
    /// loss too). A result too long for the reservation has its summary shortened to fit.
    ///
    /// # Errors
    /// The write or fsync errors, naming the path.
    pub fn fill(&self, end: &TurnEnd) -> io::Result<()> {
        let named = |e| crate::atomic::with_path(e, "write", &self.path);
        let mut end = end.clone();
        let mut text = toml::to_string(&end).map_err(io::Error::other)?;
        while text.len() >= RESERVED_BYTES {
            let mut result = end.session_result()?;
            let keep = result.summary.len() / 2;
            let cut = (0..=keep)
                .rev()
                .find(|&i| result.summary.is_char_boundary(i))
                .unwrap_or(0);
            result.summary.truncate(cut);
            result
                .summary
                .push_str("\n[summary shortened to fit the completion record]");
            end.result = result.to_toml();
            text = toml::to_string(&end).map_err(io::Error::other)?;
        }
        let mut bytes = text.into_bytes();
        bytes.resize(RESERVED_BYTES - 1, b' ');
        bytes.push(b'\n');
        crate::failpoint!("turn_end::fill").map_err(named)?;
        self.file.write_all_at(&bytes, 0).map_err(named)
    }

    /// Makes the filled record durable (fsync of the file and its directory): when the turn
    /// could not be finalized and the record is what is left of its outcome.
    ///
    /// # Errors
    /// The fsync errors, naming the path.
    pub fn persist(&self) -> io::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| crate::atomic::with_path(e, "fsync", &self.path))?;
        crate::atomic::sync_dir(&self.dir)
    }

    /// Removes the record (the turn was finalized). A failure is only logged: a record whose
    /// turn has ended is ignored.
    pub fn remove(self) {
        if let Err(err) = self.dir.remove_file(TURN_END_FILE) {
            tracing::warn!(%err, "could not remove the turn's completion record");
        }
    }
}

#[cfg(test)]
// Tests inspect their files by path.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::dirfd::test_dir;
    use chrono::Utc;

    fn result(summary: &str) -> SessionResult {
        SessionResult {
            status: crate::result::ResultStatus::Success,
            exit_code: 0,
            summary: summary.to_owned(),
            tool: "sh".into(),
            started_at: Utc::now(),
            completed_at: Utc::now(),
            artifacts: Vec::new(),
            other: Default::default(),
        }
    }

    #[test]
    fn reserved_says_nothing_filled_says_the_outcome_in_the_same_blocks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = test_dir(tmp.path());
        let reserved = Reservation::create(&dir).expect("reserve");
        assert_eq!(TurnEnd::load(&dir).expect("load"), None);
        let len = fs_err::metadata(reserved.path()).expect("stat").len();
        assert_eq!(len, RESERVED_BYTES as u64);
        for summary in ["sh exited with code 0".to_owned(), "x".repeat(64 << 10)] {
            let end = TurnEnd {
                turn: 2,
                phase: Phase::Available,
                termination_reason: None,
                result: result(&summary).to_toml(),
            };
            reserved.fill(&end).expect("fill");
            assert_eq!(
                fs_err::metadata(reserved.path()).expect("stat").len(),
                RESERVED_BYTES as u64,
                "filled in place"
            );
            let loaded = TurnEnd::load(&dir).expect("load").expect("filled");
            assert_eq!(loaded.turn, 2);
            assert_eq!(loaded.session_result().expect("result").exit_code, 0);
        }
        reserved.remove();
        assert_eq!(TurnEnd::load(&dir).expect("load"), None);
    }
}
