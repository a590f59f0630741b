//! The int8 GEMM accumulators of [`super::gemm::gemm_i8_acc`] with x86-64 AVX2, for the
//! native CLI. Chosen at run time ([`avx2`]: `is_x86_feature_detected!("avx2")`, unless
//! `EDGETUNE_CPU_KERNELS=portable` keeps the portable loop), so one binary runs on any x86-64.
//!
//! `acc[i, j] = bias[j] + sum_p (a[i, p] - za) * (b[j, p] - zb[j])`, A `[M, K]`, B `[N, K]`.
//!
//! The wasm kernel's design (`gemm_wasm`: lane = output channel, no horizontal sums) on 8 i32
//! lanes. Both operands are centred into i16 (values in [-255, 255]) and K is padded with
//! zeros to an even length KP. B is packed in blocks of 8 output channels, pair-interleaved:
//! ```text
//! packed[jb][q] = [b'(8jb, 2q), b'(8jb, 2q+1), b'(8jb+1, 2q), b'(8jb+1, 2q+1), .., b'(8jb+7, 2q+1)]
//! ```
//! (16 i16, one __m256i; N padded to a multiple of 16 with zero channels), where the channels
//! of each 16-channel panel are taken in the output stage's lane order (`requant_x86`: block
//! 2P holds channels 16P + 0..3 and 16P + 8..11, block 2P + 1 the other eight), so the sums
//! reach the requantization in the order its packs need. The pair
//! `(a'(i, 2q), a'(i, 2q+1))`, read as one i32 and broadcast to eight lanes, times a packed
//! vector under `vpmaddwd` adds 2 products to each of 8 output channels.
//!
//! The micro-kernel holds a 6-row x 16-channel block in twelve __m256i accumulators started at
//! the bias; per pair of K: 2 weight loads, 6 broadcasts, 12 `vpmaddwd` + 12 `vpaddd` (192
//! multiply-adds). Channel panels of 16 are the outer loop and row groups the inner one, so a
//! panel (K x 16) stays in L1 while the call's rows pass over it. A pair of products is at most 2 * 255^2, so `vpmaddwd` never saturates, and
//! integer sums are exact in any order (wrapping like the scalar code): bit-identical to the
//! reference (tests below and every GEMM test through [`super::gemm`]).

use core::arch::x86_64::*;
use std::sync::OnceLock;

use super::gemm::centred_rows;
use super::requant_x86::{BlockSink, RequantOut, SumsOut};

/// Output channels per packed block (i32 lanes of a __m256i).
const LANES: usize = 8;
/// Rows and channels of the micro-kernel's register block.
const MR: usize = 6;
const NR: usize = 16;

/// True where the AVX2 kernel runs: the CPU has AVX2 and `EDGETUNE_CPU_KERNELS` is not
/// `portable` (read once).
pub fn avx2() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("EDGETUNE_CPU_KERNELS").ok().as_deref() != Some("portable") && is_x86_feature_detected!("avx2")
    })
}

/// B `[N, K]` centred and packed as in the module docs: `ceil(N / 16) * 2` blocks of
/// `ceil(K / 2)` vectors, the channels of each 16-channel panel in lane order. Made once per
/// weight tensor ([`super::gemm::PackedB`]).
pub fn pack_b(b: &[i8], zb: &[i32], n: usize, k: usize) -> Vec<i16> {
    let np = n.div_ceil(NR) * NR;
    let (mut rows, mut zps) = (vec![0i8; np * k], vec![0i32; np]);
    // Row p of the reordered B is channel `channel_at(p)`; positions past N stay zero rows.
    for p in 0..np {
        let j = channel_at(p);
        if j < n {
            rows[p * k..(p + 1) * k].copy_from_slice(&b[j * k..(j + 1) * k]);
            zps[p] = super::gemm::zp_at(zb, j);
        }
    }
    super::gemm::pack_b_pairs(&rows, &zps, np, k, LANES, NR)
}

/// The bias (or zeros) in lane order, padded to whole 16-channel blocks: what
/// [`gemm_i8_requant_packed`] takes.
pub fn lane_bias(bias: Option<&[i32]>, n: usize) -> Vec<i32> {
    match bias {
        Some(b) => super::requant_x86::lane_order(&b[..n.min(b.len())]),
        None => vec![0; n.div_ceil(NR) * NR],
    }
}

/// The channel at packed position `p` (and the position of channel `p`: the lane order is its
/// own inverse).
pub(super) fn channel_at(p: usize) -> usize {
    p - p % NR + super::requant_x86::lane_channel(p % NR)
}

