//! The int8 GEMM tile loop on relaxed SIMD's integer dot product
//! (`i32x4.relaxed_dot_i8x16_i7x16_add_s`), built where the module is compiled with
//! `relaxed-simd` (`pkg/relaxed/`, `pkg/threads-relaxed/`); the same sums as
//! [`super::gemm_wasm`]'s i16 loop, bit for bit.
//!
//! The instruction: lane `c` of the result is `acc[c] + sum_{t<4} a[4c + t] * b[4c + t]`, `a`
//! any i8, `b` the "i7" operand. Its result is defined only while every `b` value is in
//! [0, 127]: x86 without VNNI lowers it to `pmaddubsw` (b taken unsigned, pairs summed in
//! saturating i16) + `pmaddwd` + `paddd`, x86 with AVX-VNNI to `vpdpbusd` (b unsigned), arm64
//! to `sdot` (signed) or `smull`/`saddlp` where there is no dot-product extension. Inside that
//! range every lowering is the exact sum: a pair is at most `2 * 128 * 127 = 32512 < 2^15`.
//!
//! Centred weights `w' = b - zb` in [-127, 127] (per-channel int8 always; a layer whose
//! uint8 weights centre outside stays on the i16 loop) are split into two i7 parts,
//! `pos = max(w', 0)` and `neg = max(-w', 0)`, and the negative part meets the bitwise
//! complement of the activation, `!a = -a - 1` (still any i8, so no lane overflows):
//! ```text
//! sum_p (a_p - za) w'_p = sum_p a_p pos_p + sum_p (!a_p) neg_p + N - za S,
//!   N = sum_p neg_p,  S = sum_p w'_p          (both per channel, made when packing)
//! ```
//! so the bias becomes `bias + N - za * S` and the activations are used raw: no centred copy
//! of A when K is a multiple of 4 (else rows are copied, zero padded to KQ = 4 ceil(K/4)).
//!
//! Packing, per block of 4 output channels, per quad q of K (16 i8, one v128):
//! ```text
//! pos[jb][q] = [pos(4jb, 4q..4q+4), pos(4jb+1, 4q..4q+4), pos(4jb+2, ..), pos(4jb+3, ..)]
//! ```
//! and `neg` alike; N padded to a multiple of 8 with zero channels. The micro-kernel is the
//! i16 loop's 4 rows x 8 channels: per quad, 4 weight loads, 8 splat loads (4 bytes of a
//! row to every lane, and of its complement, computed once per call), 16 dot-adds for 128
//! multiply-adds (the i16 loop: 44 instructions for the same 128).

use core::arch::wasm32::*;

/// Output channels per packed block (i32x4 lanes), rows and channels of the register block.
const LANES: usize = 4;
const MR: usize = 4;
const NR: usize = 8;
/// Bytes of K per dot-product lane.
const QUAD: usize = 4;

/// B split and packed for the relaxed dot (module docs), with its bias corrections.
#[derive(Clone, Debug)]
pub struct PackedI7 {
    pos: Vec<i8>,
    neg: Vec<i8>,
    /// `N_j` and `S_j` of the module docs, for the `np` padded channels (0 past `n`).
    neg_sum: Vec<i32>,
    col_sum: Vec<i32>,
}

/// B `[N, K]` centred by `zb` and split, or `None` when a centred weight falls outside
/// [-127, 127] (the caller keeps the i16 loop for that layer).
pub fn pack_b_i7(b: &[i8], zb: &[i32], n: usize, k: usize) -> Option<PackedI7> {
    let (kq, np) = (k.div_ceil(QUAD) * QUAD, n.div_ceil(NR) * NR);
    let block_len = kq * LANES;
    let (mut pos, mut neg) = (vec![0i8; np * kq], vec![0i8; np * kq]);
    let (mut neg_sum, mut col_sum) = (vec![0i32; np], vec![0i32; np]);
    for (j, row) in b.chunks_exact(k.max(1)).enumerate().take(n) {
        let z = if zb.len() == 1 { zb[0] } else { zb[j] };
        let base = (j / LANES) * block_len + (j % LANES) * QUAD;
        for (p, &v) in row.iter().enumerate() {
            let w = v as i32 - z;
            if !(-127..=127).contains(&w) {
                return None;
            }
            let at = base + (p / QUAD) * QUAD * LANES + p % QUAD;
            pos[at] = w.max(0) as i8;
            neg[at] = (-w).max(0) as i8;
            neg_sum[j] += (-w).max(0);
            col_sum[j] += w;
        }
    }
    Some(PackedI7 { pos, neg, neg_sum, col_sum })
}

