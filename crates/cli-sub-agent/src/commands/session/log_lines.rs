//! `csa session logs --format json`: a log's bytes as JSON Lines, one object per line of the log
//! (docs/json.md):
//!
//! ```json
//! {"session_id":"01M7…","stream":"stdout","offset":0,"text":"hello","eol":true}
//! ```
//!
//! `offset` is the byte offset in the log of the line's first byte, `text` the line without its
//! `\n`, decoded as UTF-8 (invalid bytes become U+FFFD), `eol` whether a `\n` ended it, and
//! `turn` the turn that wrote it (null when run.toml does not prove it; the caller cuts a line
//! where a turn starts, so that each piece has one turn). A
//! line is printed once its `\n` arrives; bytes after the last `\n` are printed when the command
//! ends ([`LineEncoder::finish`], `eol: false`). So that memory stays bounded, a line longer
//! than [`MAX_PIECE`] bytes is printed in pieces of at most that size (every piece but the last
//! has `eol: false`), cut between UTF-8 characters.

use std::io::{self, Write};

use csa_session::turns::Turns;
use serde::Serialize;

/// Largest piece of a line printed as one object, in bytes of the log.
pub const MAX_PIECE: usize = 64 << 10;

/// Turns log bytes, fed in order as they are read, into JSON lines.
#[derive(Debug)]
pub struct LineEncoder {
    session_id: String,
    stream: &'static str,
    /// Log offset of `pending[0]` (or of the next byte fed, when `pending` is empty).
    offset: u64,
    /// Bytes of the current line read so far.
    pending: Vec<u8>,
    /// Which turn wrote which bytes.
    turns: Turns,
}

/// One printed object.
#[derive(Serialize)]
struct Piece<'a> {
    session_id: &'a str,
    stream: &'a str,
    offset: u64,
    text: &'a str,
    eol: bool,
    turn: Option<u32>,
}

impl LineEncoder {
    /// An encoder for the log `stream` (`stdout`: output.log, `stderr`: stderr.log) of
    /// `session_id`.
    pub fn new(session_id: &str, stream: &'static str) -> Self {
        LineEncoder {
            session_id: session_id.to_owned(),
            stream,
            offset: 0,
            pending: Vec::new(),
            turns: Turns::default(),
        }
    }

    /// This encoder, giving each line the turn `turns` says wrote its first byte.
    pub fn with_turns(mut self, turns: Turns) -> Self {
        self.turns = turns;
        self
    }

    /// Says where the next byte fed comes from in the log. Only honoured between lines (no
    /// partial line pending): a caller that seeks (`--tail`, a truncated log) calls
    /// [`LineEncoder::finish`] first.
    pub fn seek(&mut self, offset: u64) {
        if self.pending.is_empty() {
            self.offset = offset;
        }
    }

    /// Feeds the next bytes of the log, printing every line they complete.
    ///
    /// # Errors
    /// Errors writing to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut impl Write) -> io::Result<()> {
        loop {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let segment = &bytes[..newline.unwrap_or(bytes.len())];
            self.pending.extend_from_slice(segment);
            while self.pending.len() > MAX_PIECE {
                let cut = char_boundary(&self.pending, MAX_PIECE);
                let rest = self.pending.split_off(cut);
                self.emit_pending(false, out)?;
                self.pending = rest;
            }
            if newline.is_none() {
                return Ok(());
            }
            self.emit_pending(true, out)?;
            // The newline itself is part of the line it ends.
            self.offset += 1;
            bytes = &bytes[segment.len() + 1..];
        }
    }

    /// Prints the bytes after the last newline, if any (`eol: false`).
    ///
    /// # Errors
    /// Errors writing to `out`.
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.emit_pending(false, out)
    }

    /// Prints `pending` as one object and empties it, advancing the offset past it.
    fn emit_pending(&mut self, eol: bool, out: &mut impl Write) -> io::Result<()> {
        let text = String::from_utf8_lossy(&self.pending);
        let piece = Piece {
            session_id: &self.session_id,
            stream: self.stream,
            offset: self.offset,
            text: &text,
            eol,
            turn: self.turns.turn_at(self.offset),
        };
        serde_json::to_writer(&mut *out, &piece)?;
        out.write_all(b"\n")?;
        self.offset += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

/// The largest index `<= at` of `bytes` that does not split a UTF-8 character (at most 3 bytes
/// back; bytes that are not UTF-8 anyway are cut at `at`).
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    let is_continuation = |i: usize| bytes.get(i).is_some_and(|b| b & 0xC0 == 0x80);
    (at.saturating_sub(3)..=at)
        .rev()
        .find(|&i| !is_continuation(i))
        .filter(|&i| i > 0)
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(chunks: &[&[u8]]) -> Vec<serde_json::Value> {
        let mut enc = LineEncoder::new("01M7YCZAQ6TZ9E7YGFW7ZMM2X7", "stdout");
        let mut out = Vec::new();
        for chunk in chunks {
            enc.push(chunk, &mut out).expect("push");
        }
        enc.finish(&mut out).expect("finish");
        String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    fn fields(values: &[serde_json::Value]) -> Vec<(u64, String, bool)> {
        values
            .iter()
            .map(|v| {
                (
                    v["offset"].as_u64().expect("offset"),
                    v["text"].as_str().expect("text").to_owned(),
                    v["eol"].as_bool().expect("eol"),
                )
            })
            .collect()
    }

    #[test]
    fn lines_and_offsets_do_not_depend_on_how_the_bytes_arrive() {
        let log = b"one\n\ntwo\nlast";
        let want = vec![
            (0, "one".to_owned(), true),
            (4, String::new(), true),
            (5, "two".to_owned(), true),
            (9, "last".to_owned(), false),
        ];
        assert_eq!(fields(&encode(&[log])), want);
        let bytes: Vec<&[u8]> = log.chunks(1).collect();
        assert_eq!(fields(&encode(&bytes)), want);
        assert_eq!(fields(&encode(&[b"on", b"e\n\ntw", b"o\nla", b"st"])), want);
    }

    #[test]
    fn long_lines_are_cut_between_characters() {
        // 'é' is two bytes: a cut at MAX_PIECE would split one.
        let mut line = vec![b'a'];
        line.extend("é".repeat(MAX_PIECE).as_bytes());
        line.push(b'\n');
        let values = encode(&[&line]);
        let pieces = fields(&values);
        assert!(pieces.len() > 2, "{}", pieces.len());
        let text: String = pieces.iter().map(|(_, t, _)| t.as_str()).collect();
        assert_eq!(text.as_bytes(), &line[..line.len() - 1], "no U+FFFD");
        assert!(pieces[..pieces.len() - 1].iter().all(|p| !p.2));
        assert!(pieces[pieces.len() - 1].2);
        let mut offset = 0;
        for (at, text, _) in &pieces {
            assert_eq!(*at, offset);
            assert!(text.len() <= MAX_PIECE);
            offset += text.len() as u64;
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_and_nothing_pending_prints_nothing() {
        let values = encode(&[b"a\xffb\n"]);
        assert_eq!(values[0]["text"], "a\u{fffd}b");
        assert_eq!(values[0]["session_id"], "01M7YCZAQ6TZ9E7YGFW7ZMM2X7");
        assert_eq!(values[0]["stream"], "stdout");
        assert!(encode(&[]).is_empty());
    }
}
