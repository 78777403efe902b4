//! A terminal's window size in character cells, as `TIOCGWINSZ` / `TIOCSWINSZ` carry it
//! (termios(3), tty_ioctl(4)). Sizes that come from the other end of the attach socket are
//! clamped to [`WindowSize::MAX`] so that a client cannot make the supervisor's terminal model
//! allocate without bound.

use std::os::fd::AsFd;

/// Columns × rows, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Width in columns.
    pub cols: u16,
    /// Height in rows.
    pub rows: u16,
}

impl WindowSize {
    /// 80 × 24, the size of a terminal whose size is unknown (a detached session before any
    /// client attached).
    pub const DEFAULT: WindowSize = WindowSize { cols: 80, rows: 24 };

    /// The largest size accepted from a client, per dimension: 1000 cells.
    pub const MAX: u16 = 1000;

    /// This size with each dimension within 1..=[`WindowSize::MAX`].
    pub fn clamped(self) -> WindowSize {
        WindowSize {
            cols: self.cols.clamp(1, Self::MAX),
            rows: self.rows.clamp(1, Self::MAX),
        }
    }

    /// The window size of the terminal `fd` refers to (`TIOCGWINSZ`); `None` when it is not a
    /// terminal or reports a zero dimension (some pseudo-terminals before anyone set a size).
    pub fn of_terminal(fd: impl AsFd) -> Option<WindowSize> {
        let ws = rustix::termios::tcgetwinsize(fd).ok()?;
        (ws.ws_col > 0 && ws.ws_row > 0).then_some(WindowSize {
            cols: ws.ws_col,
            rows: ws.ws_row,
        })
    }

    pub(crate) fn winsize(self) -> rustix::termios::Winsize {
        rustix::termios::Winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

impl std::fmt::Display for WindowSize {
    /// `COLSxROWS`, as asciicast v2 resize events write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.cols, self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_both_dimensions() {
        let huge = WindowSize {
            cols: 60000,
            rows: 0,
        };
        assert_eq!(
            huge.clamped(),
            WindowSize {
                cols: WindowSize::MAX,
                rows: 1
            }
        );
        assert_eq!(WindowSize::DEFAULT.to_string(), "80x24");
    }
}
