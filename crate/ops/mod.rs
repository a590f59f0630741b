//! CPU reference kernels: the spec that every other backend (wasm SIMD, WGSL) is tested
//! against. One file per op family; each has an f32 forward and an int8 forward (i32
//! accumulation, per-channel symmetric weights, asymmetric activations, int32 bias,
//! requantized with [`crate::quant::requantize`]).
//!
//! Layouts (see [`crate::base::tensor`]): activations NHWC, conv weights OHWI, dense weights
//! `[out, in]`. Fast paths (pointwise conv as GEMM, depthwise) give results identical to
//! the general loops: integer arithmetic is exact, and f32 paths sum in the same order.

pub mod activation;
pub mod add;
mod add_simd;
pub mod combine;
pub mod conv;
pub mod conv_shape;
pub mod depthwise;
#[cfg(target_arch = "aarch64")]
mod depthwise_neon;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod depthwise_wasm;
#[cfg(target_arch = "x86_64")]
mod depthwise_x86;
pub mod gemm;
#[cfg(target_arch = "aarch64")]
mod gemm_f32_neon;
#[cfg(target_arch = "x86_64")]
mod gemm_f32_x86;
#[cfg(target_arch = "aarch64")]
mod gemm_neon;
#[cfg(target_arch = "x86_64")]
mod gemm_vnni;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod gemm_wasm;
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
mod gemm_wasm_relaxed;
#[cfg(target_arch = "x86_64")]
mod gemm_x86;
pub mod layout;
pub mod norm;
pub mod pool;
pub mod quantize;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod requant_wasm;
#[cfg(target_arch = "x86_64")]
mod requant_x86;
pub(crate) mod scratch;
pub mod softmax;
mod window;

pub use scratch::{recycle_f32, recycle_i8};
pub use window::Padding;

/// True where the native x86-64 AVX2 paths run (the CPU has AVX2 and `EDGETUNE_CPU_KERNELS`
/// is not `portable`): the one switch every native SIMD kernel checks.
#[cfg(target_arch = "x86_64")]
pub(crate) fn native_avx2() -> bool {
    gemm_x86::avx2()
}

/// Finite-difference gradient checks shared by the backward-pass tests.
#[cfg(test)]
pub(crate) mod gradcheck {
    /// Deterministic pseudo-random values in [-1, 1).
    pub fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Checks `analytic` against central differences of `L(x) = sum(dy * f(x))`, computed in
    /// f64 from f32 forwards; `tol` is relative to the gradient's largest magnitude.
    pub fn check(name: &str, f: &dyn Fn(&[f32]) -> Vec<f32>, x: &[f32], dy: &[f32], analytic: &[f32], tol: f32) {
        assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
        let h = 1e-2f32;
        let loss = |v: &[f32]| f(v).iter().zip(dy).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>();
        let scale = analytic.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for i in 0..x.len() {
            let (mut a, mut b) = (x.to_vec(), x.to_vec());
            a[i] += h;
            b[i] -= h;
            let numeric = ((loss(&a) - loss(&b)) / (2.0 * h as f64)) as f32;
            assert!(
                (numeric - analytic[i]).abs() <= tol * scale,
                "{name}: d/dx[{i}] analytic {} vs numeric {numeric}",
                analytic[i]
            );
        }
    }
}
