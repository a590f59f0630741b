//! The f32 matrix product `C[m, n] = sum_k A[m, k] * B[k, n]` (B as `[K, N]`) with x86-64
//! AVX2 register blocking, for the native CLI's float models and training (chosen where
//! [`super::gemm_x86::avx2`] is true).
//!
//! The reference's arithmetic exactly: each `C[i, j]` starts at +0.0 and adds `A[i, p] * B[p, j]`
//! for p = 0, 1, .. in order, a rounded multiply then a rounded add (`vmulps` then `vaddps`,
//! never an FMA, which would round once), so every element has the bits of the portable loop
//! (`gemm::matmul_f32_kn_rows`). Only the loop order around that chain changes: a block of 4
//! rows x 16 columns lives in eight __m256 accumulators over all of K, so each B row segment
//! is loaded once per 4 rows and each A value broadcast once per 16 columns, instead of
//! reading and writing C for every k. On CPUs with two add and two multiply pipes (AMD Zen)
//! multiply + add reaches the same flops as FMA.
//!
//! Tails: rows past the last block of 4 run one at a time; columns past the last block of 16
//! in one block of 8, then one column at a time; every path keeps the same per-element chain.

use core::arch::x86_64::*;

/// Rows and columns of the register block.
const MR: usize = 4;
const NR: usize = 16;

/// `c = A · B` (c is overwritten). Call only where [`super::gemm_x86::avx2`] is true.
pub fn matmul_f32_kn(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, c: &mut [f32]) {
    if !super::gemm_x86::avx2() || a.len() < m * k || b.len() < k * n || c.len() < m * n {
        // Unreachable through `gemm::matmul_f32`, which checks lengths and the CPU.
        return scalar(a, b, m, k, n, c);
    }
    // SAFETY: AVX2 is present and the lengths are checked above; every load and store below
    // stays inside rows of A (k values), B (n values) and C (n values).
    unsafe { blocked_avx2(a, b, m, k, n, c) }
}

/// One element at a time, in the same order (the tails and the fallback).
fn scalar(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, c: &mut [f32]) {
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = column(a, b, i, j, k, n);
        }
    }
}

#[inline(always)]
fn column(a: &[f32], b: &[f32], i: usize, j: usize, k: usize, n: usize) -> f32 {
    let mut s = 0.0f32;
    for p in 0..k {
        s += a[i * k + p] * b[p * n + j];
    }
    s
}

/// The `R x (W * 8)` block at rows `i..i + R`, columns `j..`: `W` vectors per row.
#[inline(always)]
unsafe fn block<const R: usize, const W: usize>(
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    i: usize,
    j: usize,
    k: usize,
    n: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); W]; R];
    for p in 0..k {
        let bv: [__m256; W] = core::array::from_fn(|w| _mm256_loadu_ps(b.add(p * n + j + 8 * w)));
        for (r, row) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add((i + r) * k + p));
            for (w, v) in row.iter_mut().enumerate() {
                *v = _mm256_add_ps(*v, _mm256_mul_ps(av, bv[w]));
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (w, v) in row.iter().enumerate() {
            _mm256_storeu_ps(c.add((i + r) * n + j + 8 * w), *v);
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn blocked_avx2(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, c: &mut [f32]) {
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let (n16, n8) = (n / NR * NR, n / 8 * 8);
    let mut i = 0;
    while i < m {
        let full = i + MR <= m;
        let mut j = 0;
        while j < n16 {
            if full {
                block::<MR, 2>(ap, bp, cp, i, j, k, n);
            } else {
                for r in i..m {
                    block::<1, 2>(ap, bp, cp, r, j, k, n);
                }
            }
            j += NR;
        }
        if j < n8 {
            if full {
                block::<MR, 1>(ap, bp, cp, i, j, k, n);
            } else {
                for r in i..m {
                    block::<1, 1>(ap, bp, cp, r, j, k, n);
                }
            }
            j += 8;
        }
        for r in i..m.min(i + MR) {
            for col in j..n {
                c[r * n + col] = column(a, b, r, col, k, n);
            }
        }
        i += MR;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-identical to the element-by-element chain on every tail shape, with values whose
    /// products and sums round (and signed zeros: a chain of +0.0 + (-0.0) stays +0.0).
    #[test]
    fn blocked_f32_product_has_the_bits_of_the_plain_chain() {
        if !super::super::gemm_x86::avx2() {
            eprintln!("no AVX2 on this CPU (or EDGETUNE_CPU_KERNELS=portable): kernel not tested");
            return;
        }
        for &m in &[1usize, 3, 4, 5, 9] {
            for &k in &[0usize, 1, 7, 33] {
                for &n in &[1usize, 7, 8, 9, 16, 17, 25, 40] {
                    let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.173_1).collect();
                    let b: Vec<f32> = (0..k * n)
                        .map(|i| if i % 11 == 0 { -0.0 } else { ((i * 11 % 13) as f32 - 6.0) * 0.291_7 })
                        .collect();
                    let mut got = vec![f32::NAN; m * n];
                    matmul_f32_kn(&a, &b, m, k, n, &mut got);
                    let mut want = vec![0f32; m * n];
                    scalar(&a, &b, m, k, n, &mut want);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "m={m} k={k} n={n}");
                }
            }
        }
    }
}
