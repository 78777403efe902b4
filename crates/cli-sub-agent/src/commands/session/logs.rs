//! `csa session logs`: print a session's `output.log` (or `stderr.log`) raw, optionally only its
//! last lines, optionally following it until the session ends. Read-only: never writes a file.
//!
//! Memory stays bounded whatever the log's size: the whole log is streamed in [`CHUNK`]-byte
//! pieces, and `--tail` finds where its last lines start by reading backwards from the end in
//! pieces of the same size. `--follow` keeps the file open and reads on from where it stopped,
//! so every byte is printed exactly once (partial lines included, as they come). With
//! `--format json` the same bytes are printed as one JSON object per line ([`log_lines`]).
//!
//! Turns: every turn appends to the same logs, and run.toml records where each turn starts
//! (csa-session [`turns`]). `--turn N` prints only turn N's bytes. On a terminal (stdout), a
//! session of several turns gets a marker line on stderr before each turn's first byte,
//! `── turn 2 (started …) ──`, so stdout stays the log's bytes exactly; in JSON each line
//! carries its `turn`, and a line is cut in two pieces where a turn starts in its middle.
//! When stdout wrote nothing and stderr did, a hint on stderr says so and how to see it.
//!
//! [`log_lines`]: super::log_lines
//! [`turns`]: csa_session::turns

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::anyhow;
use csa_session::dirfd::StoreDir;
use csa_session::inventory::SessionRef;
use csa_session::liveness::{assess, LivenessContext, Verdict};
use csa_session::paths::StateRoots;
use csa_session::state::SessionState;
use csa_session::turns::{self, Log, TurnError, Turns};
use fs_err::os::unix::fs::FileExt;

use super::locate;
use super::log_lines::LineEncoder;
use crate::cli::{Format, LogsArgs};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// Time between two looks at the log and the session with `--follow`.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes read at a time, forwards or (for `--tail`) backwards.
pub const CHUNK: usize = 64 << 10;

/// Runs the command. A missing log prints nothing (exit 0) unless following, which waits for it
/// to appear. A closed stdout (`csa session logs … | head`) ends the command quietly with 0.
/// `quiet` (`-q`) drops the notes on stderr (turn markers, hints, waiting).
///
/// # Errors
/// Exit 3 when the log cannot be read, or, while following, `state.toml` cannot be read (after
/// printing what the log holds); with `--turn`, 4 when run.toml lists no such turn and 3 when
/// it cannot be read or does not record where the turn lies; 2/4 for a bad SESSION argument.
pub fn run(roots: &StateRoots, args: &LogsArgs, quiet: bool) -> CommandResult {
    let session = locate(roots, args.cd.as_deref(), &args.session)?;
    let dir = session.project.open_session(&session.id)?;
    let log = if args.stderr {
        Log::Stderr
    } else {
        Log::Stdout
    };
    let path = dir.join(log.file_name());
    let stream = if args.stderr { "stderr" } else { "stdout" };
    let record = match turns::load_run(&dir) {
        Ok(record) => record,
        Err(err) if args.turn.is_some() => return Err(err.into()),
        Err(err) => {
            // Only turn boundaries are lost: the log itself is still printed.
            tracing::warn!("{err}: turn boundaries are not shown");
            None
        }
    };
    let turns = record.as_ref().map(|r| Turns::of(r, log));
    let range = match args.turn {
        Some(n) => Some(turn_range(&session.id, turns.as_ref(), n)?),
        None => None,
    };
    let markers = args.format == Format::Text
        && !quiet
        && io::IsTerminal::is_terminal(&io::stdout())
        && turns.as_ref().is_some_and(|t| t.starts().len() > 1);
    // An interactive turn's log holds what the agent drew on its terminal: shown as text
    // unless --raw (csa-terminal PlainText).
    let interactive = dir.exists(csa_supervisor::launch::CAST_FILE);
    let mut printer = Printer {
        plain: (interactive && !args.raw).then(csa_terminal::PlainText::default),
        out: io::stdout().lock(),
        buf: vec![0; CHUNK],
        lines: (args.format == Format::Json).then(|| {
            LineEncoder::new(&session.id, stream).with_turns(turns.clone().unwrap_or_default())
        }),
        turns: turns.unwrap_or_default(),
        markers,
        next_mark: None,
        pos: 0,
        end: range.and_then(|(_, end)| end),
        last_newline: true,
    };
    let start = range.map_or(0, |(start, _)| start);
    // An earlier turn has ended: nothing more will be appended to it.
    let outcome = if args.follow && range.is_none_or(|(_, end)| end.is_none()) {
        follow(
            &session,
            (&dir, log.file_name()),
            &path,
            args.tail,
            start,
            &mut printer,
            quiet,
        )
    } else {
        print_once(
            (&dir, log.file_name()),
            &path,
            args.tail,
            start,
            &mut printer,
        )
    };
    // JSON: the bytes after the last newline, once nothing more will be read.
    let outcome = outcome.and_then(|exit| Ok(printer.finish().map(|()| exit)?));
    let outcome = match outcome {
        Err(err) if is_broken_pipe(&err) => return Ok(Exit::Success),
        other => other,
    };
    if log == Log::Stdout && !quiet {
        hint_stderr(&session.id, &dir, args.turn, record.as_ref());
    }
    outcome
}

