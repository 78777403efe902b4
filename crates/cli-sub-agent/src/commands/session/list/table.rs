//! `csa session list`'s table for humans: its columns, how ids and projects are shortened, and
//! the layout ([`crate::output::Layout`]) it is written in.
//!
//! - **Ids.** The plain layout (not a terminal) always prints whole ids. The fitted layout
//!   prints them whole when the table fits the terminal; when it does not, each id is cut to
//!   its shortest prefix that no other session id under the state roots shares, and at least
//!   [`MIN_ID_PREFIX`] characters (as jj and git abbreviate ids), so that what is shown can be
//!   pasted as a SESSION argument from anywhere. `--long-ids` keeps them whole.
//! - **Projects.** A PROJECT column is shown when the listing covers several project
//!   directories (`--all-projects`, `--nested`, `--repo`): the session's `project_path`, with
//!   the home directory written `~`, cut from its start (`…/repo/sub`) when the terminal is
//!   narrow.

use std::io::Write;
use std::path::Path;

use chrono::Utc;
use csa_session::inventory::{SessionSummary, Status};
use csa_session::paths::StateRoots;

use crate::output::table::{self, Cell, Column, Fit, Tone};
use crate::output::time::Ago;
use crate::output::Layout;

/// The fewest characters of a session id the fitted table shows (8, as jj and git).
pub const MIN_ID_PREFIX: usize = 8;

/// What the table shows besides the fixed columns.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// Show the PROJECT column.
    pub project: bool,
    /// Never shorten ids (`--long-ids`).
    pub long_ids: bool,
    /// The state roots, whose every session id a shortened id must not be a prefix of.
    pub roots: &'a StateRoots,
}

/// The columns, in order. When the terminal is narrow, TOOL goes first, then the description
/// (after being cut down), then RESULT, then PROJECT (after being cut down), then LAST ACCESSED;
/// SESSION and STATUS always stay.
fn columns(project: bool) -> Vec<Column> {
    let column = |header, fit| Column { header, fit };
    let mut columns = vec![column("SESSION", Fit::Keep), column("STATUS", Fit::Keep)];
    if project {
        columns.push(column("PROJECT", Fit::TruncateStart(3)));
    }
    columns.extend([
        column("RESULT", Fit::Hide(2)),
        column("TOOL", Fit::Hide(0)),
        column("LAST ACCESSED", Fit::Hide(4)),
        column("DESCRIPTION", Fit::Truncate(1)),
    ]);
    columns
}

/// The colour of each status; the word is always printed too.
fn tone(status: Status) -> Tone {
    match status {
        Status::Running => Tone::Good,
        Status::Orphaned => Tone::Bad,
        Status::Foreign => Tone::Remote,
        Status::Available => Tone::Info,
        Status::Retired => Tone::Muted,
        Status::ToolExhausted => Tone::Warning,
    }
}

/// Writes `rows` as a table in `layout`.
///
/// # Errors
/// The errors of writing to `out`.
pub fn print(
    out: &mut impl Write,
    rows: &[SessionSummary],
    layout: Layout,
    options: Options<'_>,
) -> std::io::Result<()> {
    let columns = columns(options.project);
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .filter(|h| h.is_absolute() && h != Path::new("/"));
    let ago = Ago::new(Utc::now());
    let fitted = matches!(layout, Layout::Fitted { .. });
    let cells = |ids: &[&str]| -> Vec<Vec<Cell<'_>>> {
        rows.iter()
            .zip(ids)
            .map(|(s, id)| {
                let mut row = vec![
                    Cell::new((*id).to_owned()),
                    Cell::toned(status_text(s), tone(s.status)),
                ];
                if options.project {
                    row.push(Cell::new(abbreviate_home(&s.project_path, home.as_deref())));
                }
                row.extend([
                    Cell::new(s.result_status.as_deref().unwrap_or("-")),
                    Cell::new(s.tool.as_deref().unwrap_or("-")),
                    if fitted {
                        Cell::new(ago.format_rfc3339(&s.last_accessed))
                    } else {
                        Cell::new(s.last_accessed.as_str())
                    },
                    Cell::new(s.description.as_deref().unwrap_or_default()),
                ]);
                row
            })
            .collect()
    };
    let whole: Vec<&str> = rows.iter().map(|s| s.session_id.as_str()).collect();
    match layout {
        Layout::Plain => table::write_plain(out, &columns, &cells(&whole)),
        Layout::Fitted { width, color } => {
            let mut body = cells(&whole);
            if !options.long_ids && table::natural_width(&columns, &body) > width {
                if let Some(universe) = all_ids(options.roots) {
                    let short = shortest_prefixes(&whole, &universe);
                    let short: Vec<&str> = short.iter().map(String::as_str).collect();
                    body = cells(&short);
                }
            }
            table::write_fitted(out, &columns, &body, width, color)
        }
    }
}

