//! Text read from disk, made safe to print on a terminal.
//!
//! A result's summary quotes the agent's output, and an interactive agent's output is terminal
//! escape sequences (cursor movements, the alternate screen, colours); a result written by
//! another program can hold anything. Printed as it is, such text would clear or redraw the
//! user's screen instead of being read. [`plain`] takes the escape sequences and every other
//! control character out, through `csa_terminal::strip_escapes` (the `vte` parser).

use std::borrow::Cow;

/// `text` with terminal escape sequences and control characters other than `\n` and `\t` taken
/// out (a lone `\r` becomes a line break: `csa_terminal::strip_escapes`). Text without such
/// characters is returned as it is.
pub fn plain(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Cow::Borrowed(text);
    }
    let stripped = csa_terminal::strip_escapes(text.as_bytes());
    Cow::Owned(String::from_utf8_lossy(&stripped).into_owned())
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn plain_text_is_kept_as_it_is() {
        let text = "sh exited with code 0\nlast output:\n\tok";
        assert!(matches!(plain(text), std::borrow::Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn escape_sequences_and_other_controls_are_taken_out() {
        let screen =
            "vim exited\nlast output:\n\u{1b}[?1049h\u{1b}[1;1HHello\u{1b}[0m there\u{7}\n\u{1b}[?1049l";
        assert_eq!(plain(screen), "vim exited\nlast output:\nHello there\n");
    }
}
