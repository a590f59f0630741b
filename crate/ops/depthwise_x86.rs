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
//! which is the lane order the output stage takes (`requant_x86`; the bias is laid out in it
//! once per call), so the sums go to it as they are. Two interior pixels side by side run a
//! full block together: each pair's weights are loaded once for both, and the output stage
//! packs both pixels' bytes in one pass (`store16x2`). The pair loop is compiled with its
//! count known for 3x3 and 5x5 kernels, so it unrolls. The weights are
//! interleaved once per call (`[pair][block][lo, hi]`), so a pair costs 2 input loads, 2
//! unpacks, 2 `vpmaddwd` (weights from L1) and 2 adds. Every pixel runs all the kernel's pairs:
//! a padding tap reads a row of zeros (a centred padded value is 0), an odd last tap has zero
//! weights, and a channel tail (C not a multiple of 16) runs a full block on zero weights and
//! stores only its channels. A pair sum is at most 2 * 255^2, so `vpmaddwd` never saturates, and the
//! integer sums are exact in any order (wrapping like the scalar code): bit-identical to
//! `depthwise_i8_ref` (tests below and every depthwise test through [`super::depthwise`]).

use core::arch::x86_64::*;

use super::conv_shape::ConvGeometry;
use super::requant_x86::{BlockSink, RequantOut, SumsOut};

/// Channels per register block.
const BLOCK: usize = 16;

/// Output rows `first_row..` (over batch and height; `part.len() / (OW * C)` of them) into
/// `part`. Call only where [`super::gemm_x86::avx2`] is true.
pub fn depthwise_i8_rows(
    x: &[i16],
    wt: &[i16],
    pw: &PairWeights,
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    first_row: usize,
    part: &mut [i32],
) {
    if !super::gemm_x86::avx2() || !fits(x, wt, pw, bias, g, first_row, part.len()) {
        // Unreachable through `depthwise`, which checks the geometry and the CPU.
        return rows_scalar(x, wt, bias, g, first_row, part);
    }
    // SAFETY: AVX2 is present and the lengths are checked above. Every load reads 16
    // channels at a tap's pixel inside the input (or the zero row), falling back to a copy
    // where 16 lanes would pass the input's end; every store writes inside one output pixel.
    unsafe { rows_avx2(x, pw, bias, g, first_row, part.len(), SumsOut(part.as_mut_ptr())) }
}

/// [`depthwise_i8_rows`] with the engine's float requantization fused into the output stage
/// (`lane_mults`: the per-channel multipliers in the sums' lane order,
/// `requant_x86::lane_order`): the bits of the sums then
/// `requant_x86::requantize_rows`, with no i32 buffer. Call only where AVX2 is present.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_i8_requant_rows(
    x: &[i16],
    wt: &[i16],
    pw: &PairWeights,
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    first_row: usize,
    lane_mults: &[f32],
    (zp, lo, hi): (i32, i32, i32),
    part: &mut [i8],
) {
    let ok = fits(x, wt, pw, bias, g, first_row, part.len()) && lane_mults.len() >= g.in_c.div_ceil(BLOCK) * BLOCK;
    if !super::gemm_x86::avx2() || !ok {
        // Unreachable through `depthwise`, which checks the geometry, the multipliers and the CPU.
        let mut acc = vec![0i32; part.len()];
        rows_scalar(x, wt, bias, g, first_row, &mut acc);
        return super::requant_x86::requantize_rows_scalar(&acc, g.in_c, lane_mults, (zp, lo, hi), part);
    }
    // SAFETY: as in `depthwise_i8_rows`; the multipliers cover every block (checked above).
    unsafe {
        let sink = RequantOut::new(part.as_mut_ptr(), lane_mults.as_ptr(), zp, lo, hi);
        rows_avx2(x, pw, bias, g, first_row, part.len(), sink)
    }
}

