//! Execution: networks prepared once per model and run per frame.
//!
//! - [`cpu_f32`] ([`PreparedF32`](cpu_f32::PreparedF32)) and [`cpu_int8`]
//!   ([`PreparedI8`](cpu_int8::PreparedI8)): the CPU executors; everything per model
//!   (packed weights, requantization multipliers) is computed when they are made.
//! - [`gpu_plan`]: the whole int8 network on the GPU, built from the same prepared layers.
//! - [`classifier`]: a model on the CPU with its embedding / logits entry points.
//! - [`backend`]: the one interface the engine drives (quantized input in, embedding out).
//! - [`engine`]: backend choice (`auto` / `cpu` / `gpu`), self-test, recovery, and the one
//!   place the head runs after the embedding, for every backend.

pub mod backend;
pub mod classifier;
pub mod cpu_f32;
pub mod cpu_int8;
pub mod engine;
pub mod gpu_plan;
pub mod profile;
pub mod user_head;

pub(crate) use classifier::check_finite;
pub use classifier::{top_k, Classifier};
