//! Named fault and crash points for tests.
//!
//! With the `failpoints` cargo feature, each `failpoint!("name")` is a `fail` crate fail point
//! that tests configure by name (in-process with `fail::cfg`, or in the `csa` binary through the
//! `FAILPOINTS` environment variable, e.g. `FAILPOINTS=reconcile::before_state_write=return`).
//! An action of `return` makes the enclosing function return an injected I/O error. Without the
//! feature (release builds), the macro expands to nothing.

/// Declares a fail point; see the module docs. Usable in functions returning
/// `Result<_, E>` where `E: From<std::io::Error>`.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            fail::fail_point!($name, |_| {
                Err(::std::io::Error::other(concat!("injected fault at ", $name)).into())
            });
        }
    };
}