/// The tile loop of [`super::gemm_wasm`] (same `emit(i, rows, j, sums)` contract) on the
/// relaxed dot product.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_tiles_i7(
    a: &[i8],
    za: i32,
    packed: &PackedI7,
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
    mut emit: impl FnMut(usize, usize, usize, &[[v128; 2]; MR]),
) {
    let kq = k.div_ceil(QUAD) * QUAD;
    let np = n.div_ceil(NR) * NR;
    // Rows of KQ bytes: A itself when K is a multiple of 4, else a zero-padded copy (the
    // padded weights are 0, so the pad's value would not matter, but it must be readable);
    // and their complements, made once here rather than once per row block and channel block.
    let padded;
    let rows_kq: &[i8] = if kq == k {
        a
    } else {
        let mut p = vec![0i8; m * kq];
        for (dst, src) in p.chunks_exact_mut(kq).zip(a.chunks_exact(k.max(1))) {
            dst[..k].copy_from_slice(src);
        }
        padded = p;
        &padded
    };
    let not_rows: Vec<i8> = rows_kq[..m * kq].iter().map(|&v| !v).collect();
    // bias + N - za S, wrapping: the true sum fits i32 (the reduction length is checked), so
    // wrapped intermediates end at the same value.
    let bias_p: Vec<i32> = (0..np)
        .map(|j| {
            let b = bias.and_then(|b| b.get(j)).copied().unwrap_or(0);
            b.wrapping_add(packed.neg_sum[j]).wrapping_sub(za.wrapping_mul(packed.col_sum[j]))
        })
        .collect();
    let quads = kq / QUAD;
    let block_len = kq * LANES;
    // Every pointer below stays inside these lengths: rows i + r < m of kq bytes, blocks
    // j / 4 + 1 < np / 4 of block_len bytes in pos and neg (j + 8 <= np).
    assert!(rows_kq.len() >= m * kq && not_rows.len() >= m * kq);
    assert!(packed.pos.len() >= np * kq && packed.neg.len() >= np * kq);
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(MR);
        // A short last block repeats its last row (computed, not stored).
        let ar: [usize; MR] = core::array::from_fn(|r| (i + r.min(rows - 1)) * kq);
        let mut j = 0;
        while j < n {
            let bias0 = load_i32x4(&bias_p[j..j + LANES]);
            let bias1 = load_i32x4(&bias_p[j + LANES..j + 2 * LANES]);
            let mut s = [[bias0, bias1]; MR];
            // SAFETY: see the assert above; all loads are unaligned-safe wasm loads.
            unsafe {
                let p0 = packed.pos.as_ptr().add((j / LANES) * block_len);
                let p1 = p0.add(block_len);
                let n0 = packed.neg.as_ptr().add((j / LANES) * block_len);
                let n1 = n0.add(block_len);
                let pa: [*const i8; MR] = core::array::from_fn(|r| rows_kq.as_ptr().add(ar[r]));
                let pn: [*const i8; MR] = core::array::from_fn(|r| not_rows.as_ptr().add(ar[r]));
                for q in 0..quads {
                    let o = q * QUAD * LANES;
                    let wp0 = v128_load(p0.add(o) as *const v128);
                    let wp1 = v128_load(p1.add(o) as *const v128);
                    let wn0 = v128_load(n0.add(o) as *const v128);
                    let wn1 = v128_load(n1.add(o) as *const v128);
                    for ((sr, &pr), &pnr) in s.iter_mut().zip(&pa).zip(&pn) {
                        let x = v128_load32_splat(pr.add(QUAD * q) as *const u32);
                        let nx = v128_load32_splat(pnr.add(QUAD * q) as *const u32);
                        sr[0] = i32x4_relaxed_dot_i8x16_i7x16_add(x, wp0, sr[0]);
                        sr[1] = i32x4_relaxed_dot_i8x16_i7x16_add(x, wp1, sr[1]);
                        sr[0] = i32x4_relaxed_dot_i8x16_i7x16_add(nx, wn0, sr[0]);
                        sr[1] = i32x4_relaxed_dot_i8x16_i7x16_add(nx, wn1, sr[1]);
                    }
                }
            }
            emit(i, rows, j, &s);
            j += NR;
        }
        i += rows;
    }
}

