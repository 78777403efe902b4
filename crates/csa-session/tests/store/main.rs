//! Integration tests of the session store, in-process: one test binary, one module per concern.

mod parsers;
// Fail points need the `failpoints` feature (`cargo test --all-features`).
#[cfg(feature = "failpoints")]
mod rollback;