/// `path` with the home directory `home` written `~` (`~` itself, or `~/src/csa`).
pub fn abbreviate_home(path: &str, home: Option<&Path>) -> String {
    let Some(home) = home.and_then(Path::to_str) else {
        return path.to_owned();
    };
    let home = home.trim_end_matches('/');
    match path.strip_prefix(home) {
        Some("") => "~".to_owned(),
        Some(rest) if rest.starts_with('/') => format!("~{rest}"),
        _ => path.to_owned(),
    }
}

/// Every session id under `roots`, sorted; `None` when a directory cannot be read (ids are then
/// shown whole, since a prefix could not be proved unique).
fn all_ids(roots: &StateRoots) -> Option<Vec<String>> {
    let mut ids = Vec::new();
    for root in roots.iter() {
        for project in csa_session::paths::all_projects(root).ok()? {
            ids.extend(project.session_ids().ok()?);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Some(ids)
}

/// For each of `ids`, its shortest prefix of at least [`MIN_ID_PREFIX`] characters that starts
/// no other id of `universe` (sorted; `ids` need not be in it). An id that another id of the
/// universe starts with entirely stays whole.
pub fn shortest_prefixes(ids: &[&str], universe: &[String]) -> Vec<String> {
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    ids.iter()
        .map(|id| {
            let at = universe.partition_point(|u| u.as_str() < *id);
            let before = at.checked_sub(1).map(|i| universe[i].as_str());
            let after = universe[at..].iter().map(String::as_str).find(|u| u != id);
            let shared = [before, after]
                .into_iter()
                .flatten()
                .map(|other| common(id, other))
                .max()
                .unwrap_or(0);
            let len = (shared + 1).max(MIN_ID_PREFIX).min(id.len());
            id[..len].to_owned()
        })
        .collect()
}

/// The STATUS cell: the status, and for a running interactive session whether one can attach
/// (`running, attachable`) or who is (`running, attached`, `running, attached +2 watching`).
fn status_text(s: &SessionSummary) -> String {
    match s.terminal {
        Some(t) if t.writer || t.watchers > 0 => {
            let mut text = format!("{}, attached", s.status.as_str());
            if t.watchers > 0 {
                text.push_str(&format!(" +{} watching", t.watchers));
            }
            text
        }
        Some(t) if t.attachable => format!("{}, attachable", s.status.as_str()),
        // Alive only by the grace for fresh output: say so, not a bare "running".
        _ if s
            .liveness
            .as_deref()
            .is_some_and(|l| l.starts_with("alive: processes gone")) =>
        {
            format!("{}, processes gone", s.status.as_str())
        }
        _ => s.status.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_at_least_eight_characters() {
        let universe: Vec<String> = [
            "01M90XTCEET4PBPD2FJ7MV21JA",
            "01M90XTCEET4PBPD2FJ7MV21JB",
            "01M90XTDAAAAAAAAAAAAAAAAAA",
            "01M91AAAAAAAAAAAAAAAAAAAAA",
        ]
        .map(str::to_owned)
        .to_vec();
        let ids: Vec<&str> = universe.iter().map(String::as_str).collect();
        assert_eq!(
            shortest_prefixes(&ids, &universe),
            [
                "01M90XTCEET4PBPD2FJ7MV21JA",
                "01M90XTCEET4PBPD2FJ7MV21JB",
                "01M90XTD",
                "01M91AAA",
            ]
        );
        // An id outside the universe is still told apart from its neighbours.
        assert_eq!(
            shortest_prefixes(&["01M90XTDB0000000000000000A"], &universe),
            ["01M90XTDB"]
        );
    }

    #[test]
    fn home_becomes_a_tilde() {
        let home = Some(Path::new("/home/u"));
        assert_eq!(abbreviate_home("/home/u", home), "~");
        assert_eq!(abbreviate_home("/home/u/src/csa", home), "~/src/csa");
        assert_eq!(abbreviate_home("/home/user2/x", home), "/home/user2/x");
        assert_eq!(abbreviate_home("/srv/x", None), "/srv/x");
        assert_eq!(
            abbreviate_home("/home/u/x", Some(Path::new("/home/u/"))),
            "~/x"
        );
    }
}
