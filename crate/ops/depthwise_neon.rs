//! The int8 depthwise accumulators of [`super::depthwise`] with aarch64 NEON, for the native
//! CLI on ARM (chosen where [`super::gemm_neon::neon`] is true).
//!
//! `acc[n, oy, ox, c] = bias[c] + sum_taps x'[tap pixel, c] * w'[tap, c]` on centred i16 values
//! (`x' = x - zx`, `w' = w - zw[c]`, both in [-255, 255]; taps-major weights `[KH * KW, C]`).
//! Lane = channel: per tap and block of 8 channels, one input load, one weight load and a
//! widening multiply-accumulate into two int32x4 (`smlal`, `smlal2`). Padding taps are
//! skipped (their centred value is 0); channels past the last block of 8 run one at a time.
//! Integer sums are exact in any order: bit-identical to the reference (tests below and every
//! depthwise test through [`super::depthwise`] when run on aarch64).

use core::arch::aarch64::*;

use super::conv_shape::ConvGeometry;

/// Channels per block (one int16x8).
const BLOCK: usize = 8;

/// Output rows `first_row..` (over batch and height; `part.len() / (OW * C)` of them) into
/// `part`.
pub fn depthwise_i8_rows(
    x: &[i16],
    wt: &[i16],
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    first_row: usize,
    part: &mut [i32],
) {
    let row = g.out_w * g.in_c;
    let fits = x.len() >= g.batch * g.in_h * g.in_w * g.in_c
        && wt.len() >= g.kernel[0] * g.kernel[1] * g.in_c
        && bias.is_none_or(|b| b.len() >= g.in_c)
        && row > 0
        && part.len().is_multiple_of(row)
        && first_row + part.len() / row <= g.batch * g.out_h;
    // SAFETY (below): NEON is present and the lengths are checked; each load reads 8 channels
    // `c0..c0 + 8 <= C` of a tap's input pixel or of a weight tap.
    let simd = super::gemm_neon::neon() && fits;
    let c = g.in_c;
    let full = if simd { c / BLOCK * BLOCK } else { 0 };
    let mut taps: Vec<(usize, usize)> = Vec::with_capacity(g.kernel[0] * g.kernel[1]);
    for (r, out_row) in part.chunks_exact_mut(row.max(1)).enumerate() {
        let (n, oy) = ((first_row + r) / g.out_h, (first_row + r) % g.out_h);
        for (ox, out) in out_row.chunks_exact_mut(c).enumerate() {
            taps.clear();
            g.for_each_tap(n, oy, ox, |t, xo| taps.push((xo, t * c)));
            if full > 0 {
                // SAFETY: see above.
                unsafe { blocks_neon(x, wt, bias, &taps, full, out) };
            }
            for (ch, o) in out.iter_mut().enumerate().skip(full) {
                let s = taps.iter().fold(0i32, |s, &(xo, wo)| s.wrapping_add(x[xo + ch] as i32 * wt[wo + ch] as i32));
                *o = s.wrapping_add(bias.map_or(0, |b| b[ch]));
            }
        }
    }
}

/// Channels `0..full` (a multiple of 8) of one pixel.
#[target_feature(enable = "neon")]
unsafe fn blocks_neon(
    x: &[i16],
    wt: &[i16],
    bias: Option<&[i32]>,
    taps: &[(usize, usize)],
    full: usize,
    out: &mut [i32],
) {
    let (xp, wp) = (x.as_ptr(), wt.as_ptr());
    let mut c0 = 0;
    while c0 < full {
        let mut acc = match bias {
            Some(b) => [vld1q_s32(b.as_ptr().add(c0)), vld1q_s32(b.as_ptr().add(c0 + 4))],
            None => [vdupq_n_s32(0); 2],
        };
        for &(xo, wo) in taps {
            let (xv, wv) = (vld1q_s16(xp.add(xo + c0)), vld1q_s16(wp.add(wo + c0)));
            acc[0] = vmlal_s16(acc[0], vget_low_s16(xv), vget_low_s16(wv));
            acc[1] = vmlal_high_s16(acc[1], xv, wv);
        }
        vst1q_s32(out.as_mut_ptr().add(c0), acc[0]);
        vst1q_s32(out.as_mut_ptr().add(c0 + 4), acc[1]);
        c0 += BLOCK;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv_shape::Conv2dParams;
    use crate::ops::Padding;

    /// The NEON kernel against one product at a time: 3x3 and 5x5 kernels, stride 1 and 2,
    /// padded borders, channel counts on and off the 8-lane block, extreme centred values.
    #[test]
    fn neon_depthwise_equals_the_plain_sums() {
        let mut seed = 0x51ed_270bu32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for &(k, s) in &[(3usize, 1usize), (3, 2), (5, 1), (5, 2), (1, 1)] {
            for &c in &[1usize, 7, 8, 9, 24] {
                for extreme in [false, true] {
                    let (h, w) = (7, 6);
                    let p =
                        Conv2dParams { stride: [s, s], padding: Padding::SameUpper, groups: c, ..Default::default() };
                    let g = ConvGeometry::new("t", &[2, h, w, c], &[c, k, k, 1], &p).unwrap();
                    let val = |v: u32| if extreme { -255 } else { (v % 511) as i16 - 255 };
                    let x: Vec<i16> = (0..2 * h * w * c).map(|_| val(next())).collect();
                    let wt: Vec<i16> = (0..k * k * c).map(|_| if extreme { 255 } else { val(next()) }).collect();
                    let bias: Vec<i32> = (0..c).map(|_| (next() % 20_001) as i32 - 10_000).collect();
                    let mut got = vec![0i32; g.batch * g.out_h * g.out_w * c];
                    depthwise_i8_rows(&x, &wt, Some(&bias), &g, 0, &mut got);
                    let mut want = vec![0i32; got.len()];
                    for (idx, o) in want.iter_mut().enumerate() {
                        let (pix, ch) = (idx / c, idx % c);
                        let (row, ox) = (pix / g.out_w, pix % g.out_w);
                        let mut sum = bias[ch];
                        g.for_each_tap(row / g.out_h, row % g.out_h, ox, |t, xo| {
                            sum += x[xo + ch] as i32 * wt[t * c + ch] as i32;
                        });
                        *o = sum;
                    }
                    assert_eq!(got, want, "k={k} s={s} c={c} extreme={extreme}");
                }
            }
        }
    }
}
