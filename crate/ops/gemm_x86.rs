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
//! (16 i16, one __m256i; N padded to a multiple of 16 with zero channels). The pair
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
/// `ceil(K / 2)` vectors. Made once per weight tensor ([`super::gemm::PackedB`]).
pub fn pack_b(b: &[i8], zb: &[i32], n: usize, k: usize) -> Vec<i16> {
    super::gemm::pack_b_pairs(b, zb, n, k, LANES, NR)
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
            let block = &packed[(j / LANES) * kp * LANES..][..kp * LANES];
            let mut s = bias.map_or(0, |b| b[j]);
            for p in 0..kp {
                let w = block[(p / 2) * 2 * LANES + (j % LANES) * 2 + p % 2];
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
    super::scratch::with_i16(m * kp, |ac| {
        centre_rows_into(a, m, k, kp, za, ac);
        gemm_avx2_centred(ac, bp, bias, m, kp, n, SumsOut(out.as_mut_ptr()))
    })
}

/// A's rows minus `za` as i16 rows of `kp` (the padding value, if any, zero).
fn centre_rows_into(a: &[i8], m: usize, k: usize, kp: usize, za: i32, dst: &mut [i16]) {
    for (d, row) in dst.chunks_exact_mut(kp.max(1)).zip(a.chunks_exact(k.max(1))).take(m) {
        for (o, &v) in d.iter_mut().zip(row) {
            *o = (v as i32 - za) as i16;
        }
        d[k..].fill(0);
    }
}

/// The int8 output `[M, N]` of the GEMM with the engine's float requantization fused into the
/// micro-kernel (`mults` per channel, at least `ceil(N / 16) * 16` of them, zeros past N): the
/// bits of [`gemm_i8_acc_packed`] then `requant_x86::requantize_rows`. Call only where [`avx2`]
/// is true.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_requant_packed(
    a: &[i8],
    za: i32,
    packed: &[i16],
    bias: Option<&[i32]>,
    (m, k, n): (usize, usize, usize),
    mults: &[f32],
    (zp, lo, hi): (i32, i32, i32),
    out: &mut [i8],
) {
    let fits = a.len() >= m * k
        && packed.len() >= n.div_ceil(NR) * NR * k.div_ceil(2) * 2
        && bias.is_none_or(|b| b.len() >= n)
        && mults.len() >= n.div_ceil(NR) * NR
        && out.len() >= m * n;
    if !avx2() || !fits {
        // Unreachable through `gemm::gemm_i8_requant_packed`, which checks the lengths and
        // calls this only where AVX2 runs.
        let acc = reference(a, za, packed, bias, m, k, n);
        for (idx, (o, &v)) in out.iter_mut().zip(&acc).enumerate() {
            *o = crate::quant::requantize(v, mults[idx % n.max(1)], zp, lo, hi) as i8;
        }
        return;
    }
    let kp = k.div_ceil(2) * 2;
    // SAFETY: AVX2 is present and the lengths are checked above; every load and store below
    // stays inside the slices.
    unsafe {
        let sink = RequantOut::new(out.as_mut_ptr(), mults.as_ptr(), zp, lo, hi);
        super::scratch::with_i16(m * kp, |ac| {
            centre_rows_into(a, m, k, kp, za, ac);
            gemm_avx2_centred(ac, packed, bias, m, kp, n, sink)
        })
    }
}

#[target_feature(enable = "avx2")]
unsafe fn gemm_avx2_centred<S: BlockSink>(
    ac: &[i16],
    bp: &[i16],
    bias: Option<&[i32]>,
    m: usize,
    kp: usize,
    n: usize,
    mut sink: S,
) {
    let np = n.div_ceil(NR) * NR;
    let pairs = kp / 2;
    let block_len = kp * LANES;
    // The bias padded to whole blocks once, so each block starts from two plain loads.
    let mut bias_p = vec![0i32; np];
    if let Some(b) = bias {
        bias_p[..n].copy_from_slice(&b[..n]);
    }
    // Channel panels outside, rows inside: a panel of B (K x 16) stays in L1 while every
    // row group of the call passes over it (the callers hand over blocks of rows whose
    // centred A fits in L2).
    let mut j = 0;
    while j < np {
        let init = [
            _mm256_loadu_si256(bias_p.as_ptr().add(j) as *const __m256i),
            _mm256_loadu_si256(bias_p.as_ptr().add(j + LANES) as *const __m256i),
        ];
        let b0 = bp[(j / LANES) * block_len..][..block_len].as_ptr();
        let b1 = bp[(j / LANES + 1) * block_len..][..block_len].as_ptr();
        let width = (n - j).min(NR);
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(MR);
            // Rows past the last one reuse it; their sums are not stored.
            let row_ptr: [*const i16; MR] = core::array::from_fn(|r| ac[(i + r.min(rows - 1)) * kp..].as_ptr());
            let mut acc = [init; MR];
            for q in 0..pairs {
                let w0 = _mm256_loadu_si256(b0.add(q * 2 * LANES) as *const __m256i);
                let w1 = _mm256_loadu_si256(b1.add(q * 2 * LANES) as *const __m256i);
                for r in 0..MR {
                    let pair = (row_ptr[r].add(2 * q) as *const i32).read_unaligned();
                    let av = _mm256_set1_epi32(pair);
                    acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, w0));
                    acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, w1));
                }
            }
            for (r, sums) in acc.iter().enumerate().take(rows) {
                sink.store((i + r) * n + j, j, width, *sums);
            }
            i += MR;
        }
        j += NR;
    }
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
                        let mut mults: Vec<f32> = (0..n).map(|j| 1e-4 * (1 + j % 5) as f32 + 3e-5).collect();
                        mults.resize(n.div_ceil(NR) * NR, 0.0);
                        let (zp, lo, hi) = (5, -128, 127);
                        let mut q = vec![0i8; m * n];
                        gemm_i8_requant_packed(&a, za, &packed, Some(&bias), (m, k, n), &mults, (zp, lo, hi), &mut q);
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
