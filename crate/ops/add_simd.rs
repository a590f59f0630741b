//! The engine's int8 residual add ([`crate::quant::AddRequant`]) on SIMD lanes: x86-64 AVX2
//! (native, where [`super::gemm_x86::avx2`] is true), aarch64 NEON (where
//! [`super::gemm_neon::neon`] is), wasm simd128 (the page's engine). Elsewhere, and for the
//! tail of a slice, the scalar spec.
//!
//! `y = clamp_round(f32(a - za) * ma + f32(b - zb) * mb, lo - zy, hi - zy) + zy`
//!
//! Each lane takes the scalar spec's own steps, in its order: the i32 difference, the
//! conversion to f32 (exact: |a - za| <= 255), the two multiplies (exact: `ma`, `mb` have
//! 15 significant bits), one rounded add, the clamp to the integer bounds in f32 (`max` then
//! `min`; no NaN can occur, every operand being finite), then round half to even
//! (`vcvtps2dq` under the default MXCSR, NEON's `fcvtns`, wasm's `f32x4.nearest`; the scalar
//! spec's magic-number rounding gives the same integer for |x| <= 510) and the zero point added
//! as an integer. The clamped value plus the zero point lies in `[lo, hi]`, so the narrowing
//! packs never saturate. Bit-identical to [`crate::quant::AddRequant::apply`] (tested on
//! every pair of bytes below, and natively for NEON under qemu in `npm test`).
//!
//! In an EfficientNet-Lite0 pass the scalar loop took ~5% of the native int8 time.

use crate::quant::AddRequant;

/// `out[i] = rq.apply(a[i], b[i])` for `i < out.len()` (`a`, `b` at least as long), on the
/// widest lanes this build and CPU have.
pub(super) fn add_i8_requant_slice(a: &[i8], b: &[i8], rq: &AddRequant, out: &mut [i8]) {
    let n = out.len().min(a.len()).min(b.len());
    let done = lanes(&a[..n], &b[..n], rq, &mut out[..n]);
    for ((o, &x), &y) in out[done..n].iter_mut().zip(&a[done..n]).zip(&b[done..n]) {
        *o = rq.apply(x, y);
    }
}

/// The SIMD part: how many leading elements it wrote (a multiple of its block).
#[cfg(target_arch = "x86_64")]
fn lanes(a: &[i8], b: &[i8], rq: &AddRequant, out: &mut [i8]) -> usize {
    if !super::gemm_x86::avx2() {
        return 0;
    }
    // SAFETY: AVX2 is present; every access is inside the first `32 * (len / 32)` elements
    // of the three equal-length slices.
    unsafe { x86::add_i8_avx2(a, b, rq, out) }
}