/// Whether the slices hold what the geometry reads and `out_len` output values from
/// `first_row` on are whole rows inside the output.
fn fits(
    x: &[i16],
    wt: &[i16],
    pw: &PairWeights,
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    first_row: usize,
    out_len: usize,
) -> bool {
    let row = g.out_w * g.in_c;
    x.len() >= g.batch * g.in_h * g.in_w * g.in_c
        && wt.len() >= g.kernel[0] * g.kernel[1] * g.in_c
        && (pw.taps, pw.c) == (g.kernel[0] * g.kernel[1], g.in_c)
        && bias.is_none_or(|b| b.len() >= g.in_c)
        && row > 0
        && out_len.is_multiple_of(row)
        && first_row + out_len / row <= g.batch * g.out_h
}

/// One output pixel's taps as (input offset, weight offset) pairs.
fn pixel_taps(g: &ConvGeometry, row: usize, ox: usize, taps: &mut Vec<(usize, usize)>) {
    let (n, oy) = (row / g.out_h.max(1), row % g.out_h.max(1));
    taps.clear();
    g.for_each_tap(n, oy, ox, |t, xo| taps.push((xo, t * g.in_c)));
}

/// The reference: every channel of every pixel, one product at a time.
fn rows_scalar(x: &[i16], wt: &[i16], bias: Option<&[i32]>, g: &ConvGeometry, first_row: usize, part: &mut [i32]) {
    let c = g.in_c.max(1);
    let mut taps = Vec::with_capacity(g.kernel[0] * g.kernel[1]);
    for (r, out_row) in part.chunks_exact_mut(g.out_w * c).enumerate() {
        for (ox, out) in out_row.chunks_exact_mut(c).enumerate() {
            pixel_taps(g, first_row + r, ox, &mut taps);
            for (ch, o) in out.iter_mut().enumerate() {
                let s = taps.iter().fold(0i32, |s, &(xo, wo)| s.wrapping_add(x[xo + ch] as i32 * wt[wo + ch] as i32));
                *o = s.wrapping_add(bias.map_or(0, |b| b[ch]));
            }
        }
    }
}

/// The weights of tap pairs `(2p, 2p + 1)` for each block of 16 channels, interleaved once
/// per call (shared by every row block) as `madd_pair` needs them: `[pair][block][lo, hi]` (a
/// missing odd tap and channels past C are zeros).
pub struct PairWeights {
    taps: usize,
    c: usize,
    data: Vec<__m256i>,
}

impl PairWeights {
    /// From taps-major `[KH * KW, C]` weights; `None` where AVX2 does not run or `wt` is short.
    pub fn new(wt: &[i16], g: &ConvGeometry) -> Option<Self> {
        let (taps, c) = (g.kernel[0] * g.kernel[1], g.in_c);
        if !super::gemm_x86::avx2() || wt.len() < taps * c || taps == 0 {
            return None;
        }
        // SAFETY: AVX2 is present and `wt` holds `taps * c` values (checked above).
        Some(PairWeights { taps, c, data: unsafe { interleave_weights(wt, taps, c) } })
    }
}

#[target_feature(enable = "avx2")]
unsafe fn interleave_weights(wt: &[i16], taps: usize, c: usize) -> Vec<__m256i> {
    let (pairs, blocks) = (taps.div_ceil(2), c.div_ceil(BLOCK));
    let mut out = Vec::with_capacity(pairs * blocks * 2);
    let lane16 = |t: usize, c0: usize| {
        let mut v = [0i16; BLOCK];
        if t < taps {
            let n = (c - c0).min(BLOCK);
            v[..n].copy_from_slice(&wt[t * c + c0..][..n]);
        }
        _mm256_loadu_si256(v.as_ptr() as *const __m256i)
    };
    for p in 0..pairs {
        for b in 0..blocks {
            let (w0, w1) = (lane16(2 * p, b * BLOCK), lane16(2 * p + 1, b * BLOCK));
            out.push(_mm256_unpacklo_epi16(w0, w1));
            out.push(_mm256_unpackhi_epi16(w0, w1));
        }
    }
    out
}

/// Adds two taps' products of 16 channels to the accumulators (module docs): `lo` gets
/// channels [0..4 | 8..12], `hi` [4..8 | 12..16]; `w` is the pair's interleaved weights.
#[inline(always)]
unsafe fn madd_pair(acc: &mut [__m256i; 2], x0: __m256i, x1: __m256i, w: *const __m256i) {
    madd_pair_loaded(acc, x0, x1, [_mm256_loadu_si256(w), _mm256_loadu_si256(w.add(1))]);
}

