//! TFLite: the flatbuffer schema subset ([`schema`], verified views over the `flatbuffers`
//! crate, no C++ runtime) and the importer to `.etm` ([`import`]), which keeps the file's own
//! quantization and runs it in int8; class names and normalization come from the model's
//! TFLite Support metadata when it has some ([`metadata`]).

pub mod import;
pub mod metadata;
pub mod schema;

pub use import::{import_tflite, OPS};
