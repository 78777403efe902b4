//! How the agent ended, as the supervisor tells attached clients.

use std::process::ExitStatus;

/// The agent's end: its exit code, or the signal that killed it (wait(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentExit {
    /// Exited with this code (0-255).
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl AgentExit {
    /// From a reaped child's status. A status with neither a code nor a signal (a stopped
    /// child, which `wait` does not return) counts as code 1.
    pub fn from_status(status: ExitStatus) -> AgentExit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => AgentExit::Code(code),
            (None, Some(sig)) => AgentExit::Signal(sig),
            (None, None) => AgentExit::Code(1),
        }
    }

    /// The status a shell would report: the code, or 128 + the signal number, within 0-255.
    pub fn shell_code(self) -> u8 {
        let code = match self {
            AgentExit::Code(code) => code,
            AgentExit::Signal(sig) => 128 + sig,
        };
        u8::try_from(code & 0xff).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn codes_and_signals_as_a_shell_reports_them() {
        assert_eq!(
            AgentExit::from_status(ExitStatus::from_raw(7 << 8)),
            AgentExit::Code(7)
        );
        assert_eq!(
            AgentExit::from_status(ExitStatus::from_raw(9)),
            AgentExit::Signal(9)
        );
        assert_eq!(AgentExit::Code(7).shell_code(), 7);
        assert_eq!(AgentExit::Signal(15).shell_code(), 143);
    }
}
