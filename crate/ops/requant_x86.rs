//! The engine's float requantization ([`crate::quant::requantize`]) of channel-last rows with
//! x86-64 AVX2, eight channels at a time, for the native CLI (chosen where
//! [`super::gemm_x86::avx2`] is true).
//!
//! `q = clamp_round(acc * m[c], lo - zp, hi - zp) + zp`, per value:
//! `vcvtdq2ps` (i32 -> f32, round to nearest even, as Rust's `as f32`), `vmulps` (IEEE, as
//! the scalar multiply), `vmaxps`/`vminps` against the bounds (no NaN can arise from a finite
//! product), `vroundps` to nearest even, `vcvtps2dq` (exact on integral values), `+ zp`, then
//! packed to bytes (`vpackssdw`/`vpacksswb` cannot saturate on values already in [lo, hi]): each
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
            // q lies in [lo, hi] within i8, so the saturating packs keep every value: i32 ->
            // i16 -> i8 within each 128-bit half, then the two halves' first 4 bytes together.
            let p16 = _mm256_packs_epi32(q, q);
            let p8 = _mm256_packs_epi16(p16, p16);
            let both = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
            _mm_storel_epi64(orow.as_mut_ptr().add(j) as *mut __m128i, _mm256_castsi256_si128(both));
            j += 8;
        }
        for ((o, &a), &m) in orow[full..].iter_mut().zip(&arow[full..]).zip(&mults[full..]) {
            *o = crate::quant::requantize(a, m, zp, lo, hi) as i8;
        }
    }
}

/// The bounds and zero point of [`requantize16`] in vectors, made once per call.
#[derive(Clone, Copy)]
pub(super) struct RequantLanes {
    lo: __m256,
    hi: __m256,
    zp: __m256i,
}

impl RequantLanes {
    /// Call only where AVX2 is present.
    #[inline(always)]
    pub(super) unsafe fn new(zp: i32, lo: i32, hi: i32) -> Self {
        RequantLanes {
            lo: _mm256_set1_ps((lo - zp) as f32),
            hi: _mm256_set1_ps((hi - zp) as f32),
            zp: _mm256_set1_epi32(zp),
        }
    }
}

/// Sixteen accumulators (channels in order across `a[0]`, `a[1]`) requantized with their
/// multipliers `m` into sixteen bytes in the same order: the steps of [`rows_avx2`], value by
/// value, so the same bits.
#[inline(always)]
pub(super) unsafe fn requantize16(a: [__m256i; 2], m: [__m256; 2], r: RequantLanes) -> __m128i {
    let q: [__m256i; 2] = core::array::from_fn(|h| {
        let x = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a[h]), m[h]), r.lo), r.hi);
        let rounded = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        _mm256_add_epi32(_mm256_cvtps_epi32(rounded), r.zp)
    });
    // [q0 0..4, q1 0..4 | q0 4..8, q1 4..8] as i16 -> [q0 0..8 | q1 0..8] -> bytes, then the
    // low 8 bytes of each half side by side (no saturation: values are in [lo, hi]).
    let p16 = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(q[0], q[1]));
    let p8 = _mm256_packs_epi16(p16, p16);
    _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b00_00_10_00>(p8))
}

/// Where a finished block of 16 channels' sums goes (the output stage of the AVX2 GEMM and
/// depthwise kernels).
pub(super) trait BlockSink {
    /// The sums of channels `channel..channel + width` (`width <= 16`, channels in order
    /// across `sums[0]`, `sums[1]`), element `at` of the output onwards.
    unsafe fn store(&mut self, at: usize, channel: usize, width: usize, sums: [__m256i; 2]);
}

/// The i32 sums themselves.
pub(super) struct SumsOut(pub *mut i32);

impl BlockSink for SumsOut {
    #[inline(always)]
    unsafe fn store(&mut self, at: usize, _channel: usize, width: usize, sums: [__m256i; 2]) {
        let dst = self.0.add(at);
        if width == 16 {
            _mm256_storeu_si256(dst as *mut __m256i, sums[0]);
            _mm256_storeu_si256(dst.add(8) as *mut __m256i, sums[1]);
        } else {
            let mut lanes = [0i32; 16];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sums[0]);
            _mm256_storeu_si256(lanes.as_mut_ptr().add(8) as *mut __m256i, sums[1]);
            core::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, width);
        }
    }
}

/// The sums requantized in registers ([`requantize16`]) and stored as int8: no i32 buffer is
/// written or read again.
pub(super) struct RequantOut {
    out: *mut i8,
    /// Per-channel multipliers, padded with zeros to whole blocks of 16.
    mults: *const f32,
    lanes: RequantLanes,
}

impl RequantOut {
    /// Call only where AVX2 is present.
    #[inline(always)]
    pub(super) unsafe fn new(out: *mut i8, mults: *const f32, zp: i32, lo: i32, hi: i32) -> Self {
        RequantOut { out, mults, lanes: RequantLanes::new(zp, lo, hi) }
    }
}

impl BlockSink for RequantOut {
    #[inline(always)]
    unsafe fn store(&mut self, at: usize, channel: usize, width: usize, sums: [__m256i; 2]) {
        let m = [_mm256_loadu_ps(self.mults.add(channel)), _mm256_loadu_ps(self.mults.add(channel + 8))];
        let bytes = requantize16(sums, m, self.lanes);
        let dst = self.out.add(at);
        if width == 16 {
            _mm_storeu_si128(dst as *mut __m128i, bytes);
        } else {
            let mut lanes = [0i8; 16];
            _mm_storeu_si128(lanes.as_mut_ptr() as *mut __m128i, bytes);
            core::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, width);
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
        for &c in &[1usize, 7, 8, 9, 16, 23, 32, 40] {
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
                if c % 16 == 0 && super::super::gemm_x86::avx2() {
                    // The sixteen-lane form of the fused GEMM output stage.
                    let mut got16 = vec![0i8; acc.len()];
                    for (i, (o, a)) in got16.chunks_exact_mut(16).zip(acc.chunks_exact(16)).enumerate() {
                        let j = i * 16 % c;
                        // SAFETY: AVX2 is present; every load reads 8 values inside `a` or `mults`.
                        unsafe {
                            let av = [0, 8].map(|h| _mm256_loadu_si256(a.as_ptr().add(h) as *const __m256i));
                            let mv = [0, 8].map(|h| _mm256_loadu_ps(mults.as_ptr().add(j + h)));
                            let b = requantize16(av, mv, RequantLanes::new(zp, lo, hi));
                            _mm_storeu_si128(o.as_mut_ptr() as *mut __m128i, b);
                        }
                    }
                    assert_eq!(got16, want, "16 lanes: c={c} zp={zp} bounds [{lo}, {hi}]");
                }
            }
        }
    }
}
