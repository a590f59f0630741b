//! The engine's float requantization ([`crate::quant::requantize`]) with x86-64 AVX2, for the
//! native CLI (chosen where [`super::gemm_x86::avx2`] is true): the fused output stage of the
//! AVX2 GEMM and depthwise kernels ([`BlockSink`]) and channel-last rows of sums.
//!
//! `q = clamp_round(acc * m[c], lo - zp, hi - zp) + zp`, sixteen values at a time by
//! [`requantize16`] (thirty-two by [`requantize16x2`]): the float steps are the scalar spec's
//! own (`vcvtdq2ps`, `vmulps`), the rounding and the clamp are done by `vcvtps2dq` and
//! saturating packs whose result is the same (argued there; tested below on ties, large
//! accumulators, +-inf products and both bounds).
//!
//! **Lane order.** The kernels hold 16 channels' sums in two vectors as
//! ```text
//! sums[0] = [c0 c1 c2 c3 | c8 c9 c10 c11]    sums[1] = [c4 c5 c6 c7 | c12 c13 c14 c15]
//! ```
//! (position p holds channel [`lane_channel`]`(p)`: bits 2 and 3 of the index swapped). The
//! depthwise kernel's `vpmaddwd` on unpacked pairs produces this order, the GEMM's weights are
//! packed in it, and it is the order in which `vpackssdw` within 128-bit halves puts the
//! channels back in sequence: `packs(sums[0], sums[1]) = [c0..c7 | c8..c15]`. Multipliers and
//! biases are laid out in it once per call ([`lane_order`]).

use core::arch::x86_64::*;

/// The channel at position `p` of a 16-channel block in lane order (and, the map being its own
/// inverse, the position of channel `p`): bits 2 and 3 of `p` swapped.
#[inline(always)]
pub(super) const fn lane_channel(p: usize) -> usize {
    (p & !0b1100) | ((p & 0b0100) << 1) | ((p & 0b1000) >> 1)
}

/// `v` (per channel) in lane order, padded with `T::default()` to whole blocks of 16.
pub(super) fn lane_order<T: Copy + Default>(v: &[T]) -> Vec<T> {
    (0..v.len().div_ceil(16) * 16).map(|p| v.get(lane_channel(p)).copied().unwrap_or_default()).collect()
}

/// Channel `ch`'s entry of a lane-ordered `v` ([`lane_order`]).
#[inline]
pub(super) fn lane_get<T: Copy>(v: &[T], ch: usize) -> T {
    v[ch - ch % 16 + lane_channel(ch % 16)]
}

/// Requantizes `acc` (rows of `c` channels, channel order) into `out` with per-channel
/// multipliers `mults`, also given in lane order as `lane_mults` ([`lane_order`]`(mults)`,
/// made once per layer by the caller). Call only where [`super::gemm_x86::avx2`] is true.
#[allow(clippy::too_many_arguments)]
pub fn requantize_rows(
    acc: &[i32],
    c: usize,
    mults: &[f32],
    lane_mults: &[f32],
    zp: i32,
    lo: i32,
    hi: i32,
    out: &mut [i8],
) {
    if !super::gemm_x86::avx2() || mults.len() < c || lane_mults.len() < c.div_ceil(16) * 16 {
        return scalar(acc, c, mults, zp, lo, hi, out);
    }
    // SAFETY: AVX2 is present and the multipliers cover every block (checked above); loads
    // and stores stay inside each row.
    unsafe { rows_avx2(acc, c, mults, lane_mults, zp, lo, hi, out) }
}

/// `acc` (rows of `c` channels, channel order) requantized value by value by the scalar spec,
/// with the multipliers given in lane order: the SIMD kernels' fallback where they cannot run.
pub(super) fn requantize_rows_scalar(
    acc: &[i32],
    c: usize,
    lane_mults: &[f32],
    (zp, lo, hi): (i32, i32, i32),
    out: &mut [i8],
) {
    let mults = channel_order(lane_mults, c);
    scalar(acc, c.max(1), &mults, zp, lo, hi, out)
}

