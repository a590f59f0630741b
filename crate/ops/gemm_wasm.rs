//! The int8 GEMM accumulators of [`super::gemm::gemm_i8_acc`] with WebAssembly SIMD
//! (wasm32 builds with `simd128`, which the shipped module is).
//!
//! `acc[i, j] = bias[j] + sum_p (a[i, p] - za) * (b[j, p] - zb[j])`, A `[M, K]`, B `[N, K]`.
//!
//! Both operands are centred into i16 (values in [-255, 255]) and K is padded with zeros to
//! an even length KP. B is packed in blocks of 4 output channels, pair-interleaved:
//! ```text
//! packed[jb][q] = [b'(4jb, 2q), b'(4jb, 2q+1), b'(4jb+1, 2q), b'(4jb+1, 2q+1), .., b'(4jb+3, 2q+1)]
//! ```
//! (8 i16, one v128; N padded to a multiple of 8 with zero channels). One pair of A values
//! `(a'(i, 2q), a'(i, 2q+1))` loaded as an i32 and splat to four lanes, times a packed
//! vector under `i32x4.dot_i16x8_s`, adds 2 products to each of 4 output channels, lane =
//! channel. So accumulators are output vectors: no horizontal sums, and small K (24 or 40
//! input channels, common in MobileNets) costs no per-output overhead.
//!
//! The micro-kernel holds a 4-row x 8-channel block in eight i32x4 accumulators started at
//! the bias; per pair of K it does 2 weight loads and 4 splat loads for 8 dot products (64
//! multiply-adds). A pair of products is at most 2 * 255^2, far inside i32, and integer sums
//! are exact in any order (wrapping like the scalar code), so the result is bit-identical to
//! the reference; `npm test` runs the comparison on many shapes in wasm under Node
//! (`cargo test --lib --target wasm32-wasip1`), and the browser tests compare whole networks.

use core::arch::wasm32::*;

use super::gemm::centred_rows;

/// Output channels per packed block (i32x4 lanes).
const LANES: usize = 4;
/// Rows and channels of the micro-kernel's register block.
const MR: usize = 4;
const NR: usize = 8;

/// B packed for one of the two tile loops: the i16 pairs of this module, or (modules built
/// with relaxed SIMD, weights that fit) the i7 split of [`super::gemm_wasm_relaxed`].
#[derive(Clone, Debug)]
pub enum Packed {
    I16(Vec<i16>),
    #[cfg(target_feature = "relaxed-simd")]
    I7(super::gemm_wasm_relaxed::PackedI7),
}

/// B `[N, K]` packed for the fastest tile loop this module has. Made once per weight tensor
/// ([`super::gemm::PackedB`]).
pub fn pack_b(b: &[i8], zb: &[i32], n: usize, k: usize) -> Packed {
    #[cfg(target_feature = "relaxed-simd")]
    if let Some(p) = super::gemm_wasm_relaxed::pack_b_i7(b, zb, n, k) {
        return Packed::I7(p);
    }
    Packed::I16(pack_b_i16(b, zb, n, k))
}

/// B `[N, K]` centred and packed as in the module docs: `ceil(N / 8) * 2` blocks of
/// `ceil(K / 2)` vectors.
fn pack_b_i16(b: &[i8], zb: &[i32], n: usize, k: usize) -> Vec<i16> {
    super::gemm::pack_b_pairs(b, zb, n, k, LANES, NR)
}

/// The tile loop: for every block of up to 4 rows `i..i + rows` and 8 channels `j..j + 8`,
/// computes the sums (bias included) and hands them to `emit(i, rows, j, sums)`, `sums[r]`
/// holding channels `j..j + 4` and `j + 4..j + 8` of row `i + r`; lanes past `n` belong to
/// the zero padding channels and must not be stored.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm_tiles(
    a: &[i8],
    za: i32,
    packed: &Packed,
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
    emit: impl FnMut(usize, usize, usize, &[[v128; 2]; MR]),
) {
    match packed {
        Packed::I16(p) => gemm_tiles_i16(a, za, p, bias, m, k, n, emit),
        #[cfg(target_feature = "relaxed-simd")]
        Packed::I7(p) => super::gemm_wasm_relaxed::gemm_tiles_i7(a, za, p, bias, m, k, n, emit),
    }
}

