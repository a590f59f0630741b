//! The int8 GEMM accumulators of [`super::gemm::gemm_i8_acc`] with WebAssembly SIMD
//! (wasm32 builds with `simd128`, which the shipped module is).
//!
//! `acc[i, j] = bias[j] + sum_p (a[i, p] - za) * (b[j, p] - zb[j])`, A `[M, K]`, B `[N, K]`.
//! Both operands are centred once into i16 rows (values in [-255, 255]) padded with zeros to
//! a multiple of 8, so one `i32x4.dot_i16x8_s` does 8 multiply-adds exactly (a pair of
//! products is at most 2 * 255^2, far inside i32). The micro-kernel holds a 2 x 4 block of
//! outputs in eight i32x4 accumulators: per 8 steps of K it loads 2 A and 4 B vectors for 8
//! dot products. Integer sums are exact in any order (wrapping like the scalar code), so the
//! result is bit-identical to the reference; the browser tests check it through whole
//! networks (the WebGPU path, built on the same reference, gives identical logits).

use core::arch::wasm32::*;

/// `rows` rows of `k` int8 values minus `zero(row)`, as i16 rows of `kp` (zero padded).
fn centred(src: &[i8], rows: usize, k: usize, kp: usize, zero: impl Fn(usize) -> i32) -> Vec<i16> {
    let mut out = vec![0i16; rows * kp];
    for (r, (dst, row)) in out.chunks_exact_mut(kp.max(1)).zip(src.chunks_exact(k.max(1))).enumerate().take(rows) {
        let z = zero(r);
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = (v as i32 - z) as i16;
        }
    }
    out
}

#[inline(always)]
fn load(s: &[i16], at: usize) -> v128 {
    // In bounds: callers index whole padded rows of 8-lane steps.
    let chunk = &s[at..at + 8];
    // SAFETY: `chunk` holds exactly 8 i16 (16 bytes); v128_load has no alignment requirement.
    unsafe { v128_load(chunk.as_ptr() as *const v128) }
}

#[inline(always)]
fn hsum(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        .wrapping_add(i32x4_extract_lane::<1>(v))
        .wrapping_add(i32x4_extract_lane::<2>(v))
        .wrapping_add(i32x4_extract_lane::<3>(v))
}

/// See the module docs; shapes are checked by the caller.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_acc_dot(
    a: &[i8],
    za: i32,
    b: &[i8],
    zb: &[i32],
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<i32> {
    let kp = k.div_ceil(8) * 8;
    let ac = centred(a, m, k, kp, |_| za);
    let bc = centred(b, n, k, kp, |j| if zb.len() == 1 { zb[0] } else { zb[j] });
    let mut acc = vec![0i32; m * n];
    let bias_of = |j: usize| bias.map_or(0, |b| b[j]);
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(2);
        let a0 = i * kp;
        let a1 = (i + rows - 1) * kp; // the same row twice for a last odd row
        let mut j = 0;
        while j + 4 <= n {
            let bj = [j * kp, (j + 1) * kp, (j + 2) * kp, (j + 3) * kp];
            let mut s0 = [i32x4_splat(0); 4];
            let mut s1 = [i32x4_splat(0); 4];
            let mut p = 0;
            while p < kp {
                let x0 = load(&ac, a0 + p);
                let x1 = load(&ac, a1 + p);
                for c in 0..4 {
                    let w = load(&bc, bj[c] + p);
                    s0[c] = i32x4_add(s0[c], i32x4_dot_i16x8(x0, w));
                    s1[c] = i32x4_add(s1[c], i32x4_dot_i16x8(x1, w));
                }
                p += 8;
            }
            for c in 0..4 {
                acc[i * n + j + c] = hsum(s0[c]).wrapping_add(bias_of(j + c));
                if rows == 2 {
                    acc[(i + 1) * n + j + c] = hsum(s1[c]).wrapping_add(bias_of(j + c));
                }
            }
            j += 4;
        }
        while j < n {
            for r in 0..rows {
                let ar = (i + r) * kp;
                let mut s = i32x4_splat(0);
                let mut p = 0;
                while p < kp {
                    s = i32x4_add(s, i32x4_dot_i16x8(load(&ac, ar + p), load(&bc, j * kp + p)));
                    p += 8;
                }
                acc[(i + r) * n + j] = hsum(s).wrapping_add(bias_of(j));
            }
            j += 1;
        }
        i += rows;
    }
    acc
}