#[cfg(target_arch = "aarch64")]
fn lanes(a: &[i8], b: &[i8], rq: &AddRequant, out: &mut [i8]) -> usize {
    if !super::gemm_neon::neon() {
        return 0;
    }
    // SAFETY: NEON is present; every access is inside the first `16 * (len / 16)` elements
    // of the three equal-length slices.
    unsafe { neon::add_i8_neon(a, b, rq, out) }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn lanes(a: &[i8], b: &[i8], rq: &AddRequant, out: &mut [i8]) -> usize {
    wasm::add_i8_simd128(a, b, rq, out)
}

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
fn lanes(_: &[i8], _: &[i8], _: &AddRequant, _: &mut [i8]) -> usize {
    0
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::AddRequant;
    use core::arch::x86_64::*;

    /// The constants of one call, in vectors.
    #[derive(Clone, Copy)]
    struct Lanes {
        za: __m256i,
        zb: __m256i,
        zy: __m256i,
        ma: __m256,
        mb: __m256,
        lo: __m256,
        hi: __m256,
    }

    /// Eight lanes through the float steps (module docs): bytes at `pa`, `pb` -> i32 results.
    /// Inlined into its `avx2` caller (a closure there would not be compiled for AVX2).
    #[inline(always)]
    unsafe fn group(pa: *const i8, pb: *const i8, k: Lanes) -> __m256i {
        let x = _mm256_cvtepi8_epi32(_mm_loadl_epi64(pa as *const __m128i));
        let y = _mm256_cvtepi8_epi32(_mm_loadl_epi64(pb as *const __m128i));
        let ta = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(x, k.za)), k.ma);
        let tb = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(y, k.zb)), k.mb);
        let t = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(ta, tb), k.lo), k.hi);
        _mm256_add_epi32(_mm256_cvtps_epi32(t), k.zy)
    }

    /// 32 bytes per step: four groups of eight lanes, then packed back in sequence.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn add_i8_avx2(a: &[i8], b: &[i8], rq: &AddRequant, out: &mut [i8]) -> usize {
        let k = Lanes {
            za: _mm256_set1_epi32(rq.zero_point_a),
            zb: _mm256_set1_epi32(rq.zero_point_b),
            zy: _mm256_set1_epi32(rq.zero_point),
            ma: _mm256_set1_ps(rq.multiplier_a),
            mb: _mm256_set1_ps(rq.multiplier_b),
            lo: _mm256_set1_ps((rq.lo - rq.zero_point) as f32),
            hi: _mm256_set1_ps((rq.hi - rq.zero_point) as f32),
        };
        let blocks = out.len() / 32;
        for i in 0..blocks {
            let (pa, pb) = (a.as_ptr().add(32 * i), b.as_ptr().add(32 * i));
            let q0 = group(pa, pb, k);
            let q1 = group(pa.add(8), pb.add(8), k);
            let q2 = group(pa.add(16), pb.add(16), k);
            let q3 = group(pa.add(24), pb.add(24), k);
            let bytes = crate::ops::requant_x86::pack32_i32_to_i8([q0, q1, q2, q3]);
            _mm256_storeu_si256(out.as_mut_ptr().add(32 * i) as *mut __m256i, bytes);
        }
        blocks * 32
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::AddRequant;
    use core::arch::aarch64::*;

    /// 16 bytes per step: four groups of four lanes through the float steps, then narrowed.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn add_i8_neon(a: &[i8], b: &[i8], rq: &AddRequant, out: &mut [i8]) -> usize {
        let (za, zb, zy) = (vdupq_n_s32(rq.zero_point_a), vdupq_n_s32(rq.zero_point_b), vdupq_n_s32(rq.zero_point));
        let (ma, mb) = (vdupq_n_f32(rq.multiplier_a), vdupq_n_f32(rq.multiplier_b));
        let lo = vdupq_n_f32((rq.lo - rq.zero_point) as f32);
        let hi = vdupq_n_f32((rq.hi - rq.zero_point) as f32);
        let group = |x: int32x4_t, y: int32x4_t| {
            let ta = vmulq_f32(vcvtq_f32_s32(vsubq_s32(x, za)), ma);
            let tb = vmulq_f32(vcvtq_f32_s32(vsubq_s32(y, zb)), mb);
            let t = vminq_f32(vmaxq_f32(vaddq_f32(ta, tb), lo), hi);
            vaddq_s32(vcvtnq_s32_f32(t), zy)
        };
        let blocks = out.len() / 16;
        for i in 0..blocks {
            let (x, y) = (vld1q_s8(a.as_ptr().add(16 * i)), vld1q_s8(b.as_ptr().add(16 * i)));
            let (x16, y16) =
                ([vmovl_s8(vget_low_s8(x)), vmovl_high_s8(x)], [vmovl_s8(vget_low_s8(y)), vmovl_high_s8(y)]);
            let half = |h: usize| {
                let q0 = group(vmovl_s16(vget_low_s16(x16[h])), vmovl_s16(vget_low_s16(y16[h])));
                let q1 = group(vmovl_high_s16(x16[h]), vmovl_high_s16(y16[h]));
                vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1))
            };
            let bytes = vcombine_s8(vqmovn_s16(half(0)), vqmovn_s16(half(1)));
            vst1q_s8(out.as_mut_ptr().add(16 * i), bytes);
        }
        blocks * 16
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::AddRequant;
    use core::arch::wasm32::*;

    /// 16 bytes per step, as the NEON kernel. `f32x4.pmax`/`pmin` are the plain comparisons
    /// (`b < a ? a : b`), equal to the scalar `max`/`min` on the finite values met here.
    pub(super) fn add_i8_simd128(a: &[i8], b: &[i8], rq: &AddRequant, out: &mut [i8]) -> usize {
        let (za, zb, zy) = (i32x4_splat(rq.zero_point_a), i32x4_splat(rq.zero_point_b), i32x4_splat(rq.zero_point));
        let (ma, mb) = (f32x4_splat(rq.multiplier_a), f32x4_splat(rq.multiplier_b));
        let lo = f32x4_splat((rq.lo - rq.zero_point) as f32);
        let hi = f32x4_splat((rq.hi - rq.zero_point) as f32);
        let group = |x: v128, y: v128| {
            let ta = f32x4_mul(f32x4_convert_i32x4(i32x4_sub(x, za)), ma);
            let tb = f32x4_mul(f32x4_convert_i32x4(i32x4_sub(y, zb)), mb);
            let t = f32x4_pmin(f32x4_pmax(f32x4_add(ta, tb), lo), hi);
            i32x4_add(i32x4_trunc_sat_f32x4(f32x4_nearest(t)), zy)
        };
        let mut done = 0;
        for ((o, xa), xb) in out.chunks_exact_mut(16).zip(a.chunks_exact(16)).zip(b.chunks_exact(16)) {
            // SAFETY: each chunk holds exactly 16 bytes; v128 loads and stores need no alignment.
            let (x, y) = unsafe { (v128_load(xa.as_ptr() as *const v128), v128_load(xb.as_ptr() as *const v128)) };
            let (x16, y16) = (
                [i16x8_extend_low_i8x16(x), i16x8_extend_high_i8x16(x)],
                [i16x8_extend_low_i8x16(y), i16x8_extend_high_i8x16(y)],
            );
            let half = |h: usize| {
                let q0 = group(i32x4_extend_low_i16x8(x16[h]), i32x4_extend_low_i16x8(y16[h]));
                let q1 = group(i32x4_extend_high_i16x8(x16[h]), i32x4_extend_high_i16x8(y16[h]));
                i16x8_narrow_i32x4(q0, q1)
            };
            // SAFETY: as above.
            unsafe { v128_store(o.as_mut_ptr() as *mut v128, i8x16_narrow_i16x8(half(0), half(1))) };
            done += 16;
        }
        done
    }
}
