//! Integration tests of the session store, in-process: one test binary, one module per concern.

// Tests lay out and inspect their files by path, as another program would.
#![allow(clippy::disallowed_methods)]

mod parsers;
// Fail points need the `failpoints` feature (`cargo test --all-features`).
#[cfg(feature = "failpoints")]
mod rollback;
