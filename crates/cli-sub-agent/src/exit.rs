//! The exit-code table: the one place csa's exit codes are defined. docs/cli.md and the README
//! carry the same table; later commands use the same codes.

use std::process::ExitCode;

/// Why csa exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success, or nothing to do (a busy lock and an unreadable result are not errors).
    Success,
    /// 1: `--check` found work; `is-alive` found the session dead; `wait` saw a result other
    /// than success; `doctor` found a problem.
    Negative,
    /// 2: usage error, including a malformed SESSION argument.
    Usage,
    /// 3: some sessions could not be processed (the others were); or a directory of the state
    /// root csa refuses (another user's, writable by group or others, or a symbolic link inside
    /// the state root: csa-session `secure`); or the state directory given explicitly does not
    /// exist.
    Partial,
    /// 4: no such session, or an ambiguous prefix (the message lists the candidates).
    NotFound,
    /// 5: `wait`: the session's owner died without writing a result; the result csa (or
    /// upstream) synthesized for it is not a success, and its exit code was not observed.
    Unobserved,
    /// 75 (`EX_TEMPFAIL`): busy, or not in a state that allows the command.
    Busy,
    /// 124: timeout (as timeout(1)).
    Timeout,
    /// 126: the agent command could not be executed (as the shell).
    CannotExecute,
    /// 127: the agent command was not found (as the shell).
    CommandNotFound,
    /// 128 + N: the agent was killed by signal N (foreground `csa run`).
    Signal(u8),
    /// Foreground `csa run`: the agent's own exit code.
    Agent(u8),
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Negative => 1,
            Exit::Usage => 2,
            Exit::Partial => 3,
            Exit::NotFound => 4,
            Exit::Unobserved => 5,
            Exit::Busy => 75,
            Exit::Timeout => 124,
            Exit::CannotExecute => 126,
            Exit::CommandNotFound => 127,
            Exit::Signal(n) => 128u8.saturating_add(n),
            Exit::Agent(code) => code,
        }
    }
}

impl Exit {
    /// The exit for a numeric code another csa process reported (a supervisor's report):
    /// the table's meaning where the code has one, the agent's code otherwise.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Exit::Success,
            1 => Exit::Negative,
            2 => Exit::Usage,
            3 => Exit::Partial,
            4 => Exit::NotFound,
            75 => Exit::Busy,
            124 => Exit::Timeout,
            126 => Exit::CannotExecute,
            127 => Exit::CommandNotFound,
            code => Exit::Agent(code),
        }
    }
}

/// The exit-code table as users read it: each code (or `126 / 127`, `128+N`) with its meaning,
/// in order. The man pages' EXIT STATUS section is rendered from it; docs/cli.md and the README
/// carry the same rows (tests/cli/exit_codes.rs and the unit test below keep them together).
pub const TABLE: &[(&str, &str)] = &[
    (
        "0",
        "success, or nothing to do (a busy lock and an unreadable result are not errors)",
    ),
    (
        "1",
        "--check found work; is-alive found the session dead; wait saw a result other than \
         success; doctor found a problem",
    ),
    ("2", "usage error (including a malformed SESSION)"),
    (
        "3",
        "some sessions could not be processed (the others were); or a directory csa refuses \
         (another user's, writable by group or others, or a symbolic link inside the state \
         root); or the state directory given with --state-dir/CSA_STATE_DIR does not exist",
    ),
    (
        "4",
        "no such session, or an ambiguous prefix (the message lists the candidates)",
    ),
    (
        "5",
        "wait: the agent's owner died without writing a result, so the result is synthetic \
         (not observed) and not a success",
    ),
    ("75", "busy, or not in a state that allows it"),
    ("124", "timeout"),
    ("126", "the agent command could not be executed"),
    ("127", "the agent command was not found"),
    (
        "128+N",
        "the agent was killed by signal N (foreground csa run); foreground csa run otherwise \
         exits with the agent's own exit code",
    ),
];

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_for_every_code() {
        let rows: Vec<&str> = TABLE.iter().map(|(code, _)| *code).collect();
        for exit in [
            Exit::Success,
            Exit::Negative,
            Exit::Usage,
            Exit::Partial,
            Exit::NotFound,
            Exit::Unobserved,
            Exit::Busy,
            Exit::Timeout,
            Exit::CannotExecute,
            Exit::CommandNotFound,
        ] {
            let code = exit.code().to_string();
            assert!(
                rows.contains(&code.as_str()),
                "no row for {exit:?} ({code})"
            );
        }
        assert!(rows.contains(&"128+N"));
        assert_eq!(rows.len(), 11, "a row without a code: {rows:?}");
    }
}
