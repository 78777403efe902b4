//! One module per command group, one file per subcommand.

pub mod run;
pub mod session;