/// The first `n` channels of a lane-ordered `v` ([`lane_order`]) in channel order.
pub(super) fn channel_order<T: Copy>(v: &[T], n: usize) -> Vec<T> {
    (0..n).map(|j| lane_get(v, j)).collect()
}

fn scalar(acc: &[i32], c: usize, mults: &[f32], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    for (orow, arow) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
        for ((o, &a), &m) in orow.iter_mut().zip(arow).zip(mults) {
            *o = crate::quant::requantize(a, m, zp, lo, hi) as i8;
        }
    }
}

/// Rows in channel order; `mults` (at least `c`) also in lane order, `lane_mults`
/// (`ceil(c / 16) * 16`).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_avx2(
    acc: &[i32],
    c: usize,
    mults: &[f32],
    lane_mults: &[f32],
    zp: i32,
    lo: i32,
    hi: i32,
    out: &mut [i8],
) {
    let lanes = RequantLanes::new(zp, lo, hi);
    let lane_m = |j: usize| [0, 8].map(|h| _mm256_loadu_ps(lane_mults.as_ptr().add(j + h)));
    for (orow, arow) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
        let mut j = 0;
        while j + 16 <= c {
            let [x, y] = [0, 8].map(|h| _mm256_loadu_si256(arow.as_ptr().add(j + h) as *const __m256i));
            let bytes = requantize16(to_lane_order(x, y), lane_m(j), lanes);
            _mm_storeu_si128(orow.as_mut_ptr().add(j) as *mut __m128i, bytes);
            j += 16;
        }
        if j + 8 <= c {
            // Eight channels: the other eight lanes computed on zeros and not stored.
            let x = _mm256_loadu_si256(arow.as_ptr().add(j) as *const __m256i);
            let bytes = requantize16(to_lane_order(x, _mm256_setzero_si256()), lane_m(j), lanes);
            _mm_storel_epi64(orow.as_mut_ptr().add(j) as *mut __m128i, bytes);
            j += 8;
        }
        for ((o, &a), &m) in orow[j..].iter_mut().zip(&arow[j..]).zip(&mults[j..c]) {
            *o = crate::quant::requantize(a, m, zp, lo, hi) as i8;
        }
    }
}

/// Channel-order vectors `x = c0..c7`, `y = c8..c15` in lane order.
#[inline(always)]
pub(super) unsafe fn to_lane_order(x: __m256i, y: __m256i) -> [__m256i; 2] {
    [_mm256_permute2x128_si256::<0x20>(x, y), _mm256_permute2x128_si256::<0x31>(x, y)]
}

/// Lane-order vectors back in channel order (the same two permutes: the map is an involution).
#[inline(always)]
unsafe fn to_channel_order(sums: [__m256i; 2]) -> [__m256i; 2] {
    to_lane_order(sums[0], sums[1])
}

/// The constants of [`requantize16`] in vectors, made once per call.
#[derive(Clone, Copy)]
pub(super) struct RequantLanes {
    /// 32767.0: every product is capped here before the conversion (see [`requantize16`]).
    cap: __m256,
    zp: __m256i,
    lo: __m256i,
    hi: __m256i,
}

impl RequantLanes {
    /// Call only where AVX2 is present.
    #[inline(always)]
    pub(super) unsafe fn new(zp: i32, lo: i32, hi: i32) -> Self {
        RequantLanes {
            cap: _mm256_set1_ps(32767.0),
            zp: _mm256_set1_epi16(zp as i16),
            lo: _mm256_set1_epi8(lo as i8),
            hi: _mm256_set1_epi8(hi as i8),
        }
    }

