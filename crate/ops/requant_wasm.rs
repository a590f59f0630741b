//! [`super::gemm::requantize_channels_last`] with WebAssembly SIMD (wasm32 + `simd128`),
//! for the engine's float-multiplier scheme ([`crate::quant::requantize`]):
//! ```text
//! q = nearest_even(clamp(f32(acc) * m[c], lo - zp, hi - zp)) + zp
//! ```
//! Four lanes per step: `f32x4.convert_i32x4_s` (round to nearest even, like `as f32`), one
//! `f32x4.mul`, `pmax`/`pmin` against the integer bounds, then the scalar code's rounding:
//! add `1.5 * 2^23` (ties to even) and subtract its bit pattern as integers, then the zero
//! point as an integer. Every step is a single x86 instruction in V8 (`f32x4.nearest` and
//! `trunc_sat` cost several, and made requantization a third of the depthwise time). Sixteen
//! results are narrowed with saturation to i8 (a no-op: they are already inside [lo, hi]) and
//! stored at once. Each step is the correctly rounded IEEE operation of the scalar code, so
//! results are bit-identical; the accumulators are finite integers, so NaN never arises.

use core::arch::wasm32::*;

/// The clamp bounds of one requantization, as vectors: `[lo - zp, hi - zp]` in f32 and `zp`.
pub(super) struct Bounds {
    lo: v128,
    hi: v128,
    zp: v128,
}

impl Bounds {
    pub(super) fn new(zp: i32, lo: i32, hi: i32) -> Self {
        Bounds { lo: f32x4_splat((lo - zp) as f32), hi: f32x4_splat((hi - zp) as f32), zp: i32x4_splat(zp) }
    }
}

/// Four accumulators requantized with four multipliers (see the module docs), as i32 lanes.
#[inline(always)]
pub(super) fn requant4(acc: v128, mult: v128, b: &Bounds) -> v128 {
    let f = f32x4_mul(f32x4_convert_i32x4(acc), mult);
    // pmax/pmin (one x86 instruction each; the NaN- and zero-sign-exact max/min are several)
    // equal max/min here: no operand is NaN, and a -0.0 result rounds to 0 like +0.0.
    let f = f32x4_pmin(f32x4_pmax(f, b.lo), b.hi);
    // Round half to even as the scalar code does: adding 1.5 * 2^23 leaves the integer in the
    // low mantissa bits (|f| <= 510), so the bit patterns' difference is that integer.
    let r = f32x4_add(f, f32x4_splat(ROUND_MAGIC));
    i32x4_add(i32x4_sub(r, i32x4_splat(ROUND_MAGIC.to_bits() as i32)), b.zp)
}

/// `1.5 * 2^23`, as in [`crate::quant::requant`].
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `out[r * c + j] = requantize(acc[r * c + j], mults[j], zp, lo, hi)`; `mults.len() == c`.
pub fn requantize_rows(acc: &[i32], mults: &[f32], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    let c = mults.len().max(1);
    let c16 = mults.len() / 16 * 16;
    let bounds = Bounds::new(zp, lo, hi);
    let one = |a: &[i32], m: &[f32]| -> v128 {
        // SAFETY: callers pass slices of at least 4 elements (16 bytes); unaligned loads.
        let (a, m) = unsafe { (v128_load(a.as_ptr() as *const v128), v128_load(m.as_ptr() as *const v128)) };
        requant4(a, m, &bounds)
    };
    for (orow, arow) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
        let mut j = 0;
        while j < c16 {
            let v0 = one(&arow[j..j + 4], &mults[j..j + 4]);
            let v1 = one(&arow[j + 4..j + 8], &mults[j + 4..j + 8]);
            let v2 = one(&arow[j + 8..j + 12], &mults[j + 8..j + 12]);
            let v3 = one(&arow[j + 12..j + 16], &mults[j + 12..j + 16]);
            let q = i8x16_narrow_i16x8(i16x8_narrow_i32x4(v0, v1), i16x8_narrow_i32x4(v2, v3));
            let dst = &mut orow[j..j + 16];
            // SAFETY: `dst` holds exactly 16 bytes; v128_store has no alignment requirement.
            unsafe { v128_store(dst.as_mut_ptr() as *mut v128, q) };
            j += 16;
        }
        for ((o, &a), &m) in orow[c16..].iter_mut().zip(&arow[c16..]).zip(&mults[c16..]) {
            *o = crate::quant::requantize(a, m, zp, lo, hi) as i8;
        }
    }
}
