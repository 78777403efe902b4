//! The csa session store: where sessions live, their files (state.toml, result.toml, liveness
//! files, locks) in upstream `cli-sub-agent`'s format, how they are written safely, and
//! reconcile, which finalizes sessions whose owner died.
//!
//! Invariants every module keeps:
//! - every file operation inside a project or session directory is relative to a directory
//!   descriptor opened without following links and verified ([`dirfd::StoreDir`]): a directory
//!   swapped for a link mid-command never sends a write, a rename or a deletion outside the
//!   state root (this crate's `clippy.toml` bans the path-taking calls);
//! - every write goes through [`atomic::write_atomic`] (temp, fsync, rename or link, fsync of
//!   the directory), so a kill -9 at any instant leaves either the old or the new file;
//! - a session is only mutated while holding its [`lock::ReconcileLock`], after re-reading its
//!   state under the lock, through the verified directory descriptor the lock holds;
//! - nothing that does not parse is rewritten, renamed or deleted: it is reported with its path
//!   (the one exception, asked for with `csa session delete --force`: a dead session whose
//!   state.toml does not parse is moved whole, unchanged, to the quarantine, [`quarantine`]);
//! - a session is declared dead only when every liveness signal says so ([`liveness`]).

#![warn(missing_docs)]

pub mod active;
pub mod atomic;
pub mod check;
pub mod claim;
pub mod completion;
pub mod cooldown;
pub mod create;
pub mod delete;
pub mod dirfd;
pub mod error;
pub mod failpoint;
pub mod finalize;
pub mod inventory;
pub mod kill;
pub mod leftovers;
pub mod liveness;
pub mod lock;
pub mod membership;
pub mod paths;
pub mod quarantine;
pub mod reconcile;
pub mod result;
pub mod resume;
pub mod secure;
pub mod state;
mod toml_file;
pub mod turn_end;
pub mod turns;

pub use dirfd::StoreDir;
pub use error::{Result, StoreError};
