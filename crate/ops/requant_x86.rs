//! The engine's float requantization ([`crate::quant::requantize`]) of channel-last rows with
//! x86-64 AVX2, eight channels at a time, for the native CLI (chosen where
//! [`super::gemm_x86::avx2`] is true).
//!
//! `q = clamp_round(acc * m[c], lo - zp, hi - zp) + zp`, per value:
//! `vcvtdq2ps` (i32 -> f32, round to nearest even, as Rust's `as f32`), `vmulps` (IEEE, as
//! the scalar multiply), `vmaxps`/`vminps` against the bounds (no NaN can arise from a finite
//! product), `vroundps` to nearest even, `vcvtps2dq` (exact on integral values), `+ zp`: each
//! step is the scalar spec's own, so the bits are the same (tested below on ties, large
//! accumulators and both bounds).

use core::arch::x86_64::*;

/// Requantizes `acc` (rows of `c` channels) into `out` with per-channel multipliers `mults`.
/// Call only where [`super::gemm_x86::avx2`] is true.
pub fn requantize_rows(acc: &[i32], c: usize, mults: &[f32], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    if !super::gemm_x86::avx2() {
        return scalar(acc, c, mults, zp, lo, hi, out);
    }
    // SAFETY: AVX2 is present (checked above); loads and stores stay inside each row.
    unsafe { rows_avx2(acc, c, mults, zp, lo, hi, out) }
}

fn scalar(acc: &[i32], c: usize, mults: &[f32], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    for (orow, arow) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
        for ((o, &a), &m) in orow.iter_mut().zip(arow).zip(mults) {
            *o = crate::quant::requantize(a, m, zp, lo, hi) as i8;
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(acc: &[i32], c: usize, mults: &[f32], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    let full = c / 8 * 8;
    let (lo_v, hi_v) = (_mm256_set1_ps((lo - zp) as f32), _mm256_set1_ps((hi - zp) as f32));
    let zp_v = _mm256_set1_epi32(zp);
    for (orow, arow) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
        let mut j = 0;
        while j < full {
            let a = _mm256_loadu_si256(arow.as_ptr().add(j) as *const __m256i);
            let m = _mm256_loadu_ps(mults.as_ptr().add(j));
            let x = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a), m), lo_v), hi_v);
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
            let q = _mm256_add_epi32(_mm256_cvtps_epi32(r), zp_v);
            let mut lanes = [0i32; 8];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, q);
            for (o, &v) in orow[j..j + 8].iter_mut().zip(&lanes) {
                *o = v as i8;
            }
            j += 8;
        }
        for ((o, &a), &m) in orow[full..].iter_mut().zip(&arow[full..]).zip(&mults[full..]) {
            *o = crate::quant::requantize(a, m, zp, lo, hi) as i8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value by value equal to the scalar spec: exact ties (acc * m = k + 0.5), accumulators
    /// past 2^24 (inexact as f32), saturation at both ends, a fused ReLU6-like upper bound, and
    /// channel counts on and off the 8-lane step.
    #[test]
    fn avx2_requantization_equals_the_scalar_spec() {
        let mut seed = 0x1234_5678u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for &c in &[1usize, 7, 8, 9, 16, 23, 40] {
            let rows = 5;
            let mults: Vec<f32> =
                (0..c).map(|j| if j % 3 == 0 { 0.5 } else { 1e-3 * (1 + next() % 997) as f32 }).collect();
            let acc: Vec<i32> = (0..rows * c)
                .map(|x| match x % 5 {
                    0 => (next() % 2001) as i32 - 1000,      // ties where m = 0.5 and acc is odd
                    1 => next() as i32,                      // anything, saturating
                    2 => (1 << 24) + (next() % 1000) as i32, // past f32's exact integers
                    _ => (next() % 200_001) as i32 - 100_000,
                })
                .collect();
            for (zp, lo, hi) in [(0, -128, 127), (-5, -5, 40), (17, -128, 127)] {
                let mut want = vec![0i8; acc.len()];
                scalar(&acc, c, &mults, zp, lo, hi, &mut want);
                let mut got = vec![0i8; acc.len()];
                requantize_rows(&acc, c, &mults, zp, lo, hi, &mut got);
                assert_eq!(got, want, "c={c} zp={zp} bounds [{lo}, {hi}]");
            }
        }
    }
}