/// The accumulators `[M, N]` on B packed by [`pack_b`] into `out` (every element written).
/// Call only where [`avx2`] is true.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_acc_packed(
    a: &[i8],
    za: i32,
    packed: &[i16],
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
    out: &mut [i32],
) {
    let fits = a.len() >= m * k
        && packed.len() >= n.div_ceil(NR) * NR * k.div_ceil(2) * 2
        && bias.is_none_or(|b| b.len() >= n)
        && out.len() >= m * n;
    if !avx2() || !fits {
        // Unreachable through `PackedB`, which packs for this kernel only where it runs and
        // checks the lengths.
        let r = reference(a, za, packed, bias, m, k, n);
        out.iter_mut().zip(r).for_each(|(o, v)| *o = v);
        return;
    }
    // SAFETY: AVX2 is present and the lengths are checked above; every load and store below
    // stays inside the slices.
    unsafe { gemm_avx2(a, za, packed, bias, m, k, n, out) }
}

/// The same sums from the packed layout, one product at a time (no SIMD).
fn reference(a: &[i8], za: i32, packed: &[i16], bias: Option<&[i32]>, m: usize, k: usize, n: usize) -> Vec<i32> {
    let kp = k.div_ceil(2) * 2;
    let ac = centred_rows(a, m, k, kp, za);
    let mut out = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let at = channel_at(j);
            let block = &packed[(at / LANES) * kp * LANES..][..kp * LANES];
            let mut s = bias.map_or(0, |b| b[j]);
            for p in 0..kp {
                let w = block[(p / 2) * 2 * LANES + (at % LANES) * 2 + p % 2];
                s = s.wrapping_add(ac[i * kp + p] as i32 * w as i32);
            }
            out[i * n + j] = s;
        }
    }
    out
}

#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx2(
    a: &[i8],
    za: i32,
    bp: &[i16],
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
    out: &mut [i32],
) {
    let kp = k.div_ceil(2) * 2;
    let lane_bias = lane_bias(bias, n);
    super::scratch::with_i16(m * kp, |ac| {
        centre_rows_into(a, m, k, kp, za, ac);
        gemm_avx2_centred(ac, bp, &lane_bias, m, kp, n, SumsOut(out.as_mut_ptr()))
    })
}

/// A's rows minus `za` as i16 rows of `kp` (the padding value, if any, zero).
#[target_feature(enable = "avx2")]
unsafe fn centre_rows_into(a: &[i8], m: usize, k: usize, kp: usize, za: i32, dst: &mut [i16]) {
    let (a, dst) = (&a[..m * k], &mut dst[..m * kp]);
    if kp == k {
        // No padding: one flat run.
        return centre_run(a, za, dst);
    }
    for (d, row) in dst.chunks_exact_mut(kp.max(1)).zip(a.chunks_exact(k.max(1))) {
        centre_run(row, za, &mut d[..k]);
        d[k..].fill(0);
    }
}

/// `dst[i] = src[i] - za` for `i < min(len)`, with AVX2 where [`avx2`] is true, else one by
/// one: the depthwise kernels' centred input.
pub(super) fn centre(src: &[i8], za: i32, dst: &mut [i16]) {
    if avx2() {
        // SAFETY: AVX2 is present; centre_run stays inside both slices.
        return unsafe { centre_run(src, za, dst) };
    }
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = (v as i32 - za) as i16;
    }
}

/// `dst[i] = src[i] - za` for `i < min(len)`, sixteen at a time (`vpmovsxbw`, `vpsubw`).
#[target_feature(enable = "avx2")]
unsafe fn centre_run(src: &[i8], za: i32, dst: &mut [i16]) {
    let len = src.len().min(dst.len());
    let zv = _mm256_set1_epi16(za as i16);
    let mut i = 0;
    while i + 16 <= len {
        // SAFETY (caller: AVX2): 16 bytes read and 16 i16 written, inside both slices.
        let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(src.as_ptr().add(i) as *const __m128i));
        _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, _mm256_sub_epi16(x, zv));
        i += 16;
    }
    for (o, &v) in dst[i..len].iter_mut().zip(&src[i..len]) {
        *o = (v as i32 - za) as i16;
    }
}

