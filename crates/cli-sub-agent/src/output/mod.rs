//! Human output on stdout: whether it gets colour, whether it is fitted to a terminal, and the
//! table and relative-time renderers built on that ([`table`], [`time`]).
//!
//! Invariants:
//! - The decision is made once per command ([`Layout::of_stdout`]: a few `isatty` and
//!   window-size `ioctl` calls), never per row.
//! - Colour never carries meaning on its own: every coloured cell also prints its word, so output
//!   reads the same under `--color never`, `NO_COLOR` or a monochrome terminal.
//! - Output that is not going to a terminal (and whose colour is not forced) is plain text with
//!   stable columns: no escape codes, no truncation, exact timestamps (for scripts and tests).

pub mod table;
pub mod text;
pub mod time;

use std::io::IsTerminal as _;

use anstream::ColorChoice;

/// The `--color` option: when stdout gets colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    /// Colour on a terminal (TERM set, not dumb); NO_COLOR turns it off, CLICOLOR_FORCE on.
    #[default]
    Auto,
    /// Always colour (and fit tables to the width), even into a pipe; overrides NO_COLOR.
    Always,
    /// Never colour; overrides CLICOLOR_FORCE.
    Never,
}

/// Records the `--color` choice for the whole process (anstream's global [`ColorChoice`], which
/// [`Layout::of_stdout`] then applies with the environment). Call once, before any output.
pub fn init_color(when: ColorWhen) {
    let choice = match when {
        ColorWhen::Auto => ColorChoice::Auto,
        ColorWhen::Always => ColorChoice::Always,
        ColorWhen::Never => ColorChoice::Never,
    };
    choice.write_global();
}

/// How human output is laid out on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Not a terminal, and colour not forced: aligned columns, no escape codes, no truncation,
    /// exact (RFC 3339) timestamps.
    Plain,
    /// A terminal, or colour forced (`--color always`, `CLICOLOR_FORCE`): the table is fitted to
    /// `width` columns and times are relative ("3 minutes ago").
    Fitted {
        /// Terminal columns available.
        width: usize,
        /// Whether to emit ANSI colour.
        color: bool,
    },
}

/// Width used when the terminal's cannot be found (the traditional terminal width).
pub const DEFAULT_WIDTH: usize = 80;

impl Layout {
    /// The layout for stdout. Colour is anstream's decision ([`init_color`]'s choice, then
    /// `NO_COLOR`, `CLICOLOR_FORCE`, `CLICOLOR`, `TERM` and whether stdout is a terminal); the
    /// width is [`terminal_width`]'s.
    pub fn of_stdout() -> Layout {
        let stdout = std::io::stdout();
        let color = anstream::AutoStream::choice(&stdout) != ColorChoice::Never;
        if !color && !stdout.is_terminal() {
            return Layout::Plain;
        }
        Layout::Fitted {
            width: terminal_width(),
            color,
        }
    }
}

/// The width to fit: `COLUMNS` when it is a positive integer (as shells export it, and so that
/// tests and `watch` can force one), else the window size of stdout's terminal, else of stderr's
/// (for `--color always | less -R`), else [`DEFAULT_WIDTH`].
pub fn terminal_width() -> usize {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return columns;
    }
    terminal_size::terminal_size_of(std::io::stdout())
        .or_else(|| terminal_size::terminal_size_of(std::io::stderr()))
        .map_or(DEFAULT_WIDTH, |(terminal_size::Width(w), _)| usize::from(w))
}
