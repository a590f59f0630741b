//! Reading untrusted files with a size bound.

use std::path::Path;

use crate::base::error::{Error, Result};

/// Reads a whole file, refusing (before reading) files larger than `max_bytes`: untrusted
/// model and tensor files must not make the engine allocate without bound.
pub fn read_limited(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > max_bytes {
        return Err(Error::parse(
            path,
            format!("file is {} bytes, larger than the {max_bytes}-byte limit", meta.len()),
        ));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
