//! Recordings in asciicast v2, the asciinema format
//! (<https://docs.asciinema.org/manual/asciicast/v2/>), so that `asciinema play` or any
//! asciicast player replays an interactive session.
//!
//! A file is newline-delimited JSON: a header object
//! `{"version": 2, "width": COLS, "height": ROWS, "timestamp": UNIX_SECONDS, "env": {"TERM": …}}`,
//! then one event per line, `[SECONDS, CODE, DATA]`: SECONDS since the recording started (a
//! float, microsecond precision, never decreasing), CODE `"o"` for output (DATA is what the
//! agent wrote) or `"r"` for a resize (DATA is `"COLSxROWS"`).
//!
//! DATA is a JSON string, so it must be UTF-8: a multi-byte character split across two reads
//! is held back until it is complete, and bytes that are not UTF-8 at all are written as
//! U+FFFD. The raw bytes, unaltered, are in the session's `output.log`; for UTF-8 output the
//! concatenated `"o"` events equal it byte for byte.
//!
//! Each event is written with one `write` call and no buffering, so a recording cut by a kill
//! ends with whole lines (at worst, one partial last line, which [`parse`] reports).

use std::fs::File;
use std::io::{self, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::size::WindowSize;

/// The header's fields this crate writes and reads.
#[derive(Debug, Clone, PartialEq)]
pub struct CastHeader {
    /// The terminal's width in columns when the recording started.
    pub width: u16,
    /// Its height in rows.
    pub height: u16,
    /// When the recording started, in seconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// The agent's `TERM`.
    pub term: Option<String>,
}

impl CastHeader {
    /// A header for a recording starting now at `size`.
    pub fn now(size: WindowSize, term: Option<String>) -> CastHeader {
        CastHeader {
            width: size.cols,
            height: size.rows,
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok()),
            term,
        }
    }
}

/// Writes a recording, event by event.
#[derive(Debug)]
pub struct CastWriter {
    file: File,
    start: Instant,
    /// The start of a UTF-8 character whose other bytes have not been read yet (at most 3
    /// bytes).
    pending: Vec<u8>,
}

impl CastWriter {
    /// Writes `header` to `file` (opened for writing, normally empty) and starts the clock.
    ///
    /// # Errors
    /// The write's error.
    pub fn create(mut file: File, header: &CastHeader) -> io::Result<CastWriter> {
        let mut value = json!({
            "version": 2,
            "width": header.width,
            "height": header.height,
        });
        if let Some(ts) = header.timestamp {
            value["timestamp"] = json!(ts);
        }
        if let Some(term) = &header.term {
            value["env"] = json!({ "TERM": term });
        }
        let mut line = value.to_string();
        line.push('\n');
        file.write_all(line.as_bytes())?;
        Ok(CastWriter {
            file,
            start: Instant::now(),
            pending: Vec::new(),
        })
    }

    fn event(&mut self, code: &str, data: &str) -> io::Result<()> {
        let seconds = (self.start.elapsed().as_micros() as f64) / 1e6;
        let mut line = json!([seconds, code, data]).to_string();
        line.push('\n');
        self.file.write_all(line.as_bytes())
    }

    /// Records `bytes` the agent wrote as an `"o"` event (nothing when they only start a
    /// character).
    ///
    /// # Errors
    /// The write's error.
    pub fn output(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(bytes);
        let complete = match std::str::from_utf8(&data) {
            Ok(_) => data.len(),
            // An incomplete character at the end: keep it for the next read.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => incomplete_tail_start(&data),
        };
        self.pending = data.split_off(complete);
        if data.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&data);
        self.event("o", &text)
    }

    /// Records a resize of the agent's terminal as an `"r"` event.
    ///
    /// # Errors
    /// The write's error.
    pub fn resize(&mut self, size: WindowSize) -> io::Result<()> {
        self.event("r", &size.to_string())
    }

    /// Writes a character left incomplete at the end of the output (as U+FFFD).
    ///
    /// # Errors
    /// The write's error.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
        self.event("o", &text)
    }
}

/// Where a possibly incomplete UTF-8 character starts at the end of `data` that also holds
/// invalid bytes earlier: everything before it is written now (lossily).
fn incomplete_tail_start(data: &[u8]) -> usize {
    let floor = data.len().saturating_sub(3);
    for start in (floor..data.len()).rev() {
        if std::str::from_utf8(&data[start..])
            .is_err_and(|e| e.error_len().is_none() && e.valid_up_to() == 0)
        {
            return start;
        }
    }
    data.len()
}

/// One event of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct CastEvent {
    /// Seconds since the recording started.
    pub time: f64,
    /// `"o"`, `"r"`, or another code of the format (`"i"`, `"m"`).
    pub code: String,
    /// The event's data.
    pub data: String,
}

/// A parsed recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Cast {
    /// Its header.
    pub header: CastHeader,
    /// Its events, in file order.
    pub events: Vec<CastEvent>,
}