/// [`madd_pair`] with the pair's weights already in registers (shared by two pixels).
#[inline(always)]
unsafe fn madd_pair_loaded(acc: &mut [__m256i; 2], x0: __m256i, x1: __m256i, w: [__m256i; 2]) {
    let lo = _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), w[0]);
    let hi = _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), w[1]);
    acc[0] = _mm256_add_epi32(acc[0], lo);
    acc[1] = _mm256_add_epi32(acc[1], hi);
}

/// Sums of one pixel's 16-channel block `c0` over all pairs plus the bias (`bias`: padded to
/// whole blocks), handed to `sink` in channel order at output element `at + c0` (`width`
/// channels). `tap(t)` is tap t's input pixel (the zero row for padding); loads read 16 lanes
/// there unless `copy` (a tail block whose 16 lanes might pass the input's end), which copies
/// `width` values first.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pixel_block<S: BlockSink>(
    tap: impl Fn(usize) -> *const i16,
    pairs: usize,
    w: *const __m256i,
    w_stride: usize,
    c0: usize,
    width: usize,
    copy: bool,
    bias: *const i32,
    sink: &mut S,
    at: usize,
) {
    let mut acc = [_mm256_setzero_si256(); 2];
    let mut lanes = [[0i16; BLOCK]; 2];
    for p in 0..pairs {
        let (pa, pb) = (tap(2 * p).add(c0), tap(2 * p + 1).add(c0));
        let (x0, x1) = if copy {
            core::ptr::copy_nonoverlapping(pa, lanes[0].as_mut_ptr(), width);
            core::ptr::copy_nonoverlapping(pb, lanes[1].as_mut_ptr(), width);
            (
                _mm256_loadu_si256(lanes[0].as_ptr() as *const __m256i),
                _mm256_loadu_si256(lanes[1].as_ptr() as *const __m256i),
            )
        } else {
            // Lanes past C (a tail block) meet zero weights and are not stored.
            (_mm256_loadu_si256(pa as *const __m256i), _mm256_loadu_si256(pb as *const __m256i))
        };
        madd_pair(&mut acc, x0, x1, w.add(p * w_stride));
    }
    // acc = [c0..c3 | c8..c11], [c4..c7 | c12..c15]: the sinks' lane order, as is the bias.
    let b = bias.add(c0);
    let v = [
        _mm256_add_epi32(acc[0], _mm256_loadu_si256(b as *const __m256i)),
        _mm256_add_epi32(acc[1], _mm256_loadu_si256(b.add(8) as *const __m256i)),
    ];
    sink.store(at + c0, c0, width, v);
}

/// [`pixel_block`] for two interior pixels side by side and a full block of 16 channels: the
/// second pixel's taps are `step` values after the first's. Each pair's weights are loaded
/// once for both, the two chains of sums overlap, and the output stage packs both pixels'
/// bytes together ([`BlockSink::store16x2`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pixel_block2<S: BlockSink>(
    tap: impl Fn(usize) -> *const i16,
    step: usize,
    pairs: usize,
    w: *const __m256i,
    w_stride: usize,
    c0: usize,
    bias: *const i32,
    sink: &mut S,
    at: [usize; 2],
) {
    let (mut a, mut b) = ([_mm256_setzero_si256(); 2], [_mm256_setzero_si256(); 2]);
    for p in 0..pairs {
        let (pa, pb) = (tap(2 * p).add(c0), tap(2 * p + 1).add(c0));
        let wp = w.add(p * w_stride);
        let wv = [_mm256_loadu_si256(wp), _mm256_loadu_si256(wp.add(1))];
        madd_pair_loaded(
            &mut a,
            _mm256_loadu_si256(pa as *const __m256i),
            _mm256_loadu_si256(pb as *const __m256i),
            wv,
        );
        let (qa, qb) = (pa.add(step), pb.add(step));
        madd_pair_loaded(
            &mut b,
            _mm256_loadu_si256(qa as *const __m256i),
            _mm256_loadu_si256(qb as *const __m256i),
            wv,
        );
    }
    let bv =
        [_mm256_loadu_si256(bias.add(c0) as *const __m256i), _mm256_loadu_si256(bias.add(c0 + 8) as *const __m256i)];
    let a = [_mm256_add_epi32(a[0], bv[0]), _mm256_add_epi32(a[1], bv[1])];
    let b = [_mm256_add_epi32(b[0], bv[0]), _mm256_add_epi32(b[1], bv[1])];
    sink.store16x2([at[0] + c0, at[1] + c0], c0, [a, b]);
}

