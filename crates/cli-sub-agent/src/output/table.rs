//! Tables of text for stdout, in one of two layouts ([`super::Layout`]):
//! - **plain** (not a terminal): every column padded to its widest cell, two spaces between
//!   columns, nothing truncated or hidden, no escape codes, one line per row; scripts can split
//!   lines on whitespace (the last column may contain spaces);
//! - **fitted** (a terminal, or colour forced): within the terminal width. Columns are hidden
//!   whole, in their [`Fit`] order, until the rest fits, and the [`Fit::Truncate`] and
//!   [`Fit::TruncateStart`] columns are cut to the room left, ending (or starting) in `…`. Colour (anstyle's codes) is added only to cells that also
//!   print their meaning as text, and only when [`super::Layout`] says so.
//!
//! Widths are display widths (unicode-width: a CJK character counts two columns); truncation
//! cuts between characters, not grapheme clusters. Every cell is one line: control characters
//! in cell text (a newline or an escape sequence in a description written by another program)
//! are printed escaped (`\n`, `\u{1b}`), so a cell can neither break the one-line-per-row shape
//! nor drive the terminal. No line ends in spaces.
//!
//! Hand-written, not a table crate, for speed: `csa session list` of 10,000 sessions takes about
//! 95 ms, and this module adds about 4 ms to it. Measured with 10,000 rows on this project's
//! machine: comfy-table took 20–30 ms to lay them out, 50 ms with a truncated column, 150 ms
//! with its `custom_styling` (and its colours go through crossterm, which drops colour under
//! `NO_COLOR` even when `--color always` asks for it); tabwriter, which only aligns, added
//! 4–5 ms to the whole command on top of this module's own work.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use anstyle::{AnsiColor, Effects, Style};
use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr as _};

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its header.
    pub header: &'static str,
    /// How it gives way in the fitted layout.
    pub fit: Fit,
}

/// How a column gives way when the fitted layout is too narrow for every column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Always shown, never truncated.
    Keep,
    /// Shown whole, or hidden whole; columns with a lower rank are hidden first.
    Hide(u8),
    /// Cut to the room the other columns leave (`…` marks the cut), down to
    /// [`MIN_TRUNCATED`] columns; below that, hidden at its rank like [`Fit::Hide`].
    Truncate(u8),
    /// Like [`Fit::Truncate`], but the start is cut (`…/repo/sub`): for paths, whose end says
    /// the most.
    TruncateStart(u8),
}

impl Fit {
    /// Whether the column is cut to fit rather than shown whole.
    fn truncates(self) -> bool {
        matches!(self, Fit::Truncate(_) | Fit::TruncateStart(_))
    }
}

/// The narrowest a [`Fit::Truncate`] column is cut to before it is hidden instead.
pub const MIN_TRUNCATED: usize = 12;

/// Spaces between columns.
const GAP: usize = 2;

/// What a cell's colour says (the cell's text always says it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// No colour.
    Plain,
    /// Working or fine (green).
    Good,
    /// Needs attention: dead, failed (red).
    Bad,
    /// Stopped short of done (yellow).
    Warning,
    /// Waiting for the user (cyan).
    Info,
    /// Elsewhere: another machine or PID namespace (magenta).
    Remote,
    /// Finished with; of little interest (dim).
    Muted,
    /// A column header (bold).
    Heading,
}

/// One cell: its text (sanitized, see the module documentation; borrowed when it needs no
/// escaping) and its tone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell<'a> {
    text: Cow<'a, str>,
    tone: Tone,
}

impl<'a> Cell<'a> {
    /// A cell without colour.
    pub fn new(text: impl Into<Cow<'a, str>>) -> Self {
        Cell::toned(text, Tone::Plain)
    }

    /// A cell coloured by `tone`.
    pub fn toned(text: impl Into<Cow<'a, str>>, tone: Tone) -> Self {
        let text = text.into();
        let text = match one_line(&text) {
            Cow::Owned(escaped) => Cow::Owned(escaped),
            Cow::Borrowed(_) => text,
        };
        Cell { text, tone }
    }

