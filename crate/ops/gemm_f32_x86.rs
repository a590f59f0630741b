//! The f32 matrix product `C[m, n] = sum_k A[m, k] * B[k, n] (+ bias[n])` with x86-64 AVX2
//! register blocking on B packed once in column panels, for the native CLI's float models
//! and training (chosen where [`super::gemm_x86::avx2`] is true).
//!
//! The reference's arithmetic exactly: each `C[i, j]` starts at +0.0 and adds `A[i, p] * B[p, j]`
//! for p = 0, 1, .. in order, a rounded multiply then a rounded add (`vmulps` then `vaddps`,
//! never an FMA, which would round once), then the bias with one more rounded add, so every
//! element has the bits of the portable loop (`gemm::matmul_f32_kn_rows`, then `+= bias`).
//! Only the loop order around that chain changes.
//!
//! Layout: B is packed as `ceil(N / 16)` panels of 16 columns, each `[K][16]` contiguous
//! (columns past N are zeros, computed and never stored):
//! ```text
//! panels[q * K * 16 + p * 16 + c] = B[p, 16 q + c]
//! ```
//! The micro-kernel holds a 6-row x 16-column block in twelve __m256 accumulators over all of
//! K: per p, 2 panel loads (sequential), 6 broadcasts, 12 `vmulps` + 12 `vaddps` (96
//! multiply-adds). On CPUs with two add and two multiply pipes (AMD Zen) multiply + add
//! reaches the flops of FMA. A last panel of at most 8 columns runs on its first vector only.
//! Rows are walked in blocks of `MC` (A's block stays in L2 while
//! every panel passes over it), panels inside, row groups of 6 innermost.

use core::arch::x86_64::*;

use super::gemm::matmul_f32_panels_scalar as scalar;

/// Columns per packed panel (two __m256): [`super::gemm::pack_f32_panels`]'s layout.
const NR: usize = super::gemm::F32_PANEL;
/// Rows of the register block.
const MR: usize = 6;
/// Bytes of A kept hot while the panels sweep over it.
const A_BLOCK_BYTES: usize = 96 * 1024;

/// `c = clamp(A · B (+ bias))` on B packed by [`super::gemm::pack_f32_panels`] (c is
/// overwritten; `clamp` from [`super::activation::activation_bounds`], applied in the store). Call only where
/// [`super::gemm_x86::avx2`] is true.
#[allow(clippy::too_many_arguments)]
pub fn matmul_f32_panels(
    a: &[f32],
    panels: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    clamp: [f32; 2],
    c: &mut [f32],
) {
    let ok = a.len() >= m * k
        && panels.len() >= n.div_ceil(NR) * k * NR
        && c.len() >= m * n
        && bias.is_none_or(|b| b.len() >= n);
    if !super::gemm_x86::avx2() || !ok {
        // Unreachable through `gemm::PackedF32B`, which checks lengths and the CPU.
        return scalar(a, panels, m, k, n, bias, clamp, c);
    }
    // Bias padded to whole panels, so full-width blocks add it with vector loads.
    let bias_padded: Option<Vec<f32>> = bias.map(|b| {
        let mut v = b[..n].to_vec();
        v.resize(n.div_ceil(NR) * NR, 0.0);
        v
    });
    // SAFETY: AVX2 is present and the lengths are checked above; every load stays inside a
    // row of A (k values), a panel (k * 16 values) or the padded bias, every store inside a
    // row of C (n values).
    unsafe { blocked_avx2(a, panels, m, k, n, bias_padded.as_deref(), clamp, c) }
}