impl Cast {
    /// Everything the agent wrote: the `"o"` events' data, concatenated.
    pub fn output(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.code == "o")
            .map(|e| e.data.as_str())
            .collect()
    }

    /// The sizes of the `"r"` events, in order (events whose data is not `COLSxROWS` are
    /// skipped).
    pub fn resizes(&self) -> Vec<WindowSize> {
        self.events
            .iter()
            .filter(|e| e.code == "r")
            .filter_map(|e| {
                let (cols, rows) = e.data.split_once('x')?;
                Some(WindowSize {
                    cols: cols.parse().ok()?,
                    rows: rows.parse().ok()?,
                })
            })
            .collect()
    }
}

/// Why a recording does not parse.
#[derive(Debug, thiserror::Error)]
pub enum CastError {
    /// The first line is not an asciicast v2 header.
    #[error("line 1: not an asciicast v2 header: {0}")]
    Header(String),
    /// An event line is not `[SECONDS, CODE, DATA]`, or its time goes backwards.
    #[error("line {line}: not an asciicast v2 event: {reason}")]
    Event {
        /// Its line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses an asciicast v2 recording. Empty lines are skipped.
///
/// # Errors
/// [`CastError`] naming the first line that is not valid.
pub fn parse(text: &str) -> Result<Cast, CastError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines
        .next()
        .ok_or_else(|| CastError::Header("the file is empty".to_owned()))?;
    let header: Value =
        serde_json::from_str(first).map_err(|e| CastError::Header(e.to_string()))?;
    if header.get("version").and_then(Value::as_u64) != Some(2) {
        return Err(CastError::Header("\"version\" is not 2".to_owned()));
    }
    let dimension = |key: &str| {
        header
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| CastError::Header(format!("{key:?} is not a number of cells")))
    };
    let header = CastHeader {
        width: dimension("width")?,
        height: dimension("height")?,
        timestamp: header.get("timestamp").and_then(Value::as_i64),
        term: header
            .pointer("/env/TERM")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let mut events = Vec::new();
    let mut last = 0.0;
    for (index, line) in lines {
        let bad = |reason: &str| CastError::Event {
            line: index + 1,
            reason: reason.to_owned(),
        };
        let value: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let [time, code, data] = value
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| bad("not an array"))?
        else {
            return Err(bad("not three elements"));
        };
        let time = time
            .as_f64()
            .ok_or_else(|| bad("the time is not a number"))?;
        if time < last {
            return Err(bad("the time goes backwards"));
        }
        last = time;
        events.push(CastEvent {
            time,
            code: code
                .as_str()
                .ok_or_else(|| bad("the code is not a string"))?
                .to_owned(),
            data: data
                .as_str()
                .ok_or_else(|| bad("the data is not a string"))?
                .to_owned(),
        });
    }
    Ok(Cast { header, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    fn record(chunks: &[&[u8]]) -> String {
        let mut file = tempfile::tempfile().expect("tempfile");
        let header = CastHeader::now(
            WindowSize {
                cols: 100,
                rows: 30,
            },
            Some("xterm".into()),
        );
        let mut cast = CastWriter::create(file.try_clone().expect("dup"), &header).expect("create");
        for chunk in chunks {
            cast.output(chunk).expect("output");
        }
        cast.resize(WindowSize { cols: 90, rows: 20 })
            .expect("resize");
        cast.finish().expect("finish");
        let mut text = String::new();
        file.rewind().expect("rewind");
        file.read_to_string(&mut text).expect("read");
        text
    }

    #[test]
    fn a_character_split_between_reads_is_kept_whole() {
        let euro = "€".as_bytes();
        let text = record(&[b"price: \x1b[1m", &euro[..1], &euro[1..], b"5\r\n"]);
        let cast = parse(&text).expect("parse");
        assert_eq!(cast.header.width, 100);
        assert_eq!(cast.header.height, 30);
        assert_eq!(cast.header.term.as_deref(), Some("xterm"));
        assert!(cast.header.timestamp.is_some());
        assert_eq!(cast.output(), "price: \x1b[1m€5\r\n");
        assert_eq!(cast.resizes(), vec![WindowSize { cols: 90, rows: 20 }]);
        // The split character did not produce an event of its own.
        assert!(cast.events.iter().all(|e| !e.data.contains('\u{fffd}')));
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let text = record(&[b"a\xffb", &"é".as_bytes()[..1]]);
        let cast = parse(&text).expect("parse");
        assert_eq!(cast.output(), "a\u{fffd}b\u{fffd}");
    }

    #[test]
    fn bad_recordings_name_the_line() {
        let header = r#"{"version": 2, "width": 80, "height": 24}"#;
        let cases = [
            (String::new(), "line 1"),
            (r#"{"version": 1}"#.to_owned(), "version"),
            (
                format!("{header}\n[0.5, \"o\", \"a\"]\n[0.1, \"o\", \"b\"]"),
                "line 3",
            ),
            (format!("{header}\n[0.5, \"o\"]"), "three"),
            (format!("{header}\n[0.5, \"o\", \"a"), "line 2"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).expect_err("must fail");
            assert!(err.to_string().contains(expected), "{text:?}: {err}");
        }
    }
}