/// The int8 output `[M, N]` of the GEMM with the engine's float requantization fused into the
/// micro-kernel (`lane_mults`: the per-channel multipliers in lane order,
/// `requant_x86::lane_order`, `ceil(N / 16) * 16` of them; `lane_bias` the bias likewise,
/// zeros for none; both made once per layer call, not per row block): the
/// bits of [`gemm_i8_acc_packed`] then `requant_x86::requantize_rows`. Call only where [`avx2`]
/// is true.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_requant_packed(
    a: &[i8],
    za: i32,
    packed: &[i16],
    lane_bias: &[i32],
    (m, k, n): (usize, usize, usize),
    lane_mults: &[f32],
    (zp, lo, hi): (i32, i32, i32),
    out: &mut [i8],
) {
    let np = n.div_ceil(NR) * NR;
    let fits = a.len() >= m * k
        && packed.len() >= np * k.div_ceil(2) * 2
        && lane_bias.len() >= np
        && lane_mults.len() >= np
        && out.len() >= m * n;
    if !avx2() || !fits {
        // Unreachable through `gemm::gemm_i8_requant_packed`, which checks the lengths and
        // calls this only where AVX2 runs.
        let bias = super::requant_x86::channel_order(lane_bias, n);
        let acc = reference(a, za, packed, Some(&bias), m, k, n);
        return super::requant_x86::requantize_rows_scalar(&acc, n, lane_mults, (zp, lo, hi), out);
    }
    let kp = k.div_ceil(2) * 2;
    // SAFETY: AVX2 is present and the lengths are checked above; every load and store below
    // stays inside the slices.
    unsafe {
        let sink = RequantOut::new(out.as_mut_ptr(), lane_mults.as_ptr(), zp, lo, hi);
        super::scratch::with_i16(m * kp, |ac| {
            centre_rows_into(a, m, k, kp, za, ac);
            gemm_avx2_centred(ac, packed, lane_bias, m, kp, n, sink)
        })
    }
}

#[target_feature(enable = "avx2")]
unsafe fn gemm_avx2_centred<S: BlockSink>(
    ac: &[i16],
    bp: &[i16],
    lane_bias: &[i32],
    m: usize,
    kp: usize,
    n: usize,
    mut sink: S,
) {
    let np = n.div_ceil(NR) * NR;
    let block_len = kp * LANES;
    debug_assert!(ac.len() >= m * kp && bp.len() >= np * kp && lane_bias.len() >= np);
    // Channel panels outside, rows inside: a panel of B (K x 16) stays in L1 while every
    // row group of the call passes over it (the callers hand over blocks of rows whose
    // centred A fits in L2).
    let panel = Panel { ac: ac.as_ptr(), m, kp, n };
    for j in (0..np).step_by(NR) {
        let init = [
            _mm256_loadu_si256(lane_bias.as_ptr().add(j) as *const __m256i),
            _mm256_loadu_si256(lane_bias.as_ptr().add(j + LANES) as *const __m256i),
        ];
        let b = [bp.as_ptr().add((j / LANES) * block_len), bp.as_ptr().add((j / LANES + 1) * block_len)];
        // Whole panels store without a width test; only a channel tail takes the other path.
        if n - j >= NR {
            panel.run::<S, true>(b, init, j, &mut sink);
        } else {
            panel.run::<S, false>(b, init, j, &mut sink);
        }
    }
}

/// The centred A `[M, KP]` and the shape, for one channel panel at a time.
struct Panel {
    ac: *const i16,
    m: usize,
    kp: usize,
    n: usize,
}

impl Panel {
    /// Every row of A against the 16 channels from `j` (packed blocks `b`), stored through
    /// `sink`; `FULL`: all 16 channels exist.
    #[inline(always)]
    unsafe fn run<S: BlockSink, const FULL: bool>(
        &self,
        b: [*const i16; 2],
        init: [__m256i; 2],
        j: usize,
        sink: &mut S,
    ) {
        let width = (self.n - j).min(NR);
        let mut i = 0;
        while i < self.m {
            let rows = (self.m - i).min(MR);
            // Rows past the last one reuse it; their sums are not stored.
            let row_ptr: [*const i16; MR] = core::array::from_fn(|r| self.ac.add((i + r.min(rows - 1)) * self.kp));
            let acc = block6x16(row_ptr, b, self.kp / 2, init);
            let at = |r: usize| (i + r) * self.n + j;
            if FULL && rows == MR {
                // Rows in pairs: the byte steps of the requantization shared by two rows.
                for r in (0..MR).step_by(2) {
                    sink.store16x2([at(r), at(r + 1)], j, [acc[r], acc[r + 1]]);
                }
            } else {
                for (r, sums) in acc.iter().enumerate().take(rows) {
                    if FULL {
                        sink.store16(at(r), j, *sums);
                    } else {
                        sink.store_part(at(r), j, width, *sums);
                    }
                }
            }
            i += MR;
        }
    }
}