/// The sums of rows `i..i + R` (A rows at `a`, stride k) over the first `V` vectors (8
/// columns each) of one panel, bias added; vectors past `V` stay zero (a tail panel of at
/// most 8 columns computes only its first half).
#[inline(always)]
unsafe fn block<const R: usize, const V: usize>(
    a: *const f32,
    panel: *const f32,
    k: usize,
    bias: *const f32,
) -> [[__m256; 2]; R] {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for p in 0..k {
        let b: [__m256; V] = core::array::from_fn(|h| _mm256_loadu_ps(panel.add(p * NR + 8 * h)));
        for (r, row) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(r * k + p));
            for h in 0..V {
                row[h] = _mm256_add_ps(row[h], _mm256_mul_ps(av, b[h]));
            }
        }
    }
    if !bias.is_null() {
        let c: [__m256; V] = core::array::from_fn(|h| _mm256_loadu_ps(bias.add(8 * h)));
        for row in acc.iter_mut() {
            for h in 0..V {
                row[h] = _mm256_add_ps(row[h], c[h]);
            }
        }
    }
    acc
}

/// Runs [`block`] for rows `i..i + R` on panel `q` and stores its valid columns: all 16
/// where `FULL` (no width test in the loop, and no call to spill registers around), else
/// the first `n - 16 q` through a copy.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block_store<const R: usize, const FULL: bool>(
    a: *const f32,
    panels: *const f32,
    bias: *const f32,
    [lo, hi]: [__m256; 2],
    c: *mut f32,
    i: usize,
    q: usize,
    k: usize,
    n: usize,
) {
    let b = if bias.is_null() { bias } else { bias.add(q * NR) };
    let width = (n - q * NR).min(NR);
    let mut acc = if FULL || width > 8 {
        block::<R, 2>(a.add(i * k), panels.add(q * k * NR), k, b)
    } else {
        block::<R, 1>(a.add(i * k), panels.add(q * k * NR), k, b)
    };
    // max(lo, v) is `lo > v ? lo : v` and min(hi, v) is `hi < v ? hi : v`: NaN and -0.0 in
    // v stay, as in `clamp_to_bounds`.
    for v in acc.iter_mut().flatten() {
        *v = _mm256_min_ps(hi, _mm256_max_ps(lo, *v));
    }
    for (r, row) in acc.iter().enumerate() {
        let dst = c.add((i + r) * n + q * NR);
        if FULL {
            _mm256_storeu_ps(dst, row[0]);
            _mm256_storeu_ps(dst.add(8), row[1]);
        } else {
            store_part(dst, *row, width);
        }
    }
}

/// The first `width` of a block row's 16 columns (a panel past N's end).
#[cold]
#[target_feature(enable = "avx2")]
unsafe fn store_part(dst: *mut f32, row: [__m256; 2], width: usize) {
    let mut tmp = [0f32; NR];
    _mm256_storeu_ps(tmp.as_mut_ptr(), row[0]);
    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), row[1]);
    core::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, width);
}

/// Every row group of rows `i0..end` on panel `q`: blocks of 6, then the remainder.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn panel_rows<const FULL: bool>(
    (ap, pp, bp, cp): (*const f32, *const f32, *const f32, *mut f32),
    cl: [__m256; 2],
    (i0, end): (usize, usize),
    q: usize,
    k: usize,
    n: usize,
) {
    let mut i = i0;
    while i + MR <= end {
        block_store::<MR, FULL>(ap, pp, bp, cl, cp, i, q, k, n);
        i += MR;
    }
    match end - i {
        5 => block_store::<5, FULL>(ap, pp, bp, cl, cp, i, q, k, n),
        4 => block_store::<4, FULL>(ap, pp, bp, cl, cp, i, q, k, n),
        3 => block_store::<3, FULL>(ap, pp, bp, cl, cp, i, q, k, n),
        2 => block_store::<2, FULL>(ap, pp, bp, cl, cp, i, q, k, n),
        1 => block_store::<1, FULL>(ap, pp, bp, cl, cp, i, q, k, n),
        _ => {}
    }
}

