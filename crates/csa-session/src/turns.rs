//! Where each turn's output lies in a session's logs. A session's `output.log` and `stderr.log`
//! are appended to by every turn; csa's run.toml records, per turn (`[[turns]]`), the size of
//! each log when the turn started (`stdout_offset`, `stderr_offset`, bytes). From those,
//! [`Turns`] says which turn wrote a given byte of a log and which bytes a turn wrote.
//!
//! What is not recorded is not guessed: run.toml files written before csa recorded offsets lack
//! them, and sessions upstream wrote have no run.toml at all. A byte is attributed to a turn
//! only when the offsets prove it (turn 1 always starts at byte 0); otherwise its turn is
//! unknown (`None`). Read-only: nothing here writes a file.

use std::io;

use crate::create::{RunRecord, RUN_FILE};
use crate::dirfd::StoreDir;
use crate::error::{Result, StoreError};

/// Largest run.toml read: one entry per turn, each a command line and an environment.
pub const MAX_RUN_BYTES: u64 = 16 << 20;

/// One of a session's two logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// `output.log`: the agent's stdout.
    Stdout,
    /// `stderr.log`: the agent's stderr.
    Stderr,
}

impl Log {
    /// The log's file name in the session directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Log::Stdout => "output.log",
            Log::Stderr => "stderr.log",
        }
    }
}

/// The sizes of `session_dir`'s output.log and stderr.log now, in bytes, for a turn about to
/// start: its `(stdout_offset, stderr_offset)`. A log that does not exist yet is 0 bytes (it is
/// created empty); one that cannot be examined, or is not a regular file, gives `None`.
pub fn log_offsets(session_dir: &StoreDir) -> (Option<u64>, Option<u64>) {
    let size = |log: Log| match session_dir.symlink_metadata(log.file_name()) {
        Ok(meta) if meta.is_file() => Some(meta.len),
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(0),
        Err(_) => None,
    };
    (size(Log::Stdout), size(Log::Stderr))
}

/// Reads the `run.toml` of the session directory `session_dir`; `Ok(None)` when there is none (a session upstream wrote).
///
/// # Errors
/// [`StoreError::InvalidState`] naming the file when it is not UTF-8 TOML of the expected
/// shape or is larger than [`MAX_RUN_BYTES`]; [`StoreError::Io`] for other read errors.
pub fn load_run(session_dir: &StoreDir) -> Result<Option<RunRecord>> {
    crate::toml_file::parse_capped(session_dir.read_capped(RUN_FILE, MAX_RUN_BYTES), |reason| {
        StoreError::InvalidState {
            path: session_dir.join(RUN_FILE),
            reason,
        }
    })
}

/// One turn's start in one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnStart {
    /// The turn number (from 1).
    pub turn: u32,
    /// Its first byte in the log, when known.
    pub offset: Option<u64>,
    /// When the turn started (RFC 3339, as run.toml has it).
    pub started_at: String,
}

/// The turns of one log, in the order run.toml lists them (oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turns {
    starts: Vec<TurnStart>,
}

/// Why a turn's bytes cannot be told ([`Turns::range`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// run.toml lists no such turn.
    #[error("no turn {turn} (turns recorded: {recorded})")]
    NoSuchTurn {
        /// The turn asked for.
        turn: u32,
        /// The turns run.toml lists, as `1-3` or `none`.
        recorded: String,
    },
    /// run.toml lacks the offset of this turn or of the next one (written by an older csa).
    #[error("run.toml does not record where turn {turn} starts or ends in the log (it was written by an older csa)")]
    Unrecorded {
        /// The turn asked for.
        turn: u32,
    },
}

impl Turns {
    /// The turns of `log` as `record` lists them. Turn 1 starts at byte 0 whether or not its
    /// offset is recorded (a session's logs are created empty with it).
    pub fn of(record: &RunRecord, log: Log) -> Self {
        let starts = record
            .turns
            .iter()
            .map(|t| TurnStart {
                turn: t.turn,
                offset: match log {
                    Log::Stdout => t.stdout_offset,
                    Log::Stderr => t.stderr_offset,
                }
                .or((t.turn == 1).then_some(0)),
                started_at: t.started_at.clone(),
            })
            .collect();
        Turns { starts }
    }

    /// Every turn's start, oldest first.
    pub fn starts(&self) -> &[TurnStart] {
        &self.starts
    }

