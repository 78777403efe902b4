//! A small TOML file of a session, read whole: `result.toml` and `run.toml` are read the same
//! way, with only the error that names a broken file differing.

use std::io;

use serde::de::DeserializeOwned;

use crate::error::{Result, StoreError};

/// Parses what [`crate::dirfd::StoreDir::read_capped`] returned for one file as TOML of type
/// `T`: `Ok(None)` when the file does not exist.
///
/// # Errors
/// `invalid(reason)` (the caller's error naming the file) when the file is larger than its cap
/// or not a regular file (`InvalidData` from the read), not UTF-8, or not TOML of `T`'s shape;
/// [`StoreError::Io`] for other read errors.
pub(crate) fn parse_capped<T: DeserializeOwned>(
    read: io::Result<(Vec<u8>, std::fs::Metadata)>,
    invalid: impl FnOnce(String) -> StoreError,
) -> Result<Option<T>> {
    let bytes = match read {
        Ok((bytes, _)) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(invalid(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => return Err(invalid(e.to_string())),
    };
    toml::from_str(text)
        .map(Some)
        .map_err(|e| invalid(crate::state::one_line(&e)))
}