#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn blocked_avx2(
    a: &[f32],
    panels: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    clamp: [f32; 2],
    c: &mut [f32],
) {
    let (ap, pp, cp) = (a.as_ptr(), panels.as_ptr(), c.as_mut_ptr());
    let cl = [_mm256_set1_ps(clamp[0]), _mm256_set1_ps(clamp[1])];
    let bp = bias.map_or(core::ptr::null(), <[f32]>::as_ptr);
    let mc = (A_BLOCK_BYTES / (4 * k.max(1)) / MR * MR).max(MR);
    let mut i0 = 0;
    while i0 < m {
        let end = (i0 + mc).min(m);
        for q in 0..n / NR {
            panel_rows::<true>((ap, pp, bp, cp), cl, (i0, end), q, k, n);
        }
        if !n.is_multiple_of(NR) {
            panel_rows::<false>((ap, pp, bp, cp), cl, (i0, end), n / NR, k, n);
        }
        i0 = end;
    }
}

#[cfg(test)]
mod tests {
    use super::super::activation::clamp_to_bounds;
    use super::super::gemm::pack_f32_panels as pack_panels;
    use super::*;

    const NONE: [f32; 2] = [f32::NEG_INFINITY, f32::INFINITY];

    /// Bit-identical to the element-by-element chain (from +0.0, k in order, then the bias)
    /// on every tail shape, with values whose products and sums round, and signed zeros (a
    /// chain of +0.0 + (-0.0) stays +0.0).
    #[test]
    fn panel_f32_product_has_the_bits_of_the_plain_chain() {
        if !super::super::gemm_x86::avx2() {
            eprintln!("no AVX2 on this CPU (or EDGETUNE_CPU_KERNELS=portable): kernel not tested");
            return;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for &m in &[1usize, 3, 5, 6, 7, 13] {
            for &k in &[0usize, 1, 7, 33] {
                for &n in &[1usize, 7, 8, 9, 16, 17, 25, 40] {
                    let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.173_1).collect();
                    let b: Vec<f32> = (0..k * n)
                        .map(|i| if i % 11 == 0 { -0.0 } else { ((i * 11 % 13) as f32 - 6.0) * 0.291_7 })
                        .collect();
                    let bias: Vec<f32> = (0..n).map(|j| (j as f32 - 3.3) * 0.77).collect();
                    let panels = pack_panels(k, n, |p, j| b[p * n + j]);
                    // Relu6's clamp keeps -0.0 (a chain that ends at -0.0 needs k = 0 and a
                    // -0.0 bias: none here, so only +0.0 and clamped values are checked).
                    let clamps = [f32::NEG_INFINITY, f32::INFINITY, 0.0, 6.0, -1.0, 0.5];
                    for (bias, clamp) in [None, Some(&bias[..])]
                        .into_iter()
                        .zip([[clamps[0], clamps[1]]; 2])
                        .chain([(Some(&bias[..]), [clamps[2], clamps[3]]), (None, [clamps[4], clamps[5]])])
                    {
                        let mut got = vec![f32::NAN; m * n];
                        matmul_f32_panels(&a, &panels, m, k, n, bias, clamp, &mut got);
                        let mut want = vec![0f32; m * n];
                        for i in 0..m {
                            for j in 0..n {
                                let mut s = 0.0f32;
                                for p in 0..k {
                                    s += a[i * k + p] * b[p * n + j];
                                }
                                if let Some(bv) = bias {
                                    s += bv[j];
                                }
                                want[i * n + j] = clamp_to_bounds(s, clamp);
                            }
                        }
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "m={m} k={k} n={n} bias={} clamp={clamp:?}",
                            bias.is_some()
                        );
                    }
                }
            }
        }
    }

    /// Row blocks of `MC` rows: a long K makes the block short, every row still exact.
    #[test]
    fn panel_f32_product_is_exact_across_row_blocks() {
        if !super::super::gemm_x86::avx2() {
            return;
        }
        let (m, k, n) = (40, 2000, 20);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.031).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 17) as f32 - 8.0) * 0.047).collect();
        let panels = pack_panels(k, n, |p, j| b[p * n + j]);
        let mut got = vec![0f32; m * n];
        matmul_f32_panels(&a, &panels, m, k, n, None, NONE, &mut got);
        let mut want = vec![0f32; m * n];
        scalar(&a, &panels, m, k, n, None, NONE, &mut want);
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