/// The bytes of turn `n` in the log.
///
/// # Errors
/// Exit 4 when run.toml (or its absence) lists no turn `n`, with the turns it does list; 3
/// when run.toml does not record where it lies.
fn turn_range(id: &str, turns: Option<&Turns>, n: u32) -> Result<(u64, Option<u64>), CommandError> {
    let Some(turns) = turns else {
        return Err(CommandError::new(
            Exit::NotFound,
            anyhow!("session {id} has no run.toml: its turns are not recorded (upstream wrote it)"),
        )
        .with_hint(format!("print the whole log: csa session logs {id}")));
    };
    turns.range(n).map_err(|err| {
        let exit = match err {
            TurnError::NoSuchTurn { .. } => Exit::NotFound,
            TurnError::Unrecorded { .. } => Exit::Partial,
        };
        CommandError::new(exit, anyhow!("session {id}: {err}"))
            .with_hint(format!("print the whole log: csa session logs {id}"))
    })
}

/// When the agent wrote nothing on stdout but something on stderr, says so on stderr with the
/// command that shows it: agent CLIs such as gemini-cli and codex write their errors to stderr
/// only. Looks at turn `turn` (`--turn`), else at the last turn when the session has several
/// and run.toml says where it lies, else at the whole logs.
fn hint_stderr(
    id: &str,
    dir: &StoreDir,
    turn: Option<u32>,
    record: Option<&csa_session::create::RunRecord>,
) {
    let size = |log: Log| dir.metadata(log.file_name()).map_or(0, |m| m.len);
    let (out_len, err_len) = (size(Log::Stdout), size(Log::Stderr));
    let last = record
        .filter(|r| r.turns.len() > 1)
        .and_then(|r| r.turns.last())
        .map(|t| t.turn);
    let bytes_of = |log: Log, t: u32, len: u64| {
        let (start, end) = Turns::of(record?, log).range(t).ok()?;
        Some(end.unwrap_or(len).min(len).saturating_sub(start))
    };
    let per_turn = turn.or(last).and_then(|t| {
        Some((
            t,
            bytes_of(Log::Stdout, t, out_len)?,
            bytes_of(Log::Stderr, t, err_len)?,
        ))
    });
    let (what, flag, out_bytes, err_bytes) = match per_turn {
        Some((t, out, err)) => (
            format!("turn {t} of session {id}"),
            format!(" --turn {t}"),
            out,
            err,
        ),
        None if turn.is_some() => return,
        None => (format!("session {id}"), String::new(), out_len, err_len),
    };
    if out_bytes == 0 && err_bytes > 0 {
        eprintln!(
            "hint: {what} wrote nothing on stdout but {err_bytes} bytes on stderr: csa session logs {id} --stderr{flag}"
        );
    }
}