    /// Sixteen sums (lane order) and their multipliers (lane order) as sixteen saturated i16
    /// in channel order plus the zero point: the steps of [`requantize16`] before the bytes.
    #[inline(always)]
    unsafe fn words(self, a: [__m256i; 2], m: [__m256; 2]) -> __m256i {
        let q =
            [0, 1].map(|h| _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a[h]), m[h]), self.cap)));
        _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), self.zp)
    }

    /// Bytes clamped to the output's bounds.
    #[inline(always)]
    unsafe fn clamp(self, bytes: __m256i) -> __m256i {
        _mm256_min_epi8(_mm256_max_epi8(bytes, self.lo), self.hi)
    }
}

/// Sixteen accumulators in lane order (see the module docs) requantized with their multipliers
/// `m` (lane order) into sixteen bytes in channel order, with the bits of the scalar spec
/// `clamp(round(acc * m), lo - zp, hi - zp) + zp` by a shorter route:
/// - `x = min(f32(acc) * m, 32767)` (`vcvtdq2ps`, `vmulps`: the spec's own rounding steps);
/// - `r = vcvtps2dq(x)`: round half to even under the default MXCSR, which Rust code never
///   changes. Exact for |x| < 2^31; below -2^31 it gives i32::MIN, still below every bound, and
///   the cap keeps large positive products (and +inf) from wrapping to i32::MIN;
/// - `vpackssdw` (which also puts lane order back in channel order), `vpaddsw zp`,
///   `vpacksswb`, then `vpmaxsb lo`, `vpminsb hi`. Saturation is monotone and leaves
///   [-128, 127] alone, and `|zp| <= 128`, so
///   `clamp(sat8(sat16(sat16(r) + zp)), lo, hi) = clamp(r + zp, lo, hi)`, which is the spec
///   (its bounds are integers, so clamping before or after rounding is the same).
///
/// The zero point and the bounds are those of an int8 output (`-128 <= lo <= hi <= 127`).
#[inline(always)]
pub(super) unsafe fn requantize16(a: [__m256i; 2], m: [__m256; 2], r: RequantLanes) -> __m128i {
    // words = [c0..c7 | c8..c15]; bytes = [c0..c7, c0..c7 | c8..c15, c8..c15]: the low
    // eight bytes of each half side by side.
    let w = r.words(a, m);
    let bytes = r.clamp(_mm256_packs_epi16(w, w));
    _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b00_00_10_00>(bytes))
}

/// Two rows' sixteen accumulators (same channels, lane order) as [`requantize16`] does them,
/// sharing the byte steps: `[row 0's 16 bytes | row 1's 16 bytes]`.
#[inline(always)]
pub(super) unsafe fn requantize16x2(a: [[__m256i; 2]; 2], m: [__m256; 2], r: RequantLanes) -> __m256i {
    // [r0 c0..c7, r1 c0..c7 | r0 c8..c15, r1 c8..c15] -> [r0 c0..c15 | r1 c0..c15].
    let bytes = r.clamp(_mm256_packs_epi16(r.words(a[0], m), r.words(a[1], m)));
    _mm256_permute4x64_epi64::<0b11_01_10_00>(bytes)
}

/// 32 i32 values already in `[-128, 127]` (four vectors of eight, in sequence) as 32 bytes
/// in sequence. The packs work within 128-bit halves and leave the four-byte runs as
/// `q0a q1a q2a q3a | q0b q1b q2b q3b` (a, b: a vector's halves); one `vpermd` puts them back.
#[inline(always)]
pub(super) unsafe fn pack32_i32_to_i8(q: [__m256i; 4]) -> __m256i {
    let words = [_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])];
    _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words[0], words[1]), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Where a finished block of 16 channels' sums goes (the output stage of the AVX2 GEMM and
/// depthwise kernels). Sums arrive in lane order (module docs); `channel` is the block's
/// first channel, a multiple of 16, so lane-order per-channel data is read at the same index.
pub(super) trait BlockSink {
    /// The sums of channels `channel..channel + 16`, element `at` of the output onwards.
    unsafe fn store16(&mut self, at: usize, channel: usize, sums: [__m256i; 2]);

