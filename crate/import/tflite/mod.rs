//! TFLite: the flatbuffer schema subset ([`schema`], verified views over the `flatbuffers`
//! crate, no C++ runtime) and the importer to `.etm` ([`import`]), which keeps the file's own
//! quantization and runs it in int8.

pub mod import;
pub mod schema;

pub use import::{import_tflite, OPS};
