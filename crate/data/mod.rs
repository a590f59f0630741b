//! Reading inputs: image files (via the `image` crate, native only), the CIFAR-10 binary
//! format, and label lists. Sources for calibration and evaluation are named
//! `cifar10:PATH` (a CIFAR-10 `.bin` file) or a folder of images.

pub mod cifar;
#[cfg(not(target_arch = "wasm32"))]
pub mod images;
pub mod labels;

use std::path::Path;

use crate::error::{Error, Result};

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
