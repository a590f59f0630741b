//! The f32 matrix product `C[m, n] = sum_k A[m, k] * B[k, n] (+ bias[n])` with aarch64 NEON
//! on B packed once in 16-column panels ([`super::gemm::pack_f32_panels`]), for the native
//! CLI's float models and training on ARM.
//!
//! The reference's arithmetic exactly: each `C[i, j]` starts at +0.0 and adds `A[i, p] * B[p, j]`
//! for p = 0, 1, .. in order as a rounded multiply then a rounded add (`fmul` then `fadd`,
//! written as separate intrinsics: never `fmla`, which rounds once), then the bias, so every
//! element has the bits of the portable loop. The micro-kernel holds a 4-row x 16-column
//! block in sixteen float32x4 accumulators over all of K.

use core::arch::aarch64::*;

use super::activation::clamp_to_bounds;
use super::gemm::matmul_f32_panels_scalar as scalar;

/// Columns per packed panel (four float32x4).
const NR: usize = super::gemm::F32_PANEL;
/// Rows of the register block.
const MR: usize = 4;

/// `c = clamp(A · B (+ bias))` on B packed by [`super::gemm::pack_f32_panels`] (c is
/// overwritten; `clamp` from [`super::activation::activation_bounds`], applied after the block
/// stores: NEON's `fmax` would turn -0.0 into +0.0).
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
    if !super::gemm_neon::neon() || !ok {
        // Unreachable through `gemm::PackedF32B`, which checks lengths and the CPU.
        return scalar(a, panels, m, k, n, bias, clamp, c);
    }
    let mut bias_p = vec![0f32; n.div_ceil(NR) * NR];
    if let Some(b) = bias {
        bias_p[..n].copy_from_slice(&b[..n]);
    }
    // SAFETY: NEON is present and the lengths are checked above; loads stay inside a row of
    // A, a panel or the padded bias, stores inside a row of C.
    unsafe { panels_neon(a, panels, m, k, n, bias.map(|_| bias_p.as_slice()), c) };
    if clamp != [f32::NEG_INFINITY, f32::INFINITY] {
        c[..m * n].iter_mut().for_each(|v| *v = clamp_to_bounds(*v, clamp));
    }
}

#[target_feature(enable = "neon")]
unsafe fn panels_neon(a: &[f32], panels: &[f32], m: usize, k: usize, n: usize, bias: Option<&[f32]>, c: &mut [f32]) {
    for q in 0..n.div_ceil(NR) {
        let panel = panels.as_ptr().add(q * k * NR);
        let width = (n - q * NR).min(NR);
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(MR);
            let row: [*const f32; MR] = core::array::from_fn(|r| a.as_ptr().add((i + r.min(rows - 1)) * k));
            let mut acc = [[vdupq_n_f32(0.0); 4]; MR];
            for p in 0..k {
                let b: [float32x4_t; 4] = core::array::from_fn(|v| vld1q_f32(panel.add(p * NR + 4 * v)));
                for (r, sums) in acc.iter_mut().enumerate() {
                    let av = vdupq_n_f32(*row[r].add(p));
                    for (s, bv) in sums.iter_mut().zip(b) {
                        *s = vaddq_f32(*s, vmulq_f32(av, bv));
                    }
                }
            }
            for (r, sums) in acc.iter().enumerate().take(rows) {
                let mut lanes = [0f32; NR];
                for (v, s) in sums.iter().enumerate() {
                    let s = match bias {
                        Some(b) => vaddq_f32(*s, vld1q_f32(b.as_ptr().add(q * NR + 4 * v))),
                        None => *s,
                    };
                    vst1q_f32(lanes.as_mut_ptr().add(4 * v), s);
                }
                c[(i + r) * n + q * NR..][..width].copy_from_slice(&lanes[..width]);
            }
            i += MR;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm::pack_f32_panels;
    use super::*;

    /// Bit-identical to the element-by-element chain (from +0.0, k in order, then the bias)
    /// on every tail shape, with values whose products and sums round, and signed zeros.
    #[test]
    fn neon_panel_f32_product_has_the_bits_of_the_plain_chain() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for &m in &[1usize, 3, 4, 5, 9] {
            for &k in &[0usize, 1, 7, 33] {
                for &n in &[1usize, 7, 16, 17, 40] {
                    let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.173_1).collect();
                    let b: Vec<f32> = (0..k * n)
                        .map(|i| if i % 11 == 0 { -0.0 } else { ((i * 11 % 13) as f32 - 6.0) * 0.291_7 })
                        .collect();
                    let bias: Vec<f32> = (0..n).map(|j| (j as f32 - 3.3) * 0.77).collect();
                    let panels = pack_f32_panels(k, n, |p, j| b[p * n + j]);
                    let none = [f32::NEG_INFINITY, f32::INFINITY];
                    for (bias, clamp) in [(None, none), (Some(&bias[..]), none), (Some(&bias[..]), [0.0, 6.0])] {
                        let mut got = vec![f32::NAN; m * n];
                        matmul_f32_panels(&a, &panels, m, k, n, bias, clamp, &mut got);
                        let mut want = vec![0f32; m * n];
                        scalar(&a, &panels, m, k, n, bias, clamp, &mut want);
                        assert_eq!(bits(&got), bits(&want), "m={m} k={k} n={n} bias={} {clamp:?}", bias.is_some());
                    }
                }
            }
        }
    }
}
