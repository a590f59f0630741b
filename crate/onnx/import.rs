//! ONNX -> `.etm` (in progress).
use crate::error::{Error, Result};
use crate::model::etm::ModelFile;

pub fn import_onnx(_bytes: &[u8], file: &str, _labels: Option<Vec<String>>) -> Result<ModelFile> {
    Err(Error::unsupported(format!("{file}: ONNX import")))
}
