//! The int8 GEMM accumulators of [`super::gemm::gemm_i8_acc`] with aarch64 NEON, for the
//! native CLI on ARM boards and laptops (chosen where [`neon`] is true: every aarch64 CPU
//! has NEON, `EDGETUNE_CPU_KERNELS=portable` keeps the portable loop).
//!
//! `acc[i, j] = bias[j] + sum_p (a[i, p] - za) * (b[j, p] - zb[j])`, A `[M, K]`, B `[N, K]`.
//!
//! The channel-lane design of the other SIMD kernels: lane = output channel, no horizontal
//! sums. Both operands are centred into i16 (values in [-255, 255]). B is packed K-major in
//! blocks of 8 output channels (one int16x8):
//! ```text
//! packed[jb][p] = [b'(8jb, p), b'(8jb + 1, p), .., b'(8jb + 7, p)]   (N padded with zero channels)
//! ```
//! The micro-kernel holds a 4-row x 8-channel block in eight int32x4 accumulators started at
//! the bias; per k: one weight load, then per row `smlal`/`smlal2` by the row's centred value
//! (`vmlal_n_s16`, `vmlal_high_n_s16`: i16 x i16 -> i32, exact). Integer sums are exact in any
//! order (wrapping like the scalar code): bit-identical to the reference (tests below, and
//! every GEMM and convolution test through [`super::gemm`] when run on aarch64, e.g. under
//! `qemu-aarch64` in `npm test`).

use core::arch::aarch64::*;
use std::sync::OnceLock;

use super::gemm::centred_rows;

/// Output channels per packed block (i16 lanes of an int16x8).
const LANES: usize = 8;
/// Rows of the micro-kernel's register block.
const MR: usize = 4;

/// True where the NEON kernels run: `EDGETUNE_CPU_KERNELS` is not `portable` and the CPU has
/// NEON (every aarch64 CPU does; checked anyway). Read once.
pub fn neon() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("EDGETUNE_CPU_KERNELS").ok().as_deref() != Some("portable")
            && std::arch::is_aarch64_feature_detected!("neon")
    })
}

/// B `[N, K]` centred and packed as in the module docs: `ceil(N / 8)` blocks of `K` vectors.
pub fn pack_b(b: &[i8], zb: &[i32], n: usize, k: usize) -> Vec<i16> {
    let mut out = vec![0i16; n.div_ceil(LANES) * LANES * k];
    for (j, row) in b.chunks_exact(k.max(1)).enumerate().take(n) {
        let z = if zb.len() == 1 { zb[0] } else { zb[j] };
        let block = &mut out[(j / LANES) * k * LANES..][..k * LANES];
        for (p, &v) in row.iter().enumerate() {
            block[p * LANES + j % LANES] = (v as i32 - z) as i16;
        }
    }
    out
}

/// The accumulators `[M, N]` on B packed by [`pack_b`] into `out` (every element written).
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
        && packed.len() >= n.div_ceil(LANES) * LANES * k
        && bias.is_none_or(|b| b.len() >= n)
        && out.len() >= m * n;
    if !neon() || !fits {
        // Unreachable through `PackedB`, which packs for this kernel only where it runs and
        // checks the lengths.
        return reference(a, za, packed, bias, m, k, n, out);
    }
    let ac = centred_rows(a, m, k, k, za);
    // SAFETY: NEON is present and the lengths are checked above; every load reads a packed
    // vector or a centred value inside the slices, every store stays inside row i of `out`.
    unsafe { gemm_neon(&ac, packed, bias, m, k, n, out) }
}

/// The same sums from the packed layout, one product at a time (no SIMD).
#[allow(clippy::too_many_arguments)]
fn reference(a: &[i8], za: i32, packed: &[i16], bias: Option<&[i32]>, m: usize, k: usize, n: usize, out: &mut [i32]) {
    for i in 0..m {
        for j in 0..n {
            let block = &packed[(j / LANES) * k * LANES..];
            let s = (0..k).fold(bias.map_or(0, |b| b[j]), |s, p| {
                s.wrapping_add((a[i * k + p] as i32 - za) * block[p * LANES + j % LANES] as i32)
            });
            out[i * n + j] = s;
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn gemm_neon(ac: &[i16], bp: &[i16], bias: Option<&[i32]>, m: usize, k: usize, n: usize, out: &mut [i32]) {
    let np = n.div_ceil(LANES) * LANES;
    let mut bias_p = vec![0i32; np];
    if let Some(b) = bias {
        bias_p[..n].copy_from_slice(&b[..n]);
    }
    let mut j = 0;
    while j < np {
        let init = [vld1q_s32(bias_p.as_ptr().add(j)), vld1q_s32(bias_p.as_ptr().add(j + 4))];
        let block = bp.as_ptr().add((j / LANES) * k * LANES);
        let width = (n - j).min(LANES);
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(MR);
            // Rows past the last one reuse it; their sums are not stored.
            let row: [*const i16; MR] = core::array::from_fn(|r| ac.as_ptr().add((i + r.min(rows - 1)) * k));
            let mut acc = [init; MR];
            for p in 0..k {
                let w = vld1q_s16(block.add(p * LANES));
                for (r, sums) in acc.iter_mut().enumerate() {
                    let av = *row[r].add(p);
                    sums[0] = vmlal_n_s16(sums[0], vget_low_s16(w), av);
                    sums[1] = vmlal_high_n_s16(sums[1], w, av);
                }
            }
            for (r, sums) in acc.iter().enumerate().take(rows) {
                let mut lanes = [0i32; LANES];
                vst1q_s32(lanes.as_mut_ptr(), sums[0]);
                vst1q_s32(lanes.as_mut_ptr().add(4), sums[1]);
                out[(i + r) * n + j..][..width].copy_from_slice(&lanes[..width]);
            }
            i += MR;
        }
        j += LANES;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every aarch64 CPU has NEON, so these tests run the NEON kernels, not their fallbacks
    /// (unless the portable loops are asked for).
    #[test]
    fn neon_kernels_are_chosen() {
        let portable = std::env::var("EDGETUNE_CPU_KERNELS").ok().as_deref() == Some("portable");
        assert_eq!(neon(), !portable);
    }

    /// The NEON kernel against the packed layout read one product at a time and against the
    /// plain centred sums, on every tail (rows not a multiple of 4, channels off the 8-lane
    /// step) and extreme values (centred 255 * 255 products).
    #[test]
    fn neon_gemm_equals_the_plain_sums() {
        let mut seed = 0x2545_f491u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for &m in &[1usize, 3, 4, 5, 9] {
            for &k in &[1usize, 2, 7, 16, 27] {
                for &n in &[1usize, 7, 8, 9, 17] {
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
                        for i in 0..m {
                            for j in 0..n {
                                let want = (0..k).fold(bias[j], |s, p| {
                                    s + (a[i * k + p] as i32 - za) * (b[j * k + p] as i32 - zb[j])
                                });
                                assert_eq!(got[i * n + j], want, "m={m} k={k} n={n} at ({i}, {j})");
                            }
                        }
                    }
                }
            }
        }
    }
}