/// Prints the log as it is now, from `start` (nothing when it does not exist).
fn print_once(
    log: (&StoreDir, &str),
    path: &Path,
    tail: Option<usize>,
    start: u64,
    printer: &mut Printer<'_>,
) -> CommandResult {
    if let Some(mut file) = open_log(log, path)? {
        printer.print_from_tail(&mut file, tail, start)?;
    }
    Ok(Exit::Success)
}

/// Prints the log, then whatever is appended to it, until the session has ended: its phase is
/// not `active`, or liveness says its owner is dead. The end is checked *before* each read, so
/// the read after the check that sees it is the final one and nothing written before the end is
/// missed.
fn follow(
    session: &SessionRef,
    log: (&StoreDir, &str),
    path: &Path,
    tail: Option<usize>,
    start: u64,
    printer: &mut Printer<'_>,
    quiet: bool,
) -> CommandResult {
    let ctx = LivenessContext::new();
    let mut file = None;
    let mut announced = false;
    loop {
        let ended = has_ended(&ctx, session);
        match &mut file {
            Some(file) => printer.print_appended(file, path)?,
            None => {
                file = open_log(log, path)?;
                match &mut file {
                    Some(file) => printer.print_from_tail(file, tail, start)?,
                    None if !announced && !quiet => {
                        eprintln!("csa: waiting for {} to appear…", path.display());
                        announced = true;
                    }
                    None => {}
                }
            }
        }
        if ended? {
            return Ok(Exit::Success);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Whether the session has ended: phase not `active`, or (Active) its owner is dead. A foreign
/// owner cannot be checked from here and counts as alive.
///
/// # Errors
/// The errors of [`SessionState::load`] (exit 3).
fn has_ended(ctx: &LivenessContext, session: &SessionRef) -> Result<bool, CommandError> {
    let dir = session.project.open_session(&session.id)?;
    if SessionState::load(&dir)?.view.phase.is_ended() {
        return Ok(true);
    }
    let assessment = assess(&ctx.refreshed(), &dir, &session.id, true);
    for w in &assessment.warnings {
        tracing::debug!("{w}");
    }
    Ok(matches!(assessment.verdict, Verdict::Dead { .. }))
}

/// Opens the log; `None` when it does not exist.
///
/// # Errors
/// The open's error, or `InvalidData` naming the path when the log is not a regular file: a
/// FIFO would block the open (it is opened `O_NONBLOCK` to find out) and a device such as
/// `/dev/zero` behind a symlink would never end. Regression: both hung `csa session logs`
/// (tests/cli/corpus.rs).
fn open_log((dir, name): (&StoreDir, &str), path: &Path) -> io::Result<Option<fs_err::File>> {
    let file = match dir.open_read(name) {
        Ok(file) => fs_err::File::from_parts(file, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a regular file", path.display()),
        ));
    }
    Ok(Some(file))
}

/// Copies log bytes to stdout through one reused [`CHUNK`]-byte buffer, stopping at `end`, and
/// marking where each turn starts (a line on stderr, or a cut JSON line).
struct Printer<'a> {
    /// For an interactive session's log: escape sequences taken out.
    plain: Option<csa_terminal::PlainText>,
    out: io::StdoutLock<'a>,
    buf: Vec<u8>,
    /// With `--format json`: the bytes as JSON lines instead of raw.
    lines: Option<LineEncoder>,
    /// The log's turns (empty when unknown).
    turns: Turns,
    /// Whether to print a marker line on stderr where a turn starts.
    markers: bool,
    /// Index in `turns.starts()` of the next turn start to mark; `None` before the first byte.
    next_mark: Option<usize>,
    /// Log offset of the next byte read.
    pos: u64,
    /// Log offset to stop before (`--turn` of a turn that has ended).
    end: Option<u64>,
    /// Whether the last byte printed (raw) was a newline, or nothing was printed.
    last_newline: bool,
}

impl Printer<'_> {
    /// Prints `file` from the start of its last `tail` lines (from its start without `tail`)
    /// at or after `start`, to its end (or [`Printer::end`]), leaving its position there.
    fn print_from_tail(
        &mut self,
        file: &mut fs_err::File,
        tail: Option<usize>,
        start: u64,
    ) -> io::Result<()> {
        let len = file.metadata()?.len();
        let mut from = start.min(len);
        if let Some(lines) = tail {
            let end = self.end.map_or(len, |end| end.min(len));
            from = tail_start(file, end, lines, &mut self.buf)?.max(from);
        }
        file.seek(SeekFrom::Start(from))?;
        self.pos = from;
        if let Some(lines) = &mut self.lines {
            lines.seek(from);
        }
        self.copy_to_end(file)
    }

    /// Prints what was appended to `file` since the last read. A file shorter than the position
    /// reached was truncated: it is printed again from its start, with a note on stderr.
    fn print_appended(&mut self, file: &mut fs_err::File, path: &Path) -> io::Result<()> {
        let position = file.stream_position()?;
        if file.metadata()?.len() < position {
            eprintln!(
                "csa: {} was truncated; following it from its start",
                path.display()
            );
            file.rewind()?;
            self.pos = 0;
            self.next_mark = None;
            if let Some(lines) = &mut self.lines {
                lines.finish(&mut self.out)?;
                lines.seek(0);
            }
        }
        self.copy_to_end(file)
    }

    /// Marks the turns that start at the end of what was printed (they wrote nothing here);
    /// with `--format json`, prints the bytes after the last newline read.
    fn finish(&mut self) -> io::Result<()> {
        if let (Some(next), None, true) = (self.next_mark, self.end, self.markers) {
            let pos = self.pos;
            let count = self.turns.starts().len();
            for i in next..count {
                if self.turns.starts()[i].offset.is_some_and(|o| o <= pos) {
                    self.mark(i)?;
                }
            }
        }
        if let Some(plain) = &mut self.plain {
            let rest = plain.finish();
            match &mut self.lines {
                Some(lines) => lines.push(&rest, &mut self.out)?,
                None => self.out.write_all(&rest)?,
            }
        }
        if let Some(lines) = &mut self.lines {
            lines.finish(&mut self.out)?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// Copies from `file`'s position to its end (or [`Printer::end`]), flushing stdout after
    /// each chunk.
    fn copy_to_end(&mut self, file: &mut fs_err::File) -> io::Result<()> {
        loop {
            let room = self.end.map_or(self.buf.len() as u64, |end| {
                end.saturating_sub(self.pos).min(self.buf.len() as u64)
            });
            if room == 0 {
                return Ok(());
            }
            // At most buf.len(), so it fits in usize.
            let room = usize::try_from(room).unwrap_or(self.buf.len());
            let n = match file.read(&mut self.buf[..room]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.emit(n)?;
            self.out.flush()?;
        }
    }

    /// Prints the first `n` bytes of the buffer (the log's bytes from [`Printer::pos`]),
    /// marking every turn that starts among them.
    fn emit(&mut self, n: usize) -> io::Result<()> {
        let starts: Vec<Option<u64>> = self.turns.starts().iter().map(|s| s.offset).collect();
        let pos = self.pos;
        let next = match self.next_mark {
            Some(next) => next,
            None => {
                // The first byte printed: say which turn it belongs to, when that is known.
                if self.turns.turn_at(pos).is_some() {
                    if let Some(i) = starts.iter().rposition(|o| o.is_some_and(|o| o <= pos)) {
                        self.mark(i)?;
                    }
                }
                starts
                    .iter()
                    .position(|o| o.is_some_and(|o| o > pos))
                    .unwrap_or(starts.len())
            }
        };
        let mut next = next;
        let mut done = 0;
        while let Some(at) = starts
            .get(next)
            .copied()
            .flatten()
            .filter(|&o| o < pos + n as u64)
        {
            let upto = usize::try_from(at.saturating_sub(pos))
                .unwrap_or(n)
                .max(done);
            self.write(done, upto)?;
            done = upto;
            self.mark(next)?;
            next += 1;
            // Skip starts whose offset is unknown: they cannot be placed.
            while starts.get(next).is_some_and(Option::is_none) {
                next += 1;
            }
        }
        self.next_mark = Some(next);
        self.write(done, n)?;
        self.pos += n as u64;
        Ok(())
    }

    /// Prints `buf[from..to]` (raw, or as JSON lines).
    fn write(&mut self, from: usize, to: usize) -> io::Result<()> {
        if from >= to {
            return Ok(());
        }
        let text;
        let bytes = match &mut self.plain {
            Some(plain) => {
                text = plain.push(&self.buf[from..to]);
                &text[..]
            }
            None => &self.buf[from..to],
        };
        match &mut self.lines {
            Some(lines) => lines.push(bytes, &mut self.out)?,
            None => self.out.write_all(bytes)?,
        }
        if let Some(&last) = bytes.last() {
            self.last_newline = last == b'\n';
        }
        Ok(())
    }

    /// Marks the start of the turn `starts()[i]`: in JSON, the line being built ends there (so
    /// each line has one turn); on a terminal, a marker line on stderr.
    fn mark(&mut self, i: usize) -> io::Result<()> {
        if let Some(lines) = &mut self.lines {
            return lines.finish(&mut self.out);
        }
        if !self.markers {
            return Ok(());
        }
        self.out.flush()?;
        let start = &self.turns.starts()[i];
        // A turn that started in the middle of a line: the marker goes on a line of its own.
        let newline = if self.last_newline { "" } else { "\n" };
        eprintln!(
            "{newline}── turn {} (started {}) ──",
            start.turn, start.started_at
        );
        Ok(())
    }
}

/// The offset where the last `lines` lines of the first `len` bytes of `file` start, found by
/// reading backwards in pieces of `buf.len()` bytes. A line ends with `\n`; a final `\n` ends
/// the last line rather than starting an empty one, and unterminated bytes at the end count as
/// a line (as tail(1)). Fewer lines than `lines` give 0; `lines == 0` gives `len`. A file that
/// shrank below `len` meanwhile also gives 0 (it is printed from its start).
///
/// # Errors
/// Read errors of `file`, naming its path.
fn tail_start(file: &impl FileExt, len: u64, lines: usize, buf: &mut [u8]) -> io::Result<u64> {
    if lines == 0 {
        return Ok(len);
    }
    let mut found = 0;
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        // At most buf.len(), so it fits in usize.
        let part = &mut buf[..usize::try_from(end - start).unwrap_or(0)];
        match file.read_exact_at(part, start) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        // memrchr: a 100 MiB log without a newline is scanned in milliseconds, not seconds.
        let mut rest: &[u8] = part;
        while let Some(i) = memchr::memrchr(b'\n', rest) {
            let offset = start + i as u64;
            if offset + 1 != len {
                found += 1;
                if found == lines {
                    return Ok(offset + 1);
                }
            }
            rest = &rest[..i];
        }
        end = start;
    }
    Ok(0)
}

/// Whether `err` is a write to a closed stdout (the reader went away: not an error of ours).
fn is_broken_pipe(err: &CommandError) -> bool {
    err.error
        .downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(content: &[u8], lines: usize, chunk: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        fs_err::write(&path, content).expect("write");
        let file = fs_err::File::open(&path).expect("open");
        let start = tail_start(&file, content.len() as u64, lines, &mut vec![0; chunk])
            .expect("tail_start");
        content[usize::try_from(start).expect("small")..].to_vec()
    }

    #[test]
    fn tail_matches_a_whole_read_for_every_chunk_size() {
        let cases: [(&[u8], usize, &[u8]); 9] = [
            (b"a\nb\nc\n", 2, b"b\nc\n"),
            (b"a\nb\nc", 2, b"b\nc"),
            (b"a\nb\nc\n", 5, b"a\nb\nc\n"),
            (b"a\nb\nc\n", 0, b""),
            (b"", 3, b""),
            (b"\n\n\n", 2, b"\n\n"),
            (b"no newline", 1, b"no newline"),
            (b"x\n", 1, b"x\n"),
            (b"long line one\nline two\n\nlast", 3, b"line two\n\nlast"),
        ];
        for (content, lines, want) in cases {
            for chunk in [1, 2, 3, 7, CHUNK] {
                assert_eq!(
                    tail_of(content, lines, chunk),
                    want,
                    "{content:?}, {lines} lines, chunk {chunk}"
                );
            }
        }
    }
}
