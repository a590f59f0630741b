//! The int8 depthwise accumulators of [`super::depthwise`] with x86-64 AVX2, for the native
//! CLI (chosen where [`super::gemm_x86::avx2`] is true).
//!
//! `acc[n, oy, ox, c] = bias[c] + sum_taps x'[tap pixel, c] * w'[tap, c]` on centred i16 values
//! (`x' = x - zx`, `w' = w - zw[c]`, both in [-255, 255]; taps-major weights `[KH * KW, C]`).
//!
//! Lane = channel, as in the wasm kernel, but two taps at a time so that `vpmaddwd` does the
//! products (16 i16 x i16 -> 8 pair sums, where a widening `vpmulld` gives only 8 products at
//! a third of the rate): for a block of 16 channels and taps (t0, t1),
//! ```text
//! xl = unpacklo16(x[t0], x[t1]) = [x0(c0), x1(c0), .., x0(c3), x1(c3) | x0(c8), x1(c8), .. x1(c11)]
//! wl = unpacklo16(w[t0], w[t1])       (the same interleave of the weights)
//! lo += vpmaddwd(xl, wl)              i32 lanes [c0..c3 | c8..c11]
//! hi += vpmaddwd(unpackhi16(..), ..)  i32 lanes [c4..c7 | c12..c15]
//! ```
//! and `vperm2i128` puts the lanes back in channel order at the store. An odd last tap is
//! paired with zeros. A pair sum is at most 2 * 255^2, so `vpmaddwd` never saturates, and the
//! integer sums are exact in any order (wrapping like the scalar code): bit-identical to
//! `depthwise_i8_ref` (tests below and every depthwise test through [`super::depthwise`]).

use core::arch::x86_64::*;

use super::conv_shape::ConvGeometry;

/// Channels per register block.
const BLOCK: usize = 16;

/// Output rows `first_row..` (over batch and height; `part.len() / (OW * C)` of them) into
/// `part`. Call only where [`super::gemm_x86::avx2`] is true.
pub fn depthwise_i8_rows(
    x: &[i16],
    wt: &[i16],
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    first_row: usize,
    part: &mut [i32],
) {
    if !super::gemm_x86::avx2() {
        // Unreachable through `depthwise`, which calls this only where AVX2 runs.
        return rows_scalar(x, wt, bias, g, first_row, part);
    }
    // SAFETY: AVX2 is present (checked above); every load reads 16 channels at an offset
    // `tap pixel + c0` with `c0 + 16 <= C` inside the input or weights, and every store
    // writes 16 channels inside one output pixel.
    unsafe { rows_avx2(x, wt, bias, g, first_row, part) }
}

/// One output pixel's taps as (input offset, weight offset) pairs.
fn pixel_taps(g: &ConvGeometry, row: usize, ox: usize, taps: &mut Vec<(usize, usize)>) {
    let (n, oy) = (row / g.out_h.max(1), row % g.out_h.max(1));
    taps.clear();
    g.for_each_tap(n, oy, ox, |t, xo| taps.push((xo, t * g.in_c)));
}

/// Channels `from..C` of one pixel, one product at a time.
fn tail(x: &[i16], wt: &[i16], bias: Option<&[i32]>, taps: &[(usize, usize)], from: usize, out: &mut [i32]) {
    for (ch, o) in out.iter_mut().enumerate().skip(from) {
        let s = taps.iter().fold(0i32, |s, &(xo, wo)| s.wrapping_add(x[xo + ch] as i32 * wt[wo + ch] as i32));
        *o = s.wrapping_add(bias.map_or(0, |b| b[ch]));
    }
}

fn rows_scalar(x: &[i16], wt: &[i16], bias: Option<&[i32]>, g: &ConvGeometry, first_row: usize, part: &mut [i32]) {
    let c = g.in_c.max(1);
    let mut taps = Vec::with_capacity(g.kernel[0] * g.kernel[1]);
    for (r, out_row) in part.chunks_exact_mut(g.out_w * c).enumerate() {
        for (ox, out) in out_row.chunks_exact_mut(c).enumerate() {
            pixel_taps(g, first_row + r, ox, &mut taps);
            tail(x, wt, bias, &taps, 0, out);
        }
    }
}

/// 16 i16 at `p + at`.
#[inline(always)]
unsafe fn load16(p: *const i16, at: usize) -> __m256i {
    _mm256_loadu_si256(p.add(at) as *const __m256i)
}

/// Adds two taps' products of 16 channels to the accumulators (module docs): `lo` gets
/// channels [0..4 | 8..12], `hi` [4..8 | 12..16].
#[inline(always)]
unsafe fn madd_tap_pair(lo: __m256i, hi: __m256i, x: [__m256i; 2], w: [__m256i; 2]) -> (__m256i, __m256i) {
    let lo_sum = _mm256_madd_epi16(_mm256_unpacklo_epi16(x[0], x[1]), _mm256_unpacklo_epi16(w[0], w[1]));
    let hi_sum = _mm256_madd_epi16(_mm256_unpackhi_epi16(x[0], x[1]), _mm256_unpackhi_epi16(w[0], w[1]));
    (_mm256_add_epi32(lo, lo_sum), _mm256_add_epi32(hi, hi_sum))
}