    /// Its text as printed.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// `text` with every control character escaped (`\n`, `\t`, `\u{1b}`), so it is one line that
/// cannot move the cursor or change colours.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes `rows` under `columns` in the plain layout. Each row has one cell per column.
///
/// # Errors
/// The errors of writing to `out`.
pub fn write_plain(out: &mut impl Write, columns: &[Column], rows: &[Vec<Cell>]) -> io::Result<()> {
    let widths: Vec<Option<usize>> = content_widths(columns, rows)
        .into_iter()
        .map(Some)
        .collect();
    let plain = |text| (text, Style::new());
    let mut line = Lines::new(out, &widths);
    line.write(columns.iter().map(|c| plain(Cow::Borrowed(c.header))))?;
    for row in rows {
        line.write(row.iter().map(|cell| plain(Cow::Borrowed(cell.text()))))?;
    }
    Ok(())
}

/// Writes `rows` under `columns` in the fitted layout: at most `width` columns wide (unless the
/// [`Fit::Keep`] columns alone are wider), coloured when `color`.
///
/// # Errors
/// The errors of writing to `out`.
pub fn write_fitted(
    out: &mut impl Write,
    columns: &[Column],
    rows: &[Vec<Cell>],
    width: usize,
    color: bool,
) -> io::Result<()> {
    let shown = fit(columns, &content_widths(columns, rows), width);
    let paint = |tone| if color { style(tone) } else { Style::new() };
    let mut line = Lines::new(out, &shown);
    let cut = |text, column: &Column, w: &Option<usize>| match (w, column.fit) {
        (None, _) => Cow::Borrowed(""),
        (Some(w), Fit::TruncateStart(_)) => truncate_start(text, *w),
        (Some(w), _) => truncate(text, *w),
    };
    line.write(
        columns
            .iter()
            .zip(&shown)
            .map(|(c, w)| (cut(c.header, c, w), paint(Tone::Heading))),
    )?;
    for row in rows {
        line.write(
            row.iter()
                .zip(columns)
                .zip(&shown)
                .map(|((cell, c), w)| (cut(&cell.text, c, w), paint(cell.tone))),
        )?;
    }
    Ok(())
}

/// Writes rows as lines: each shown cell (width `Some`) padded to its column's width, columns
/// [`GAP`] apart, styled text between its codes, and no trailing spaces (padding is only written
/// before a later non-empty cell).
struct Lines<'o, 'w, W: Write> {
    out: &'o mut W,
    widths: &'w [Option<usize>],
    line: String,
}

impl<'o, 'w, W: Write> Lines<'o, 'w, W> {
    fn new(out: &'o mut W, widths: &'w [Option<usize>]) -> Self {
        Lines {
            out,
            widths,
            line: String::new(),
        }
    }

    /// Writes one row: one `(text, style)` per column, hidden columns' cells ignored.
    fn write<'c>(&mut self, cells: impl Iterator<Item = (Cow<'c, str>, Style)>) -> io::Result<()> {
        self.line.clear();
        let mut owed = 0;
        for ((text, style), width) in cells.zip(self.widths) {
            let Some(width) = width else {
                continue;
            };
            if !text.is_empty() {
                self.line.extend(std::iter::repeat_n(' ', owed));
                owed = 0;
                if style == Style::new() {
                    self.line.push_str(&text);
                } else {
                    let _ = write!(self.line, "{style}{text}{style:#}");
                }
            }
            owed += width.saturating_sub(text.width()) + GAP;
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }
}

/// `text` cut to `width` display columns, the cut marked by `…`.
fn truncate(text: &str, width: usize) -> Cow<'_, str> {
    if text.width() <= width {
        return Cow::Borrowed(text);
    }
    let mut cut = String::with_capacity(width + 3);
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        cut.push(c);
        used += w;
    }
    cut.push('…');
    Cow::Owned(cut)
}

/// `text` cut to `width` display columns by dropping its start, the cut marked by `…`.
fn truncate_start(text: &str, width: usize) -> Cow<'_, str> {
    if text.width() <= width {
        return Cow::Borrowed(text);
    }
    let mut kept = Vec::new();
    let mut used = 0;
    for c in text.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        kept.push(c);
        used += w;
    }
    let mut cut = String::with_capacity(width + 3);
    cut.push('…');
    cut.extend(kept.into_iter().rev());
    Cow::Owned(cut)
}

/// The colour of a tone (basic ANSI colours, which every colour terminal has).
fn style(tone: Tone) -> Style {
    let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    match tone {
        Tone::Plain => Style::new(),
        Tone::Good => fg(AnsiColor::Green),
        Tone::Bad => fg(AnsiColor::Red),
        Tone::Warning => fg(AnsiColor::Yellow),
        Tone::Info => fg(AnsiColor::Cyan),
        Tone::Remote => fg(AnsiColor::Magenta),
        Tone::Muted => Style::new().effects(Effects::DIMMED),
        Tone::Heading => Style::new().effects(Effects::BOLD),
    }
}

/// The width of the table with every column shown whole (two spaces between columns): what the fitted
/// layout needs to hide and cut nothing.
pub fn natural_width(columns: &[Column], rows: &[Vec<Cell>]) -> usize {
    let widths = content_widths(columns, rows);
    widths.iter().sum::<usize>() + GAP * widths.len().saturating_sub(1)
}

/// The display width of each column's widest cell, header included.
fn content_widths(columns: &[Column], rows: &[Vec<Cell>]) -> Vec<usize> {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.header.width()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.text.width());
        }
    }
    widths
}

