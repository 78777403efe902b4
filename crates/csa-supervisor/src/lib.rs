//! Launching and supervising a csa session's turn: library code the CLI (`csa run`, `csa
//! session resume`) and tests call.
//!
//! A turn's life, and the module that owns each step:
//! 1. [`run`] / [`resume`]: the request, the directory claim (or nesting under an ancestor's
//!    claim: [`nesting`]) and the session (csa-session `create`, `resume`);
//! 2. [`launch`]: containment of the turn's processes ([`contain`]: a cgroup v2 or a process
//!    session, recorded in `membership.toml` before the agent exists), spawning the agent
//!    ([`spawn`]), supervising it ([`supervise`]: output, forwarded signals, orphans reaped as
//!    child subreaper), the end of the turn (leftover processes stopped or let go) and
//!    finalizing (csa-session `finalize`);
//! 3. [`detach`]: a supervisor of its own, re-executed in a new process session, for
//!    `--detach` and for nested runs.
//!
//! Invariants:
//! - a session is its agent's whole process tree: every process the agent starts is a member
//!   from birth, whatever descriptors it closes, and no command reports the directory free
//!   while a member runs in it;
//! - the agent inherits no descriptor of csa's but its standard streams;
//! - signals go only to verified members (csa-process `signal`).

#![warn(missing_docs)]

pub mod contain;
pub mod detach;
pub mod error;
pub mod launch;
pub mod nesting;
pub mod resume;
pub mod run;
pub mod spawn;
pub mod supervise;

pub use error::LaunchError;
pub use launch::{EndOfTurn, Events, Finished, Mode, Silent};
pub use run::{RunRequest, WaitFor};
