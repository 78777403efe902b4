//! Observing one recorded pid for the verdict ([`crate::verdict`]): is it running, with which
//! start time, and does it carry the session's marker or name the session on its command line?
//! Reads only what the verdict will look at.

use crate::verdict::Observed;
use crate::{Probe, StartTime};

/// What identifies a session's processes, and what was recorded about one of them.
#[derive(Debug, Clone, Copy)]
pub struct Identify<'a> {
    /// The session's ULID: the marker is `CSA_SESSION_ID=<ULID>` in the environment.
    pub session_id: &'a str,
    /// Byte strings whose presence in a command line names the session (its id, its
    /// directory), for processes recorded without a start time (or with one this backend
    /// cannot compare).
    pub names: &'a [&'a [u8]],
    /// The start time recorded with the pid.
    pub recorded: Option<StartTime>,
    /// Whether the marker is needed too (csa recorded the pid as an agent).
    pub marker_required: bool,
}

/// The environment entry that marks a process of session `id`: `CSA_SESSION_ID=<id>`.
pub fn marker_entry(id: &str) -> String {
    format!("CSA_SESSION_ID={id}")
}

/// Probes `pid` and reads what [`crate::verdict::decide`] needs to identify it.
pub fn observe(pid: u32, what: &Identify<'_>) -> Observed {
    let start_time = match crate::probe(pid) {
        Probe::Invalid => return Observed::Invalid,
        Probe::Exited { zombie } => return Observed::Exited { zombie },
        Probe::Running { start_time } => start_time,
    };
    let marker = || crate::environ_contains(pid, marker_entry(what.session_id).as_bytes());
    let compared = what
        .recorded
        .zip(start_time)
        .and_then(|(recorded, now)| StartTime::same_process(recorded, now));
    if what.recorded.is_some() && (compared.is_some() || start_time.is_none()) {
        // The marker matters only when the start times match and it is required.
        let needed = compared == Some(true) && what.marker_required;
        return Observed::Running {
            start_time,
            marker: if needed { marker() } else { None },
            names_session: None,
        };
    }
    // No start time recorded, or one this backend cannot compare: upstream's context rules.
    let names_session = crate::cmdline_contains(pid, what.names);
    if names_session != Some(false) {
        return Observed::Running {
            start_time,
            marker: None,
            names_session,
        };
    }
    match marker() {
        Some(found) => Observed::Running {
            start_time,
            marker: Some(found),
            names_session,
        },
        // Unreadable: the process may have exited meanwhile (then it is not running).
        None if !crate::probe(pid).is_running() => Observed::Exited { zombie: false },
        None => Observed::Running {
            start_time,
            marker: None,
            names_session,
        },
    }
}
