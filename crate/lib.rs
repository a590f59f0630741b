//! edgetune: an int8 vision engine that classifies camera frames and fine-tunes on the
//! user's own samples, in the browser (wasm + WebGPU) and natively (the `edgetune` CLI).
//!
//! Map of the crate (see DESIGN.md):
//! - [`error`]: the one [`Error`] type.
//! - [`tensor`]: [`Tensor`] (f32) and [`QTensor`] (int8/int32 + [`quant::QParams`]).
//! - [`quant`]: quantization parameters and the one requantization function.
//! - [`ops`]: CPU reference kernels, the numerics spec for every backend.
//! - [`onnx`]: ONNX protobuf reading, the conformance runner over ONNX node tests, import
//!   and export.
//! - [`tflite`]: TFLite flatbuffer reading and import.
//! - [`train`]: losses, optimizers, schedules, metrics and the trainer.
//! - [`gpu`]: the WebGPU backend: adapter probing, WGSL int8 kernels, the network's plan.
//! - [`engine`]: backend choice (`auto`/`cpu`/`gpu`), GPU self-test, lost-device recovery.
//! - `web` (wasm32 only): the `#[wasm_bindgen]` surface used by the page.

pub mod data;
pub mod engine;
pub mod error;
pub mod gpu;
pub mod model;
#[cfg(feature = "importers")]
pub mod onnx;
pub mod ops;
pub mod preprocess;
pub mod quant;
pub mod tensor;
#[cfg(feature = "importers")]
pub mod tflite;
pub mod train;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
pub use tensor::{QTensor, Tensor};

/// Engine version (the crate version), shown by the CLI and the page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
