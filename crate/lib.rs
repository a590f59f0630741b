//! edgetune: an int8 vision engine that classifies camera frames and fine-tunes on the
//! user's own samples, in the browser (wasm + WebGPU) and natively (the `edgetune` CLI).
//!
//! Map of the crate (see DESIGN.md). Layers, lowest first; a module imports only from
//! layers above it in this list:
//! - [`base`]: error, tensors, quantization parameters, clock, rng, log, bounded reads.
//! - [`quant`]: calibration, THE requantization of each arithmetic, fake quantization.
//! - [`ops`]: per op, the reference (the spec) and its SIMD kernels, backward passes.
//! - [`model`]: the graph IR, the `.etm` format, preprocessing, labels.
//! - [`gpu`]: wgpu context and one wrapper per WGSL kernel.
//! - [`exec`]: prepared CPU f32 / int8 executors, the GPU plan, the backend interface and
//!   the engine (embedding, then the one head).
//! - [`import`]: ONNX, TFLite and PyTorch readers, ONNX export, the dispatcher.
//! - [`zoo`]: architectures as code (EfficientNet-Lite0, MobileNetV2).
//! - [`data`]: image files and CIFAR-10 records for calibration and evaluation.
//! - [`train`]: losses, optimizers, schedules, metrics, head and block trainers.
//! - [`compress`]: PTQ, pruning, and the QAT / pruning / distillation drivers.
//! - `web` (wasm32 only): the `#[wasm_bindgen]` surface used by the page.
// The threaded wasm module (built with RUSTC_BOOTSTRAP=1, scripts/build-wasm.sh) sleeps its
// helper threads with memory.atomic.wait32, whose intrinsics are not yet stable.
#![cfg_attr(all(target_arch = "wasm32", target_feature = "atomics"), feature(stdarch_wasm_atomic_wait))]

pub mod base;
pub mod compress;
pub mod data;
pub mod exec;
pub mod gpu;
pub mod import;
pub mod model;
pub mod ops;
pub mod quant;
pub mod train;
pub mod zoo;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use base::error::{Error, Result};
pub use base::tensor::{QTensor, Tensor};

/// Engine version (the crate version), shown by the CLI and the page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
