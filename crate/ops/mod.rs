//! CPU reference kernels: the spec that every other backend (wasm SIMD, WGSL) is tested
//! against. One file per op family; each has an f32 forward and an int8 forward (i32
//! accumulation, per-channel symmetric weights, asymmetric activations, int32 bias,
//! requantized with [`crate::quant::requantize`]).
//!
//! Layouts (see [`crate::tensor`]): activations NHWC, conv weights OHWI, dense weights
//! `[out, in]`. Fast paths (pointwise conv as GEMM, depthwise) give results identical to
//! the general loops: integer arithmetic is exact, and f32 paths sum in the same order.

pub mod activation;
pub mod add;
pub mod conv;
pub mod gemm;
pub mod layout;
pub mod norm;
pub mod pool;
pub mod quantize;
pub mod softmax;
mod window;

pub use window::Padding;