    /// The index of the turn that wrote the byte at `offset`: the last turn known to start at
    /// or before it, provided every later turn's start is known (else it could be a later
    /// turn's). `None` before the first known start.
    fn index_at(&self, offset: u64) -> Option<usize> {
        let i = self
            .starts
            .iter()
            .rposition(|s| s.offset.is_some_and(|o| o <= offset))?;
        self.starts[i + 1..]
            .iter()
            .all(|s| s.offset.is_some())
            .then_some(i)
    }

    /// The turn that wrote the byte at `offset` of the log, when the record proves it.
    pub fn turn_at(&self, offset: u64) -> Option<u32> {
        self.index_at(offset).map(|i| self.starts[i].turn)
    }

    /// The bytes turn `turn` wrote: `(start, end)`, `end` exclusive, `None` for the end of the
    /// log (the last turn).
    ///
    /// # Errors
    /// [`TurnError::NoSuchTurn`] when run.toml lists no such turn; [`TurnError::Unrecorded`]
    /// when its start, or the next turn's, is not recorded.
    pub fn range(&self, turn: u32) -> Result<(u64, Option<u64>), TurnError> {
        let Some(i) = self.starts.iter().position(|s| s.turn == turn) else {
            let recorded = match (self.starts.first(), self.starts.last()) {
                (Some(a), Some(b)) if a.turn == b.turn => a.turn.to_string(),
                (Some(a), Some(b)) => format!("{}-{}", a.turn, b.turn),
                _ => "none".to_owned(),
            };
            return Err(TurnError::NoSuchTurn { turn, recorded });
        };
        let start = self.starts[i]
            .offset
            .ok_or(TurnError::Unrecorded { turn })?;
        let end = match self.starts.get(i + 1) {
            Some(next) => Some(next.offset.ok_or(TurnError::Unrecorded { turn })?),
            None => None,
        };
        Ok((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::TurnRecord;

    fn record(offsets: &[(u32, Option<u64>)]) -> RunRecord {
        RunRecord {
            turns: offsets
                .iter()
                .map(|&(turn, offset)| TurnRecord {
                    turn,
                    command: vec!["true".into()],
                    cwd: "/".into(),
                    env: Default::default(),
                    started_at: format!("2026-01-0{turn}T00:00:00Z"),
                    stdout_offset: offset,
                    stderr_offset: None,
                })
                .collect(),
        }
    }

    #[test]
    fn bytes_belong_to_the_turn_that_wrote_them() {
        let t = Turns::of(
            &record(&[(1, Some(0)), (2, Some(10)), (3, Some(10))]),
            Log::Stdout,
        );
        assert_eq!(t.turn_at(0), Some(1));
        assert_eq!(t.turn_at(9), Some(1));
        // Turn 2 wrote nothing: byte 10 is turn 3's.
        assert_eq!(t.turn_at(10), Some(3));
        assert_eq!(t.turn_at(1000), Some(3));
        assert_eq!(t.range(1), Ok((0, Some(10))));
        assert_eq!(t.range(2), Ok((10, Some(10))));
        assert_eq!(t.range(3), Ok((10, None)));
        assert!(matches!(
            t.range(4),
            Err(TurnError::NoSuchTurn { turn: 4, .. })
        ));
    }

    #[test]
    fn what_is_not_recorded_is_not_guessed() {
        // An older csa: no offsets at all. Turn 1 starts at 0, but where turn 2 starts is
        // unknown, so no byte can be given to either.
        let old = Turns::of(&record(&[(1, None), (2, None)]), Log::Stdout);
        assert_eq!(old.turn_at(0), None);
        assert_eq!(old.range(1), Err(TurnError::Unrecorded { turn: 1 }));
        // One turn only: everything is turn 1's.
        let single = Turns::of(&record(&[(1, None)]), Log::Stdout);
        assert_eq!(single.turn_at(123), Some(1));
        assert_eq!(single.range(1), Ok((0, None)));
        // A record starting after upstream's turns: bytes before it are nobody's we know.
        let later = Turns::of(&record(&[(4, Some(50))]), Log::Stdout);
        assert_eq!(later.turn_at(49), None);
        assert_eq!(later.turn_at(50), Some(4));
        // The stderr offsets are separate (here unrecorded beyond turn 1).
        let err = Turns::of(&record(&[(1, Some(0)), (2, Some(10))]), Log::Stderr);
        assert_eq!(err.turn_at(5), None);
        assert_eq!(
            Turns::default().range(1),
            Err(TurnError::NoSuchTurn {
                turn: 1,
                recorded: "none".into()
            })
        );
    }
}