/// Output rows into `sink`. The pair loops are compiled with their count known for the
/// kernel sizes networks use (3x3: 5 pairs, 5x5: 13), so they unroll; other sizes run the
/// same code with the count read at run time.
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2<S: BlockSink>(
    x: &[i16],
    pw: &PairWeights,
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    first_row: usize,
    out_len: usize,
    sink: S,
) {
    match g.kernel[0] * g.kernel[1] {
        9 => rows_avx2_pairs::<S, 5>(x, pw, bias, g, first_row, out_len, sink),
        25 => rows_avx2_pairs::<S, 13>(x, pw, bias, g, first_row, out_len, sink),
        _ => rows_avx2_pairs::<S, 0>(x, pw, bias, g, first_row, out_len, sink),
    }
}

/// [`rows_avx2`] with `P` tap pairs per pixel (0: `ceil(taps / 2)` at run time).
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2_pairs<S: BlockSink, const P: usize>(
    x: &[i16],
    pw: &PairWeights,
    bias: Option<&[i32]>,
    g: &ConvGeometry,
    first_row: usize,
    out_len: usize,
    mut sink: S,
) {
    let c = g.in_c;
    // The bias in the sums' lane order, padded to whole blocks (zeros without one), so every
    // block adds it by vectors.
    let bias_p = match bias {
        Some(b) => super::requant_x86::lane_order(&b[..c]),
        None => vec![0i32; c.div_ceil(BLOCK) * BLOCK],
    };
    let bp = bias_p.as_ptr();
    let [kh, kw] = g.kernel;
    let ([sh, sw], [dh, dw]) = (g.stride, g.dilation);
    let taps = kh * kw;
    let pairs = if P > 0 { P } else { taps.div_ceil(2) };
    let (blocks, full) = (c.div_ceil(BLOCK), c / BLOCK);
    let wi = &pw.data;
    let w_stride = 2 * blocks;
    // Padding taps read a row of zeros (a centred padded value is 0, so it adds nothing: the
    // sums equal the reference's, which skips them), so every pixel runs the same pairs; the
    // odd last tap's partner (zero weights) reads the last tap again.
    let zeros = vec![0i16; c + BLOCK];
    let xp = x.as_ptr();
    // Input offsets of the taps from an interior pixel's top-left tap.
    let rel: Vec<usize> =
        (0..2 * pairs).map(|t| t.min(taps - 1)).map(|t| ((t / kw) * dh * g.in_w + (t % kw) * dw) * c).collect();
    let mut tap_ptr: Vec<*const i16> = vec![zeros.as_ptr(); 2 * pairs];
    for r in 0..out_len / (g.out_w * c) {
        let row = first_row + r;
        let (n, oy) = (row / g.out_h, row % g.out_h);
        let iy0 = (oy * sh) as isize - g.pad_top as isize;
        let rows_inside = iy0 >= 0 && iy0 as usize + (kh - 1) * dh < g.in_h;
        let interior = |ox: usize| {
            let ix0 = (ox * sw) as isize - g.pad_left as isize;
            rows_inside && ix0 >= 0 && ix0 as usize + (kw - 1) * dw < g.in_w
        };
        let mut ox = 0;
        while ox < g.out_w {
            let ix0 = (ox * sw) as isize - g.pad_left as isize;
            let at = (r * g.out_w + ox) * c;
            if interior(ox) {
                let base_off = ((n * g.in_h + iy0 as usize) * g.in_w + ix0 as usize) * c;
                let base = xp.add(base_off);
                let tap = |t: usize| base.add(*rel.get_unchecked(t));
                // Two pixels at once where the next one is inside too: full blocks together,
                // the tail block (if any) one pixel at a time.
                let two = ox + 1 < g.out_w && interior(ox + 1);
                for b in 0..full {
                    let w = wi.as_ptr().add(2 * b);
                    if two {
                        pixel_block2(tap, sw * c, pairs, w, w_stride, b * BLOCK, bp, &mut sink, [at, at + c]);
                    } else {
                        pixel_block(tap, pairs, w, w_stride, b * BLOCK, BLOCK, false, bp, &mut sink, at);
                    }
                }
                if full < blocks {
                    let c0 = full * BLOCK;
                    let w = wi.as_ptr().add(2 * full);
                    for k in 0..1 + two as usize {
                        // A tail block whose 16 lanes could pass the input's end copies its lanes.
                        let off = base_off + k * sw * c;
                        let copy = off + rel[2 * pairs - 1] + c0 + BLOCK > x.len();
                        let tap_k = |t: usize| tap(t).add(k * sw * c);
                        pixel_block(tap_k, pairs, w, w_stride, c0, c - c0, copy, bp, &mut sink, at + k * c);
                    }
                }
                ox += 1 + two as usize;
                continue;
            }
            // A border pixel: padding taps point at the zero row.
            let mut last = 0;
            for (t, ptr) in tap_ptr.iter_mut().enumerate().take(taps) {
                let (iy, ix) = (iy0 + ((t / kw) * dh) as isize, ix0 + ((t % kw) * dw) as isize);
                *ptr = if iy >= 0 && (iy as usize) < g.in_h && ix >= 0 && (ix as usize) < g.in_w {
                    let off = ((n * g.in_h + iy as usize) * g.in_w + ix as usize) * c;
                    last = last.max(off);
                    xp.add(off)
                } else {
                    zeros.as_ptr()
                };
            }
            let tap = |t: usize| *tap_ptr.get_unchecked(t);
            for b in 0..full {
                pixel_block(tap, pairs, wi.as_ptr().add(2 * b), w_stride, b * BLOCK, BLOCK, false, bp, &mut sink, at);
            }
            if full < blocks {
                let c0 = full * BLOCK;
                let copy = last + c0 + BLOCK > x.len();
                pixel_block(tap, pairs, wi.as_ptr().add(2 * full), w_stride, c0, c - c0, copy, bp, &mut sink, at);
            }
            ox += 1;
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
        for &(k, s) in &[(3usize, 1usize), (3, 2), (5, 1), (5, 2), (1, 1), (2, 1), (7, 2)] {
            for &c in &[1usize, 8, 15, 16, 17, 40, 48] {
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
                    let pw = PairWeights::new(&wt, &g).unwrap();
                    depthwise_i8_rows(&x, &wt, &pw, Some(&bias), &g, 0, &mut got);
                    let mut want = vec![0i32; got.len()];
                    rows_scalar(&x, &wt, Some(&bias), &g, 0, &mut want);
                    assert_eq!(got, want, "k={k} s={s} c={c} extreme={extreme}");
                    // The fused output stage: the same sums, requantized value by value.
                    let mults: Vec<f32> = (0..c).map(|j| 1e-3 * (1 + j % 7) as f32 + 2e-4).collect();
                    let lane_mults = super::super::requant_x86::lane_order(&mults);
                    let (zp, lo, hi) = (-3, -3, 60);
                    let mut q = vec![0i8; got.len()];
                    depthwise_i8_requant_rows(&x, &wt, &pw, Some(&bias), &g, 0, &lane_mults, (zp, lo, hi), &mut q);
                    let want_q: Vec<i8> = want
                        .iter()
                        .enumerate()
                        .map(|(i, &a)| crate::quant::requantize(a, mults[i % c], zp, lo, hi) as i8)
                        .collect();
                    assert_eq!(q, want_q, "requantized: k={k} s={s} c={c} extreme={extreme}");
                    // A block of rows from the middle gives the same rows.
                    let row = g.out_w * c;
                    let mut part = vec![0i32; 2 * row];
                    depthwise_i8_rows(&x, &wt, &pw, Some(&bias), &g, 3, &mut part);
                    assert_eq!(part, want[3 * row..5 * row], "k={k} s={s} c={c}: rows 3..5");
                }
            }
        }
    }
}
