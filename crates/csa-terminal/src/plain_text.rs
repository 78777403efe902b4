//! The text of an interactive session's output without terminal escape sequences, for
//! `csa session logs`. The `vte` crate (the parser of Alacritty and of the `vt100` crate,
//! after Paul Williams' DEC ANSI parser state machine) takes the bytes apart; what is kept:
//! - printable characters (invalid UTF-8 as U+FFFD);
//! - `\n` and `\t`;
//! - `\r`: `\r\n` becomes `\n`, and a lone `\r` (a progress line redrawn in place) becomes
//!   `\n`, so each state of the line is its own line.
//!
//! What is dropped: every escape sequence (CSI such as colours and cursor movements, OSC such
//! as window titles, DCS) and every other control character. A full-screen program's text
//! comes out in the order it was drawn, not as its screen looked.

/// `raw` (bytes a program wrote to its terminal) as text, per the module doc.
pub fn strip_escapes(raw: &[u8]) -> Vec<u8> {
    let mut plain = PlainText::default();
    let mut out = plain.push(raw);
    out.extend(plain.finish());
    out
}

/// [`strip_escapes`] for output read in chunks: a sequence (or a UTF-8 character) split
/// between two chunks is taken apart whole.
#[derive(Default)]
pub struct PlainText {
    parser: vte::Parser,
    text: Text,
}

impl std::fmt::Debug for PlainText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainText").finish_non_exhaustive()
    }
}

impl PlainText {
    /// The text of the next `raw` bytes.
    pub fn push(&mut self, raw: &[u8]) -> Vec<u8> {
        self.parser.advance(&mut self.text, raw);
        std::mem::take(&mut self.text.out)
    }

    /// The text still held back at the end (a line ended by a lone `\r`).
    pub fn finish(&mut self) -> Vec<u8> {
        self.text.end_line_if_cr();
        std::mem::take(&mut self.text.out)
    }
}

#[derive(Default)]
struct Text {
    out: Vec<u8>,
    pending_cr: bool,
}

impl Text {
    fn end_line_if_cr(&mut self) {
        if std::mem::take(&mut self.pending_cr) {
            self.out.push(b'\n');
        }
    }
}

impl vte::Perform for Text {
    fn print(&mut self, c: char) {
        self.end_line_if_cr();
        let mut utf8 = [0u8; 4];
        self.out
            .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\r' => self.pending_cr = true,
            b'\n' => {
                self.pending_cr = false;
                self.out.push(b'\n');
            }
            b'\t' => {
                self.end_line_if_cr();
                self.out.push(b'\t');
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_give_the_text_of_the_whole() {
        let raw: &[u8] = b"\x1b]0;title\x07\x1b[1;31mred\x1b[0m caf\xc3\xa9\r\n10%\r50%\r";
        let whole = strip_escapes(raw);
        for cut in 0..raw.len() {
            let mut plain = PlainText::default();
            let mut out = plain.push(&raw[..cut]);
            out.extend(plain.push(&raw[cut..]));
            out.extend(plain.finish());
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    #[test]
    fn keeps_text_and_drops_sequences() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"\x1b]0;title\x07\x1b[?1049h\x1b[1;31mred\x1b[0m plain\r\n\x1b[2;5Hmoved\ttab",
                b"red plain\nmoved\ttab",
            ),
            (b"10%\r50%\r100%\r\ndone\r", b"10%\n50%\n100%\ndone\n"),
            (b"bell\x07 back\x08space", b"bell backspace"),
            (b"\x1bP1$r0m\x1b\\dcs gone", b"dcs gone"),
            (
                "caf\u{e9} \u{2603}".as_bytes(),
                "caf\u{e9} \u{2603}".as_bytes(),
            ),
            (b"bad \xff byte", "bad \u{fffd} byte".as_bytes()),
        ];
        for (raw, text) in cases {
            assert_eq!(
                String::from_utf8_lossy(&strip_escapes(raw)),
                String::from_utf8_lossy(text),
                "{raw:?}"
            );
        }
    }
}