/// Which columns the fitted layout shows, and how wide: `None` for a hidden column. Hides
/// [`Fit::Hide`] and [`Fit::Truncate`] columns, lowest rank first, until the shown columns fit
/// in `width` with truncated columns at their narrowest; then gives truncated columns the room
/// left, in column order (never more than their content).
fn fit(columns: &[Column], content: &[usize], width: usize) -> Vec<Option<usize>> {
    let narrowest = |i: usize| {
        if columns[i].fit.truncates() {
            content[i].min(MIN_TRUNCATED)
        } else {
            content[i]
        }
    };
    let mut shown: Vec<bool> = vec![true; columns.len()];
    let needed = |shown: &[bool], each: &dyn Fn(usize) -> usize| -> usize {
        let visible: Vec<usize> = (0..columns.len()).filter(|&i| shown[i]).collect();
        visible.iter().map(|&i| each(i)).sum::<usize>() + GAP * visible.len().saturating_sub(1)
    };
    let mut ranked: Vec<(u8, usize)> = columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.fit {
            Fit::Keep => None,
            Fit::Hide(rank) | Fit::Truncate(rank) | Fit::TruncateStart(rank) => Some((rank, i)),
        })
        .collect();
    ranked.sort_unstable();
    let mut ranked = ranked.into_iter();
    while needed(&shown, &narrowest) > width {
        match ranked.next() {
            Some((_, i)) => shown[i] = false,
            None => break,
        }
    }
    let fixed = needed(&shown, &|i| {
        if columns[i].fit.truncates() {
            0
        } else {
            content[i]
        }
    });
    // Each shown truncated column gets its narrowest width, then the room left goes to them in
    // column order, each up to its content.
    let truncated = |i: usize| shown[i] && columns[i].fit.truncates();
    let reserved: usize = (0..columns.len())
        .filter(|&i| truncated(i))
        .map(narrowest)
        .sum();
    let mut extra = width.saturating_sub(fixed).saturating_sub(reserved);
    (0..columns.len())
        .map(|i| {
            if !shown[i] {
                return None;
            }
            Some(if truncated(i) {
                let more = (content[i] - narrowest(i)).min(extra);
                extra -= more;
                narrowest(i) + more
            } else {
                content[i]
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 4] = [
        Column {
            header: "ID",
            fit: Fit::Keep,
        },
        Column {
            header: "TOOL",
            fit: Fit::Hide(0),
        },
        Column {
            header: "WHEN",
            fit: Fit::Hide(2),
        },
        Column {
            header: "TEXT",
            fit: Fit::Truncate(1),
        },
    ];

    fn rows() -> Vec<Vec<Cell<'static>>> {
        vec![vec![
            Cell::new("0123456789"),
            Cell::new("codex"),
            Cell::new("3 minutes ago"),
            Cell::new("a description that is thirty-nine chars"),
        ]]
    }

    fn fitted(width: usize) -> String {
        let mut out = Vec::new();
        write_fitted(&mut out, &COLUMNS, &rows(), width, false).expect("write");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn fitting_truncates_then_hides_by_rank_and_never_exceeds_the_width() {
        let wide = fitted(200);
        assert!(
            wide.contains("a description that is thirty-nine chars"),
            "{wide}"
        );
        assert!(wide.contains("codex"), "{wide}");
        // 10 + 2 + 5 + 2 + 13 + 2 = 34: the text gets 26 columns, cut with "…".
        let cut = fitted(60);
        assert!(cut.contains("…") && cut.contains("codex"), "{cut}");
        // 10 + 2 + 5 + 2 + 13 + 2 + 12 = 46 > 40: TOOL (rank 0) goes first.
        let narrow = fitted(40);
        assert!(
            !narrow.contains("codex") && narrow.contains("TEXT"),
            "{narrow}"
        );
        // Then TEXT (rank 1), then WHEN (rank 2); ID is kept whatever the width.
        assert!(!fitted(26).contains("TEXT"));
        assert!(fitted(5).contains("0123456789"));
        for width in [200, 60, 40, 26, 20] {
            for line in fitted(width).lines() {
                assert!(line.width() <= width, "{width}: {line:?}");
            }
        }
    }

    #[test]
    fn plain_pads_every_column_and_escapes_control_characters() {
        let mut rows = rows();
        rows.push(vec![
            Cell::new("x"),
            Cell::new("t"),
            Cell::new("w"),
            Cell::new("two\nlines \u{1b}[31mred"),
        ]);
        let mut out = Vec::new();
        write_plain(&mut out, &COLUMNS, &rows).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0], "ID          TOOL   WHEN           TEXT",
            "header aligned with the widest cells"
        );
        assert_eq!(
            lines[2],
            "x           t      w              two\\nlines \\u{1b}[31mred"
        );
    }
}
