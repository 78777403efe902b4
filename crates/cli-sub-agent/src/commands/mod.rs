//! One module per command group, one file per subcommand.

pub mod debug;
pub mod run;
pub mod session;
