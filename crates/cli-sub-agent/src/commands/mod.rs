//! One module per command group, one file per subcommand.

pub mod completions;
pub mod debug;
pub mod doctor;
pub mod man;
pub mod run;
pub mod session;