    /// Two rows of the same 16 channels, at elements `at[0]` and `at[1]`.
    #[inline(always)]
    unsafe fn store16x2(&mut self, at: [usize; 2], channel: usize, sums: [[__m256i; 2]; 2]) {
        self.store16(at[0], channel, sums[0]);
        self.store16(at[1], channel, sums[1]);
    }

    /// The same for the first `width < 16` of those channels: a channel tail. Kept out of
    /// line, so the full-width path around it holds no call (and spills nothing for it).
    unsafe fn store_part(&mut self, at: usize, channel: usize, width: usize, sums: [__m256i; 2]);

    /// [`Self::store16`] or [`Self::store_part`] by `width` (`<= 16`).
    #[inline(always)]
    unsafe fn store(&mut self, at: usize, channel: usize, width: usize, sums: [__m256i; 2]) {
        if width == 16 {
            self.store16(at, channel, sums)
        } else {
            self.store_part(at, channel, width, sums)
        }
    }
}

/// The i32 sums themselves, in channel order.
pub(super) struct SumsOut(pub *mut i32);

impl BlockSink for SumsOut {
    #[inline(always)]
    unsafe fn store16(&mut self, at: usize, _channel: usize, sums: [__m256i; 2]) {
        let [x, y] = to_channel_order(sums);
        let dst = self.0.add(at);
        _mm256_storeu_si256(dst as *mut __m256i, x);
        _mm256_storeu_si256(dst.add(8) as *mut __m256i, y);
    }

    #[cold]
    #[target_feature(enable = "avx2")]
    unsafe fn store_part(&mut self, at: usize, _channel: usize, width: usize, sums: [__m256i; 2]) {
        let [x, y] = to_channel_order(sums);
        let mut lanes = [0i32; 16];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, x);
        _mm256_storeu_si256(lanes.as_mut_ptr().add(8) as *mut __m256i, y);
        core::ptr::copy_nonoverlapping(lanes.as_ptr(), self.0.add(at), width);
    }
}

/// The sums requantized in registers ([`requantize16`]) and stored as int8: no i32 buffer is
/// written or read again.
pub(super) struct RequantOut {
    out: *mut i8,
    /// Per-channel multipliers in lane order ([`lane_order`]), whole blocks of 16.
    lane_mults: *const f32,
    lanes: RequantLanes,
}

impl RequantOut {
    /// `lane_mults`: [`lane_order`] of the multipliers. Call only where AVX2 is present.
    #[inline(always)]
    pub(super) unsafe fn new(out: *mut i8, lane_mults: *const f32, zp: i32, lo: i32, hi: i32) -> Self {
        RequantOut { out, lane_mults, lanes: RequantLanes::new(zp, lo, hi) }
    }

    #[inline(always)]
    unsafe fn mults(&self, channel: usize) -> [__m256; 2] {
        [_mm256_loadu_ps(self.lane_mults.add(channel)), _mm256_loadu_ps(self.lane_mults.add(channel + 8))]
    }
}

impl BlockSink for RequantOut {
    #[inline(always)]
    unsafe fn store16(&mut self, at: usize, channel: usize, sums: [__m256i; 2]) {
        let bytes = requantize16(sums, self.mults(channel), self.lanes);
        _mm_storeu_si128(self.out.add(at) as *mut __m128i, bytes);
    }

    #[inline(always)]
    unsafe fn store16x2(&mut self, at: [usize; 2], channel: usize, sums: [[__m256i; 2]; 2]) {
        let bytes = requantize16x2(sums, self.mults(channel), self.lanes);
        _mm_storeu_si128(self.out.add(at[0]) as *mut __m128i, _mm256_castsi256_si128(bytes));
        _mm_storeu_si128(self.out.add(at[1]) as *mut __m128i, _mm256_extracti128_si256::<1>(bytes));
    }

