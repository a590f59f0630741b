//! Models from elsewhere: ONNX and TFLite files (behind the `importers` feature, which the
//! page's engine module leaves out), PyTorch legacy checkpoints ([`torch`]), ONNX export,
//! and the dispatcher that picks the reader by a file's name or bytes.

#[cfg(feature = "importers")]
pub mod onnx;
#[cfg(feature = "importers")]
pub mod tflite;
pub mod torch;

use std::path::Path;

#[cfg(feature = "importers")]
use crate::base::error::Result;
#[cfg(feature = "importers")]
use crate::model::etm;

/// Model file formats [`import_file`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    Etm,
    Tflite,
    Onnx,
}

impl SourceFormat {
    /// By extension, else by content: TFLite files carry `TFL3` at byte 4, `.etm` files are
    /// safetensors (an 8-byte header length, then `{`); anything else is tried as ONNX.
    pub fn detect(bytes: &[u8], name: &str) -> Self {
        let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "etm" => SourceFormat::Etm,
            "tflite" => SourceFormat::Tflite,
            "onnx" => SourceFormat::Onnx,
            _ if bytes.get(4..8) == Some(b"TFL3") => SourceFormat::Tflite,
            _ if bytes.get(8) == Some(&b'{') => SourceFormat::Etm,
            _ => SourceFormat::Onnx,
        }
    }
}

/// A model from the bytes of an `.etm`, `.tflite` or `.onnx` file (`name` picks the format
/// with [`SourceFormat::detect`] and names the file in errors); `labels` as the importers take
/// them (ignored for `.etm`, which has its own).
#[cfg(feature = "importers")]
pub fn import_file(bytes: &[u8], name: &str, labels: Option<Vec<String>>) -> Result<etm::ModelFile> {
    match SourceFormat::detect(bytes, name) {
        SourceFormat::Etm => etm::ModelFile::from_bytes(bytes),
        SourceFormat::Tflite => tflite::import_tflite(bytes, name, labels),
        SourceFormat::Onnx => onnx::import::import_onnx(bytes, name, labels),
    }
}