#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(x: &[i16], wt: &[i16], bias: Option<&[i32]>, g: &ConvGeometry, first_row: usize, part: &mut [i32]) {
    let c = g.in_c.max(1);
    let full = c / BLOCK * BLOCK;
    let (xp, wp) = (x.as_ptr(), wt.as_ptr());
    let mut taps = Vec::with_capacity(g.kernel[0] * g.kernel[1] + 1);
    for (r, out_row) in part.chunks_exact_mut(g.out_w * c).enumerate() {
        for (ox, out) in out_row.chunks_exact_mut(c).enumerate() {
            pixel_taps(g, first_row + r, ox, &mut taps);
            let pairs = taps.len() / 2;
            let odd = taps.len() % 2 == 1;
            let mut c0 = 0;
            while c0 < full {
                let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for p in 0..pairs {
                    let ((xa, wa), (xb, wb)) = (taps[2 * p], taps[2 * p + 1]);
                    let x = [load16(xp, xa + c0), load16(xp, xb + c0)];
                    (lo, hi) = madd_tap_pair(lo, hi, x, [load16(wp, wa + c0), load16(wp, wb + c0)]);
                }
                if odd {
                    let (xa, wa) = taps[taps.len() - 1];
                    let z = _mm256_setzero_si256();
                    (lo, hi) = madd_tap_pair(lo, hi, [load16(xp, xa + c0), z], [load16(wp, wa + c0), z]);
                }
                // lo = [c0..c3 | c8..c11], hi = [c4..c7 | c12..c15]: back to channel order.
                let mut first = _mm256_permute2x128_si256::<0x20>(lo, hi);
                let mut second = _mm256_permute2x128_si256::<0x31>(lo, hi);
                if let Some(b) = bias {
                    first = _mm256_add_epi32(first, _mm256_loadu_si256(b.as_ptr().add(c0) as *const __m256i));
                    second = _mm256_add_epi32(second, _mm256_loadu_si256(b.as_ptr().add(c0 + 8) as *const __m256i));
                }
                let o = out.as_mut_ptr().add(c0);
                _mm256_storeu_si256(o as *mut __m256i, first);
                _mm256_storeu_si256(o.add(8) as *mut __m256i, second);
                c0 += BLOCK;
            }
            tail(x, wt, bias, &taps, full, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv_shape::Conv2dParams;
    use crate::ops::Padding;

    /// The AVX2 kernel against one product at a time, on geometries with odd and even tap
    /// counts inside the image (3x3 and 5x5 kernels, borders under padding, stride 2), channel
    /// counts on and off the 16-lane block, and extreme centred values (255 * 255 products).
    #[test]
    fn avx2_depthwise_equals_the_plain_sums() {
        if !super::super::gemm_x86::avx2() {
            eprintln!("no AVX2 on this CPU (or EDGETUNE_CPU_KERNELS=portable): kernel not tested");
            return;
        }
        let mut seed = 0x51ed_270bu32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for &(k, s) in &[(3usize, 1usize), (3, 2), (5, 1), (5, 2), (1, 1)] {
            for &c in &[1usize, 15, 16, 17, 48] {
                for extreme in [false, true] {
                    let (h, w) = (7, 6);
                    let p =
                        Conv2dParams { stride: [s, s], padding: Padding::SameUpper, groups: c, ..Default::default() };
                    let g = ConvGeometry::new("t", &[2, h, w, c], &[c, k, k, 1], &p).unwrap();
                    let val = |v: u32| if extreme { -255 } else { (v % 511) as i16 - 255 };
                    let x: Vec<i16> = (0..2 * h * w * c).map(|_| val(next())).collect();
                    let wt: Vec<i16> = (0..k * k * c).map(|_| if extreme { 255 } else { val(next()) }).collect();
                    let bias: Vec<i32> = (0..c).map(|_| (next() % 20_001) as i32 - 10_000).collect();
                    let rows = g.batch * g.out_h;
                    let mut got = vec![0i32; rows * g.out_w * c];
                    depthwise_i8_rows(&x, &wt, Some(&bias), &g, 0, &mut got);
                    let mut want = vec![0i32; got.len()];
                    rows_scalar(&x, &wt, Some(&bias), &g, 0, &mut want);
                    assert_eq!(got, want, "k={k} s={s} c={c} extreme={extreme}");
                    // A block of rows from the middle gives the same rows.
                    let row = g.out_w * c;
                    let mut part = vec![0i32; 2 * row];
                    depthwise_i8_rows(&x, &wt, Some(&bias), &g, 3, &mut part);
                    assert_eq!(part, want[3 * row..5 * row], "k={k} s={s} c={c}: rows 3..5");
                }
            }
        }
    }
}