/// [`gemm_tiles`] on the i16 pairs.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm_tiles_i16(
    a: &[i8],
    za: i32,
    packed: &[i16],
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
    mut emit: impl FnMut(usize, usize, usize, &[[v128; 2]; MR]),
) {
    let kp = k.div_ceil(2) * 2;
    let np = n.div_ceil(NR) * NR;
    let ac = centred_rows(a, m, k, kp, za);
    let bp = packed;
    let mut bias_p = vec![0i32; np];
    if let Some(bias) = bias {
        bias_p[..n].copy_from_slice(&bias[..n]);
    }
    let pairs = kp / 2;
    let block_len = pairs * 2 * LANES;
    // Every pointer below stays inside these lengths: rows i + r < m of kp values in `ac`,
    // blocks j / 4 + 1 < np / 4 of block_len values in `bp` (j + 8 <= np).
    assert!(ac.len() >= m * kp && bp.len() >= np * kp && bias_p.len() >= np);
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(MR);
        // Row starts; a short last block repeats its last row (computed, not stored).
        let row_at = |r: usize| (i + r.min(rows - 1)) * kp;
        let ar: [usize; MR] = core::array::from_fn(row_at);
        let mut j = 0;
        while j < n {
            let bias0 = load_i32x4(&bias_p[j..j + LANES]);
            let bias1 = load_i32x4(&bias_p[j + LANES..j + 2 * LANES]);
            let mut s = [[bias0, bias1]; MR];
            // SAFETY: see the assert above; all loads are unaligned-safe wasm loads.
            unsafe {
                let b0 = bp.as_ptr().add((j / LANES) * block_len);
                let b1 = b0.add(block_len);
                let a = ac.as_ptr();
                let pa: [*const i16; MR] = core::array::from_fn(|r| a.add(ar[r]));
                for q in 0..pairs {
                    let w0 = v128_load(b0.add(q * 8) as *const v128);
                    let w1 = v128_load(b1.add(q * 8) as *const v128);
                    for (sr, &pr) in s.iter_mut().zip(&pa) {
                        let x = v128_load32_splat(pr.add(2 * q) as *const u32);
                        sr[0] = i32x4_add(sr[0], i32x4_dot_i16x8(x, w0));
                        sr[1] = i32x4_add(sr[1], i32x4_dot_i16x8(x, w1));
                    }
                }
            }
            emit(i, rows, j, &s);
            j += NR;
        }
        i += rows;
    }
}

