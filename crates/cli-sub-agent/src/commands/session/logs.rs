//! `csa session logs`: print a session's `output.log` (or `stderr.log`) raw, optionally only its
//! last lines, optionally following it until the session ends. Read-only: never writes a file.
//!
//! Memory stays bounded whatever the log's size: the whole log is streamed in [`CHUNK`]-byte
//! pieces, and `--tail` finds where its last lines start by reading backwards from the end in
//! pieces of the same size. `--follow` keeps the file open and reads on from where it stopped,
//! so every byte is printed exactly once (partial lines included, as they come). With
//! `--format json` the same bytes are printed as one JSON object per line ([`log_lines`]).
//!
//! [`log_lines`]: super::log_lines

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

use csa_session::inventory::SessionRef;
use csa_session::liveness::{assess, LivenessContext, Verdict};
use csa_session::paths::StateRoots;
use csa_session::state::SessionState;
use fs_err::os::unix::fs::FileExt;

use super::locate;
use super::log_lines::LineEncoder;
use crate::cli::{Format, LogsArgs};
use crate::diagnostics::CommandError;
use crate::exit::Exit;
use crate::CommandResult;

/// The agent's stdout log, in the session directory.
pub const OUTPUT_LOG: &str = "output.log";
/// The agent's stderr log, in the session directory.
pub const STDERR_LOG: &str = "stderr.log";
/// Time between two looks at the log and the session with `--follow`.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes read at a time, forwards or (for `--tail`) backwards.
pub const CHUNK: usize = 64 << 10;

/// Runs the command. A missing log prints nothing (exit 0) unless following, which waits for it
/// to appear. A closed stdout (`csa session logs … | head`) ends the command quietly with 0.
///
/// # Errors
/// Exit 3 when the log cannot be read, or, while following, `state.toml` cannot be read (after
/// printing what the log holds); 2/4 for a bad SESSION argument.
pub fn run(roots: &StateRoots, args: &LogsArgs) -> CommandResult {
    let session = locate(roots, args.cd.as_deref(), &args.session)?;
    let path = session
        .dir()
        .join(if args.stderr { STDERR_LOG } else { OUTPUT_LOG });
    let stream = if args.stderr { "stderr" } else { "stdout" };
    let mut printer = Printer {
        out: io::stdout().lock(),
        buf: vec![0; CHUNK],
        lines: (args.format == Format::Json).then(|| LineEncoder::new(&session.id, stream)),
    };
    let outcome = if args.follow {
        follow(&session, &path, args.tail, &mut printer)
    } else {
        print_once(&path, args.tail, &mut printer)
    };
    // JSON: the bytes after the last newline, once nothing more will be read.
    let outcome = outcome.and_then(|exit| Ok(printer.finish().map(|()| exit)?));
    match outcome {
        Err(err) if is_broken_pipe(&err) => Ok(Exit::Success),
        other => other,
    }
}

/// Prints the log as it is now (nothing when it does not exist).
fn print_once(path: &Path, tail: Option<usize>, printer: &mut Printer<'_>) -> CommandResult {
    if let Some(mut file) = open_log(path)? {
        printer.print_from_tail(&mut file, tail)?;
    }
    Ok(Exit::Success)
}

/// Prints the log, then whatever is appended to it, until the session has ended: its phase is
/// not `active`, or liveness says its owner is dead. The end is checked *before* each read, so
/// the read after the check that sees it is the final one and nothing written before the end is
/// missed.
fn follow(
    session: &SessionRef,
    path: &Path,
    tail: Option<usize>,
    printer: &mut Printer<'_>,
) -> CommandResult {
    let ctx = LivenessContext::new();
    let mut file = None;
    let mut announced = false;
    loop {
        let ended = has_ended(&ctx, session);
        match &mut file {
            Some(file) => printer.print_appended(file, path)?,
            None => {
                file = open_log(path)?;
                match &mut file {
                    Some(file) => printer.print_from_tail(file, tail)?,
                    None if !announced && tracing::enabled!(tracing::Level::WARN) => {
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
    let dir = session.dir();
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
fn open_log(path: &Path) -> io::Result<Option<fs_err::File>> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let opened = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(file) => file,
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

/// Copies log bytes to stdout through one reused [`CHUNK`]-byte buffer.
struct Printer<'a> {
    out: io::StdoutLock<'a>,
    buf: Vec<u8>,
    /// With `--format json`: the bytes as JSON lines instead of raw.
    lines: Option<LineEncoder>,
}

impl Printer<'_> {
    /// Prints `file` from the start of its last `tail` lines (from its start without `tail`) to
    /// its end, leaving its position at the end.
    fn print_from_tail(&mut self, file: &mut fs_err::File, tail: Option<usize>) -> io::Result<()> {
        if let Some(lines) = tail {
            let len = file.metadata()?.len();
            let start = tail_start(file, len, lines, &mut self.buf)?;
            file.seek(SeekFrom::Start(start))?;
            if let Some(lines) = &mut self.lines {
                lines.seek(start);
            }
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
            if let Some(lines) = &mut self.lines {
                lines.finish(&mut self.out)?;
                lines.seek(0);
            }
        }
        self.copy_to_end(file)
    }

    /// With `--format json`, prints the bytes after the last newline read (nothing otherwise).
    fn finish(&mut self) -> io::Result<()> {
        if let Some(lines) = &mut self.lines {
            lines.finish(&mut self.out)?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// Copies from `file`'s position to its end, flushing stdout after each chunk.
    fn copy_to_end(&mut self, file: &mut fs_err::File) -> io::Result<()> {
        loop {
            let n = match file.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match &mut self.lines {
                Some(lines) => lines.push(&self.buf[..n], &mut self.out)?,
                None => self.out.write_all(&self.buf[..n])?,
            }
            self.out.flush()?;
        }
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
        for (i, &byte) in part.iter().enumerate().rev() {
            let offset = start + i as u64;
            if byte == b'\n' && offset + 1 != len {
                found += 1;
                if found == lines {
                    return Ok(offset + 1);
                }
            }
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
