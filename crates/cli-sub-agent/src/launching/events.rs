//! What `csa run` and `csa session resume` say on stderr as a turn goes (csa-supervisor
//! `Events`): the session banner, waiting for a busy directory or session lock, stopping
//! leftover processes.
//! `-q` (and a re-executed supervisor, whose stderr is not the user's) silences the banner.

use std::path::Path;
use std::time::Duration;

use csa_supervisor::Events;

/// Prints the events on stderr.
#[derive(Debug)]
pub struct Printer {
    quiet: bool,
}

impl Printer {
    /// A printer; `quiet` keeps the banner off (waiting and stopping are still said: they
    /// explain a pause).
    pub fn new(quiet: bool) -> Self {
        Printer { quiet }
    }
}

impl Events for Printer {
    fn waiting_for_dir(&mut self, dir: &Path, who: &str) {
        eprintln!(
            "csa: waiting for {}: {who} is running (Ctrl-C to stop waiting)",
            dir.display()
        );
    }

    fn started(&mut self, id: &str, turn: u32) {
        if self.quiet {
            return;
        }
        if turn > 1 {
            eprintln!("csa: session {id} (turn {turn})");
        } else {
            eprintln!("csa: session {id}");
        }
    }

    fn waiting_for_lock(&mut self, holder: &csa_session::lock::Holder, bound: Duration) {
        crate::commands::session::say_waiting(bound)(holder);
    }

    fn stopping_leftovers(&mut self, count: usize, grace: Duration) {
        eprintln!(
            "csa: the agent exited and left {count} process(es) running: stopping them (SIGTERM, then SIGKILL after {})",
            humantime::format_duration(grace)
        );
    }
}