/// See the module docs; `packed` comes from [`pack_b`] with the same `n` and `k`, shapes are
/// checked by the caller.
pub fn gemm_i8_acc_packed(
    a: &[i8],
    za: i32,
    packed: &Packed,
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<i32> {
    let mut acc = vec![0i32; m * n];
    gemm_tiles(a, za, packed, bias, m, k, n, |i, rows, j, s| {
        for (r, sr) in s.iter().enumerate().take(rows) {
            let out = &mut acc[(i + r) * n..(i + r + 1) * n];
            store_lanes(out, j, sr[0]);
            store_lanes(out, j + LANES, sr[1]);
        }
    });
    acc
}

/// The GEMM with requantization fused into its store ([`super::requant_wasm::Requant4`], in
/// either arithmetic, bit-identical to [`crate::quant::Requant::apply`]): each tile becomes
/// int8 in registers, so the i32 sums never reach memory.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_i8_requant_packed<R: super::requant_wasm::Requant4 + Sync>(
    a: &[i8],
    za: i32,
    packed: &Packed,
    bias: Option<&[i32]>,
    rq: &R,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<i8> {
    let mut out = vec![0i8; m * n];
    if n == 0 {
        return out;
    }
    // Row blocks split over the pool's threads (one block when single-threaded), each task
    // writing its own rows of the output.
    let threads = crate::base::pool::threads();
    let per_task = if threads <= 1 { m } else { m.div_ceil(threads * 2).div_ceil(MR) * MR }.max(1);
    crate::base::pool::parallel_chunks_mut(&mut out, per_task * n, &|t, part| {
        let (i0, rows) = (t * per_task, part.len() / n);
        gemm_requant_rows(&a[i0 * k..(i0 + rows) * k], za, packed, bias, rq, rows, k, n, part);
    });
    out
}

/// [`gemm_i8_requant_packed`] for `m` rows of A into `out` (`m * n`).
#[allow(clippy::too_many_arguments)]
fn gemm_requant_rows<R: super::requant_wasm::Requant4>(
    a: &[i8],
    za: i32,
    packed: &Packed,
    bias: Option<&[i32]>,
    rq: &R,
    m: usize,
    k: usize,
    n: usize,
    out: &mut [i8],
) {
    gemm_tiles(a, za, packed, bias, m, k, n, |i, rows, j, s| {
        for (r, sr) in s.iter().enumerate().take(rows) {
            let q0 = rq.apply4(sr[0], j);
            let q1 = rq.apply4(sr[1], j + LANES);
            // Channels j..j + 8 in the low 8 bytes (the narrows saturate nothing: q is in range).
            let q16 = i16x8_narrow_i32x4(q0, q1);
            let q = i8x16_narrow_i16x8(q16, q16);
            let row = &mut out[(i + r) * n..(i + r + 1) * n];
            if j + NR <= n {
                let dst = &mut row[j..j + NR];
                // SAFETY: `dst` holds exactly 8 bytes, what the 64-bit lane store writes.
                unsafe { v128_store64_lane::<0>(q, dst.as_mut_ptr() as *mut u64) };
            } else {
                let mut bytes = [0i8; 16];
                // SAFETY: `bytes` holds 16 bytes.
                unsafe { v128_store(bytes.as_mut_ptr() as *mut v128, q) };
                row[j..].copy_from_slice(&bytes[..n - j]);
            }
        }
    });
}

#[inline(always)]
fn load_i32x4(s: &[i32]) -> v128 {
    assert!(s.len() >= 4);
    // SAFETY: `s` holds at least 4 i32 (16 bytes).
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

/// Stores lanes of `v` to `out[j..j + 4]`, as many as fit (the padded channels are dropped).
#[inline(always)]
fn store_lanes(out: &mut [i32], j: usize, v: v128) {
    if j + LANES <= out.len() {
        let dst = &mut out[j..j + LANES];
        // SAFETY: `dst` holds exactly 4 i32 (16 bytes); v128_store has no alignment requirement.
        unsafe { v128_store(dst.as_mut_ptr() as *mut v128, v) }
    } else if j < out.len() {
        let lanes = [
            i32x4_extract_lane::<0>(v),
            i32x4_extract_lane::<1>(v),
            i32x4_extract_lane::<2>(v),
            i32x4_extract_lane::<3>(v),
        ];
        let rest = out.len() - j;
        out[j..].copy_from_slice(&lanes[..rest]);
    }
}

/// [`super::gemm::dot_i8_f32`]: lanes 0-3 and 4-7 of the eight running sums are two f32x4
/// vectors; their lane-wise sum is `(s0 + s4, s1 + s5, s2 + s6, s3 + s7)`, added as
/// `(v0 + v1) + (v2 + v3)`, then the tail in order: the documented order, so the bits equal
/// the portable code's.
pub fn dot_i8_f32(w: &[i8], z: i32, x: &[f32]) -> f32 {
    let k = w.len().min(x.len());
    let full = k / 8 * 8;
    let z4 = i32x4_splat(z);
    let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let mut p = 0;
    while p < full {
        let (wc, xc) = (&w[p..p + 8], &x[p..p + 8]);
        // SAFETY: `wc` holds 8 bytes and `xc` 8 f32 (32 bytes); unaligned-safe wasm loads.
        let (wv, x0, x1) = unsafe {
            (
                i16x8_load_extend_i8x8(wc.as_ptr()),
                v128_load(xc.as_ptr() as *const v128),
                v128_load(xc.as_ptr().add(4) as *const v128),
            )
        };
        // w - z in i32, exact for any zero point, as the portable code computes it.
        let c0 = f32x4_convert_i32x4(i32x4_sub(i32x4_extend_low_i16x8(wv), z4));
        let c1 = f32x4_convert_i32x4(i32x4_sub(i32x4_extend_high_i16x8(wv), z4));
        lo = f32x4_add(lo, f32x4_mul(c0, x0));
        hi = f32x4_add(hi, f32x4_mul(c1, x1));
        p += 8;
    }
    let v = f32x4_add(lo, hi);
    let mut sum = (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v));
    for (&wv, &xv) in w[full..k].iter().zip(&x[full..k]) {
        sum += (wv as i32 - z) as f32 * xv;
    }
    sum
}

/// The arithmetic ceiling of the micro-kernel's instruction mix, for the benchmarks: `iters`
/// rounds of twelve independent `i32x4.dot_i16x8_s` + `i32x4.add` chains (96 multiply-adds
/// per round, no memory traffic). Twelve chains hide the dot product's latency (eight left
/// the loop latency-bound); each chain feeds its result back as the next operand, so nothing
/// can be hoisted or folded. Returns a value derived from every chain.
#[cfg_attr(target_feature = "relaxed-simd", allow(dead_code))]
pub fn dot_add_peak(iters: u32, seed: i32) -> i32 {
    let w = i32x4_splat(seed | 0x0001_0001);
    let mut a = [0; PEAK_CHAINS].map(|_| i32x4_splat(seed));
    for (k, v) in a.iter_mut().enumerate() {
        *v = i32x4_add(*v, i32x4_splat(k as i32));
    }
    for _ in 0..iters {
        for v in a.iter_mut() {
            *v = i32x4_add(i32x4_dot_i16x8(*v, w), w);
        }
    }
    a.iter().fold(0, |s, &v| s ^ i32x4_extract_lane::<0>(v) ^ i32x4_extract_lane::<3>(v))
}

/// Independent chains in [`dot_add_peak`].
pub const PEAK_CHAINS: usize = 12;

/// f32 `C[m, n] = A[m, k] · B[k, n]` (B row-major `[K, N]`), the form
/// [`super::gemm::matmul_f32`] uses for every many-row product. Each output is summed exactly
/// as the scalar loop does, `c = ((0 + a0*b0) + a1*b1) + ...` in order of k with separately
/// rounded multiplies and adds (wasm has no fused multiply-add in SIMD128), so the bits are
/// the reference's; only the loop nest differs: a 4-row x 8-column block stays in eight f32x4
/// registers over all of k (one A value splat per row, two B vectors per k), where the axpy
/// form loads and stores its output row at every k.
pub fn matmul_f32_kn(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    let n8 = n / NR * NR;
    // Every pointer below stays inside these lengths: rows < m of k values in `a`, columns
    // j + 8 <= n8 <= n of rows p < k in `b`.
    assert!(a.len() >= m * k && b.len() >= k * n);
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(MR);
        let ar: [usize; MR] = core::array::from_fn(|r| (i + r.min(rows - 1)) * k);
        let mut j = 0;
        while j < n8 {
            let mut s = [[f32x4_splat(0.0); 2]; MR];
            // SAFETY: see the assert above; unaligned-safe wasm loads.
            unsafe {
                let (ap, bp) = (a.as_ptr(), b.as_ptr().add(j));
                for p in 0..k {
                    let w0 = v128_load(bp.add(p * n) as *const v128);
                    let w1 = v128_load(bp.add(p * n + 4) as *const v128);
                    for (sr, &at) in s.iter_mut().zip(&ar) {
                        let x = v128_load32_splat(ap.add(at + p) as *const u32);
                        sr[0] = f32x4_add(sr[0], f32x4_mul(x, w0));
                        sr[1] = f32x4_add(sr[1], f32x4_mul(x, w1));
                    }
                }
            }
            for (r, sr) in s.iter().enumerate().take(rows) {
                let dst = &mut c[(i + r) * n + j..(i + r) * n + j + NR];
                // SAFETY: `dst` holds exactly 8 f32 (32 bytes): two unaligned 16-byte stores.
                unsafe {
                    v128_store(dst.as_mut_ptr() as *mut v128, sr[0]);
                    v128_store(dst.as_mut_ptr().add(4) as *mut v128, sr[1]);
                }
            }
            j += NR;
        }
        // Columns past the last full block, scalar in the same order.
        for r in 0..rows {
            for jj in n8..n {
                let mut s = 0f32;
                for p in 0..k {
                    s += a[(i + r) * k + p] * b[p * n + jj];
                }
                c[(i + r) * n + jj] = s;
            }
        }
        i += rows;
    }
    c
}