/// The micro-kernel: six rows of centred A (`rows`, `pairs` i16 pairs each) against one
/// 16-channel panel (`b`: its two packed 8-channel blocks), from `init` (the bias).
#[inline(always)]
unsafe fn block6x16(
    rows: [*const i16; MR],
    b: [*const i16; 2],
    pairs: usize,
    init: [__m256i; 2],
) -> [[__m256i; 2]; MR] {
    let mut acc = [init; MR];
    for q in 0..pairs {
        let w0 = _mm256_loadu_si256(b[0].add(q * 2 * LANES) as *const __m256i);
        let w1 = _mm256_loadu_si256(b[1].add(q * 2 * LANES) as *const __m256i);
        for r in 0..MR {
            let av = _mm256_set1_epi32((rows[r].add(2 * q) as *const i32).read_unaligned());
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, w0));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, w1));
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 kernel against the packed layout read one product at a time and against the
    /// plain centred sums, on shapes that hit every tail (rows not a multiple of 4, odd K,
    /// channels off the 8- and 16-lane steps) and extreme values (-128 against -128 with zero
    /// points 127: centred 255 * 255 products).
    #[test]
    fn avx2_gemm_equals_the_plain_sums() {
        if !avx2() {
            eprintln!("no AVX2 on this CPU (or EDGETUNE_CPU_KERNELS=portable): kernel not tested");
            return;
        }
        let mut seed = 0x2545_f491u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for &m in &[1usize, 3, 4, 5, 6, 7, 9, 13] {
            for &k in &[1usize, 2, 7, 16, 27, 40] {
                for &n in &[1usize, 7, 8, 9, 16, 17, 33] {
                    for extreme in [false, true] {
                        let a: Vec<i8> = (0..m * k).map(|_| if extreme { -128 } else { next() as i8 }).collect();
                        let b: Vec<i8> = (0..n * k).map(|_| if extreme { -128 } else { next() as i8 }).collect();
                        let za = if extreme { 127 } else { (next() % 256) as i32 - 128 };
                        let zb: Vec<i32> =
                            (0..n).map(|_| if extreme { 127 } else { (next() % 256) as i32 - 128 }).collect();
                        let bias: Vec<i32> = (0..n).map(|_| (next() % 20_001) as i32 - 10_000).collect();
                        let packed = pack_b(&b, &zb, n, k);
                        let mut got = vec![i32::MIN; m * n];
                        gemm_i8_acc_packed(&a, za, &packed, Some(&bias), m, k, n, &mut got);
                        assert_eq!(got, reference(&a, za, &packed, Some(&bias), m, k, n), "m={m} k={k} n={n}");
                        for i in 0..m {
                            for j in 0..n {
                                let want = (0..k).fold(bias[j], |s, p| {
                                    s + (a[i * k + p] as i32 - za) * (b[j * k + p] as i32 - zb[j])
                                });
                                assert_eq!(got[i * n + j], want, "m={m} k={k} n={n} at ({i}, {j})");
                            }
                        }
                        // The fused output stage: the same sums, requantized value by value.
                        let mults: Vec<f32> = (0..n).map(|j| 1e-4 * (1 + j % 5) as f32 + 3e-5).collect();
                        let lane_mults = crate::ops::requant_x86::lane_order(&mults);
                        let (zp, lo, hi) = (5, -128, 127);
                        let mut q = vec![0i8; m * n];
                        gemm_i8_requant_packed(
                            &a,
                            za,
                            &packed,
                            &lane_bias(Some(&bias), n),
                            (m, k, n),
                            &lane_mults,
                            (zp, lo, hi),
                            &mut q,
                        );
                        let want_q: Vec<i8> = got
                            .iter()
                            .enumerate()
                            .map(|(i, &v)| crate::quant::requantize(v, mults[i % n], zp, lo, hi) as i8)
                            .collect();
                        assert_eq!(q, want_q, "requantized: m={m} k={k} n={n}");
                        let mut unbiased = vec![i32::MIN; m * n];
                        gemm_i8_acc_packed(&a, za, &packed, None, m, k, n, &mut unbiased);
                        assert_eq!(unbiased, reference(&a, za, &packed, None, m, k, n), "m={m} k={k} n={n}, no bias");
                    }
                }
            }
        }
    }
}
