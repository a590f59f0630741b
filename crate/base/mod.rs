//! The leaf layer: what every other module uses and which uses nothing of the crate's own.
//!
//! - [`error`]: the one [`Error`](error::Error) enum and [`Result`](error::Result).
//! - [`tensor`]: [`Tensor`](tensor::Tensor) (f32) and [`QTensor`](tensor::QTensor) (int8 / int32 with
//!   its [`QParams`](qparams::QParams)); dense row-major, activations NHWC.
//! - [`qparams`]: scales and zero points, per tensor or per axis (re-exported by [`crate::quant`]).
//! - [`clock`], [`rng`], [`log`], [`io`]: milliseconds, a seeded generator, event lines, size-bounded reads.
//! - [`pool`]: the fork-join loop the kernels split work with (threads in the threaded wasm module).

pub mod clock;
pub mod error;
pub mod io;
pub mod log;
pub mod pool;
pub mod qparams;
pub mod rng;
pub mod tensor;
