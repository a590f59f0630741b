//! CIFAR-10 binary format: records of 3,073 bytes, a label byte (0-9) then the 32x32 red,
//! green and blue planes (row-major). [`CifarFile::rgb`] returns interleaved RGB.

use std::path::Path;

use crate::base::error::{Error, Result};

pub const SIDE: usize = 32;
const RECORD: usize = 1 + 3 * SIDE * SIDE;
pub const CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// A CIFAR-10 binary file in memory.
pub struct CifarFile {
    bytes: Vec<u8>,
}

impl CifarFile {
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(Error::parse(
                path,
                format!("{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records", bytes.len()),
            ));
        }
        if let Some(i) = bytes.chunks_exact(RECORD).position(|r| r[0] > 9) {
            return Err(Error::parse(
                path,
                format!("record {i} has label {} (CIFAR-10 labels are 0-9)", bytes[i * RECORD]),
            ));
        }
        Ok(CifarFile { bytes })
    }
    pub fn len(&self) -> usize {
        self.bytes.len() / RECORD
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn label(&self, i: usize) -> usize {
        self.bytes[i * RECORD] as usize
    }
    /// Image `i` as interleaved 32x32 RGB bytes.
    pub fn rgb(&self, i: usize) -> Vec<u8> {
        let r = &self.bytes[i * RECORD + 1..(i + 1) * RECORD];
        (0..SIDE * SIDE).flat_map(|p| [r[p], r[SIDE * SIDE + p], r[2 * SIDE * SIDE + p]]).collect()
    }
}