    #[cold]
    #[target_feature(enable = "avx2")]
    unsafe fn store_part(&mut self, at: usize, channel: usize, width: usize, sums: [__m256i; 2]) {
        let mut lanes = [0i8; 16];
        let bytes = requantize16(sums, self.mults(channel), self.lanes);
        _mm_storeu_si128(lanes.as_mut_ptr() as *mut __m128i, bytes);
        core::ptr::copy_nonoverlapping(lanes.as_ptr(), self.out.add(at), width);
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
            // Ties (0.5), products past 2^31 either way (4.0) and infinite ones (3e38) beside
            // the usual small multipliers.
            let mults: Vec<f32> = (0..c)
                .map(|j| match j % 7 {
                    0 | 3 => 0.5,
                    1 => 3.0e38,
                    5 => 4.0,
                    _ => 1e-3 * (1 + next() % 997) as f32,
                })
                .collect();
            let acc: Vec<i32> = (0..rows * c)
                .map(|x| match x % 5 {
                    0 => (next() % 2001) as i32 - 1000, // ties where m = 0.5 and acc is odd
                    1 => next() as i32,                 // anything, saturating
                    4 if x % 2 == 0 => i32::MAX,
                    4 => i32::MIN,
                    2 => (1 << 24) + (next() % 1000) as i32, // past f32's exact integers
                    _ => (next() % 200_001) as i32 - 100_000,
                })
                .collect();
            for (zp, lo, hi) in
                [(0, -128, 127), (-5, -5, 40), (17, -128, 127), (127, -128, 127), (-128, -128, 127), (-128, -128, -120)]
            {
                let mut want = vec![0i8; acc.len()];
                scalar(&acc, c, &mults, zp, lo, hi, &mut want);
                let mut got = vec![0i8; acc.len()];
                requantize_rows(&acc, c, &mults, &lane_order(&mults), zp, lo, hi, &mut got);
                assert_eq!(got, want, "c={c} zp={zp} bounds [{lo}, {hi}]");
                if c % 16 == 0 && super::super::gemm_x86::avx2() {
                    // The kernels' output stage: sums and multipliers in lane order, one row
                    // (`requantize16`) and two rows at a time (`requantize16x2`).
                    let lane_mults = lane_order(&mults);
                    let (mut one, mut two) = (vec![0i8; acc.len()], vec![0i8; acc.len()]);
                    // SAFETY: AVX2 is present; every load reads 8 values inside `acc` or
                    // `lane_mults`, every store writes 16 bytes inside `one` or `two`.
                    unsafe {
                        let r = RequantLanes::new(zp, lo, hi);
                        let sums = |at: usize| {
                            let [x, y] = [0, 8].map(|h| _mm256_loadu_si256(acc.as_ptr().add(at + h) as *const __m256i));
                            to_lane_order(x, y)
                        };
                        for at in (0..acc.len()).step_by(16) {
                            let m = [0, 8].map(|h| _mm256_loadu_ps(lane_mults.as_ptr().add(at % c + h)));
                            _mm_storeu_si128(one.as_mut_ptr().add(at) as *mut __m128i, requantize16(sums(at), m, r));
                            // Row pairs: this block and the same channels one row on.
                            if at + c < acc.len() && (at / c) % 2 == 0 {
                                let b = requantize16x2([sums(at), sums(at + c)], m, r);
                                _mm_storeu_si128(two.as_mut_ptr().add(at) as *mut __m128i, _mm256_castsi256_si128(b));
                                _mm_storeu_si128(
                                    two.as_mut_ptr().add(at + c) as *mut __m128i,
                                    _mm256_extracti128_si256::<1>(b),
                                );
                            }
                        }
                    }
                    assert_eq!(one, want, "16 lanes: c={c} zp={zp} bounds [{lo}, {hi}]");
                    let paired = (rows / 2) * 2 * c;
                    assert_eq!(two[..paired], want[..paired], "32 lanes: c={c} zp={zp} bounds [{lo}, {hi}]");
                }
            }
        }
    }
}
