//! Quantization: parameters, the one requantization function, and f32 <-> int8 conversion.
//!
//! Affine quantization: `real = (q - zero_point) * scale`.
//! - Weights: int8, symmetric per output channel (zero point 0, values in [-127, 127]).
//! - Activations: int8, asymmetric per tensor (scale, zero point in [-128, 127]).
//! - Bias: int32 with `scale = input_scale * weight_scale[c]`, zero point 0.
//!
//! See [`requant`] for how int32 accumulators become int8 (the numerics spec that
//! every backend, CPU, wasm and WGSL, reproduces bit-exactly), and [`fake_quant`] for the
//! quantize-dequantize of quantization-aware training.

pub mod calibrate;
pub mod fake_quant;
pub mod requant;
pub mod tflite;

pub use crate::base::qparams::QParams;
pub use requant::{
    dequantize, quantize_value, requantize, round_multiplier_mantissa, Activation, AddRequant, OrtAddRequant,
    OutputQuant, Requant, ADD_MULTIPLIER_MANTISSA_BITS,
};