/// The tile loop's instruction alone, `i32x4.relaxed_dot_i8x16_i7x16_add_s`, over `iters`
/// rounds of [`super::gemm_wasm::PEAK_CHAINS`] independent chains, without memory traffic:
/// the ceiling [`super::gemm::int8_dot_peak_macs_per_s`] reports in relaxed builds. Each dot
/// does 16 products, but the split spends two on 16 useful multiply-adds (module docs), so
/// the caller counts 8 per instruction.
pub fn dot_add_peak_i7(iters: u32, seed: i32) -> i32 {
    let w = i8x16_splat((seed & 0x3f) as i8);
    let mut a = [0; super::gemm_wasm::PEAK_CHAINS].map(|_| i32x4_splat(seed));
    for (k, v) in a.iter_mut().enumerate() {
        *v = i32x4_add(*v, i32x4_splat(k as i32));
    }
    let x = i8x16_splat(seed as i8);
    for _ in 0..iters {
        for v in a.iter_mut() {
            *v = i32x4_relaxed_dot_i8x16_i7x16_add(x, w, *v);
        }
    }
    a.iter().fold(0, |s, &v| s ^ i32x4_extract_lane::<0>(v) ^ i32x4_extract_lane::<3>(v))
}

#[inline(always)]
fn load_i32x4(s: &[i32]) -> v128 {
    assert!(s.len() >= 4);
    // SAFETY: `s` holds at least 4 i32 (16 bytes).
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relaxed loop equals the plain centred sum on every tail (K not a multiple of 4,
    /// short row blocks, padded channels), at the edges of the split (w' = +-127, a = -128,
    /// za = +-128) where a wrong operand order or a saturating pair would show.
    #[test]
    fn relaxed_tiles_equal_a_plain_loop() {
        let mut rng = crate::base::rng::Rng::new(0x2545_f491);
        let mut next = move || rng.next_u64() as u32;
        for &(m, k, n) in &[(1, 1, 1), (4, 4, 8), (5, 27, 9), (7, 32, 16), (13, 33, 20), (3, 96, 5)] {
            for edge in [false, true] {
                let a: Vec<i8> = (0..m * k).map(|x| if edge { [-128, 127][x % 2] } else { next() as i8 }).collect();
                let b: Vec<i8> = (0..n * k)
                    .map(|x| if edge { [-127, 127][(x / 3) % 2] } else { (next() as i8).max(-127) })
                    .collect();
                let za = if edge { -128 } else { (next() % 256) as i32 - 128 };
                let bias: Vec<i32> = (0..n).map(|_| (next() % 20_001) as i32 - 10_000).collect();
                let packed = pack_b_i7(&b, &[0], n, k).expect("in range");
                let mut got = vec![0i32; m * n];
                gemm_tiles_i7(&a, za, &packed, Some(&bias), m, k, n, |i, rows, j, s| {
                    for (r, sr) in s.iter().enumerate().take(rows) {
                        let lanes = |v: v128| {
                            [
                                i32x4_extract_lane::<0>(v),
                                i32x4_extract_lane::<1>(v),
                                i32x4_extract_lane::<2>(v),
                                i32x4_extract_lane::<3>(v),
                            ]
                        };
                        for (c, &v) in lanes(sr[0]).iter().chain(&lanes(sr[1])).enumerate() {
                            if j + c < n {
                                got[(i + r) * n + j + c] = v;
                            }
                        }
                    }
                });
                for i in 0..m {
                    for j in 0..n {
                        let want = (0..k).fold(bias[j], |s, p| s + (a[i * k + p] as i32 - za) * b[j * k + p] as i32);
                        assert_eq!(got[i * n + j], want, "m={m} k={k} n={n} edge={edge} at ({i}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn weights_centred_outside_the_i7_range_are_refused() {
        assert!(pack_b_i7(&[100, -100], &[-28], 1, 2).is_none());
        assert!(pack_b_i7(&[-128, 0], &[0], 1, 2).is_none());
        assert!(pack_b_i7(&[127, -127], &[0], 1, 2).is_some());
    }
}
