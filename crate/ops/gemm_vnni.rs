//! The int8 GEMM of [`super::gemm::gemm_i8_acc`] with AVX-512 VNNI (`vpdpbusd`), for the native
//! CLI on CPUs that have it (Intel Xeon since Cascade Lake, Ice Lake and later cores, AMD Zen 4
//! and later). Chosen at run time over the AVX2 kernel ([`vnni`]), unless
//! `EDGETUNE_CPU_KERNELS` is `avx2` (the AVX2 kernel, for testing it on such a CPU) or
//! `portable`.
//!
//! `acc[i, j] = bias[j] + sum_p (a[i, p] - za) * (b[j, p] - zb[j])`, A `[M, K]`, B `[N, K]`.
//!
//! `vpdpbusd` multiplies unsigned bytes by signed bytes, four per i32 lane, and adds the four
//! products to the lane without saturation. A is made unsigned by adding 128 (`u = a ^ 0x80`),
//! B stays as stored, and the zero points and the 128 come back through sums made once:
//! ```text
//! sum_p (a - za)(b - zb) = dot(u, b) - (128 + za) colsum(b) - zb rowsum(a) + K za zb
//! ```
//! Every step wraps in i32 as the reference's sums do, and the identity holds modulo 2^32, so
//! the result is bit-identical to the reference. The start value of each channel,
//! `init[j] = bias[j] - (128 + za) colsum(b_j) + K za zb[j]`, is made once per call; the
//! `zb rowsum(a)` term only where some zb is non-zero (weights quantized asymmetrically), per
//! row in the epilogue.
//!
//! B is packed in panels of 16 output channels (one __m512i of i32 lanes), the channels of each
//! panel in the AVX2 output stage's lane order (`requant_x86`), K in quads:
//! ```text
//! panel[q] = 64 bytes, lane l: [b(ch(l), 4q), b(ch(l), 4q + 1), b(ch(l), 4q + 2), b(ch(l), 4q + 3)]
//! ```
//! (K padded to a multiple of 4 and N to 16 with zeros), so that the low and high 256-bit
//! halves of a panel's sums are exactly the two vectors the AVX2 output stage ([`BlockSink`])
//! takes: the same requantization, the same bits, for the fused path too.
//!
//! The micro-kernel holds 8 rows x 32 channels (two panels) in sixteen accumulators; per quad
//! of K: 2 weight loads, 8 broadcasts of a row's 4 bytes, 16 `vpdpbusd` (1024 multiply-adds).
//! Panel pairs are the outer loop and row blocks the inner one, as in `gemm_x86`.
//!
//! This machine's CPU (the one the project is developed on) has no AVX-512: the kernel is
//! tested bit for bit under Miri (`npm test`), which executes these intrinsics, and natively by
//! the same tests wherever the CPU has VNNI.

use core::arch::x86_64::*;
use std::sync::OnceLock;

use super::requant_x86::{BlockSink, RequantOut, SumsOut};

/// Output channels per panel (i32 lanes of a __m512i).
const LANES: usize = 16;
/// Rows of the micro-kernel's register block.
const MR: usize = 8;
/// Bytes of K per `vpdpbusd` lane.
const QUAD: usize = 4;

/// True where the VNNI kernel runs: the CPU has AVX-512F, AVX-512 VNNI and AVX2, and
/// `EDGETUNE_CPU_KERNELS` is neither `avx2` nor `portable` (read once).
pub fn vnni() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(std::env::var("EDGETUNE_CPU_KERNELS").ok().as_deref(), Some("avx2" | "portable"))
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// B packed for the kernel (module docs), with the per-channel sums the identity needs. Made
/// once per weight tensor ([`super::gemm::PackedB`]).
#[derive(Clone, Debug)]
pub struct Packed {
    /// `ceil(N / 16)` panels of `KQ / 4` quads of 64 bytes (`KQ`: K rounded up to 4).
    bytes: Vec<i8>,
    /// Per packed position (lane order, whole panels): `sum_p b[ch, p]`, zero past N.
    col_sums: Vec<i32>,
    /// Per packed position: the channel's zero point, zero past N.
    zb: Vec<i32>,
    /// Some zero point of B is not zero: the row sums of A are needed.
    any_zb: bool,
}

/// B `[N, K]` packed as in the module docs.
pub fn pack_b(b: &[i8], zb: &[i32], n: usize, k: usize) -> Packed {
    let (np, kq) = (n.div_ceil(LANES) * LANES, k.div_ceil(QUAD) * QUAD);
    let mut bytes = vec![0i8; np * kq];
    let (mut col_sums, mut zbs) = (vec![0i32; np], vec![0i32; np]);
    for p in 0..np {
        let j = super::gemm_x86::channel_at(p);
        let Some(row) = b.get(j * k..(j + 1) * k).filter(|_| j < n) else { continue };
        let (panel, lane) = (p / LANES, p % LANES);
        let dst = &mut bytes[panel * LANES * kq..][..LANES * kq];
        for (idx, &v) in row.iter().enumerate() {
            dst[(idx / QUAD) * LANES * QUAD + lane * QUAD + idx % QUAD] = v;
        }
        col_sums[p] = row.iter().map(|&v| v as i32).sum();
        zbs[p] = super::gemm::zp_at(zb, j);
    }
    let any_zb = zbs.iter().any(|&z| z != 0);
    Packed { bytes, col_sums, zb: zbs, any_zb }
}

/// The accumulators `[M, N]` on B packed by [`pack_b`] into `out` (every element written).
/// Call only where [`vnni`] is true.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_acc_packed(
    a: &[i8],
    za: i32,
    packed: &Packed,
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
    out: &mut [i32],
) {
    let lane_bias = super::gemm_x86::lane_bias(bias, n);
    let fits = fits(a, packed, &lane_bias, m, k, n) && out.len() >= m * n;
    if !vnni() || !fits {
        // Unreachable through `PackedB`, which packs for this kernel only where it runs and
        // checks the lengths.
        let r = reference(a, za, packed, bias, m, k, n);
        out.iter_mut().zip(r).for_each(|(o, v)| *o = v);
        return;
    }
    // SAFETY: AVX2, AVX-512F and VNNI are present and the lengths are checked above; every
    // load and store below stays inside the slices.
    unsafe { gemm_vnni(a, za, packed, &lane_bias, (m, k, n), SumsOut(out.as_mut_ptr())) }
}

/// The int8 output `[M, N]` with the engine's float requantization fused into the store, as
/// [`super::gemm_x86::gemm_i8_requant_packed`] takes it (`lane_bias`, `lane_mults` in lane
/// order, whole blocks of 16): the bits of [`gemm_i8_acc_packed`] then
/// `requant_x86::requantize_rows`. Call only where [`vnni`] is true.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_requant_packed(
    a: &[i8],
    za: i32,
    packed: &Packed,
    lane_bias: &[i32],
    (m, k, n): (usize, usize, usize),
    lane_mults: &[f32],
    (zp, lo, hi): (i32, i32, i32),
    out: &mut [i8],
) {
    let np = n.div_ceil(LANES) * LANES;
    let fits = fits(a, packed, lane_bias, m, k, n) && lane_mults.len() >= np && out.len() >= m * n;
    if !vnni() || !fits {
        // Unreachable through `gemm::gemm_i8_requant_packed`, which checks the lengths and
        // calls this only where VNNI runs.
        let bias = super::requant_x86::channel_order(lane_bias, n);
        let acc = reference(a, za, packed, Some(&bias), m, k, n);
        return super::requant_x86::requantize_rows_scalar(&acc, n, lane_mults, (zp, lo, hi), out);
    }
    // SAFETY: as in `gemm_i8_acc_packed`; the multipliers cover every panel (checked above).
    unsafe {
        let sink = RequantOut::new(out.as_mut_ptr(), lane_mults.as_ptr(), zp, lo, hi);
        gemm_vnni(a, za, packed, lane_bias, (m, k, n), sink)
    }
}

/// Whether the slices hold what an `[M, K] x [K, N]` call reads.
fn fits(a: &[i8], packed: &Packed, lane_bias: &[i32], m: usize, k: usize, n: usize) -> bool {
    let np = n.div_ceil(LANES) * LANES;
    a.len() >= m * k
        && packed.bytes.len() >= np * k.div_ceil(QUAD) * QUAD
        && packed.col_sums.len() >= np
        && packed.zb.len() >= np
        && lane_bias.len() >= np
}

/// The same sums from the packed bytes, one product at a time, centred as the spec is (no
/// identity, no SIMD).
fn reference(a: &[i8], za: i32, packed: &Packed, bias: Option<&[i32]>, m: usize, k: usize, n: usize) -> Vec<i32> {
    let kq = k.div_ceil(QUAD) * QUAD;
    let mut out = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let at = super::gemm_x86::channel_at(j);
            let (panel, lane) = (at / LANES, at % LANES);
            let zb = packed.zb.get(at).copied().unwrap_or(0);
            let mut s = bias.map_or(0, |b| b[j]);
            for p in 0..k {
                let w = packed.bytes.get(panel * LANES * kq + (p / QUAD) * LANES * QUAD + lane * QUAD + p % QUAD);
                let w = w.copied().unwrap_or(0) as i32;
                s = s.wrapping_add((a[i * k + p] as i32 - za).wrapping_mul(w - zb));
            }
            out[i * n + j] = s;
        }
    }
    out
}

/// The kernel: A made unsigned (and summed per row where B has zero points), the per-channel
/// start values, then panel pairs over row blocks, each finished block handed to `sink`.
#[target_feature(enable = "avx2,avx512f,avx512vnni")]
unsafe fn gemm_vnni<S: BlockSink>(
    a: &[i8],
    za: i32,
    packed: &Packed,
    lane_bias: &[i32],
    (m, k, n): (usize, usize, usize),
    mut sink: S,
) {
    let (np, kq) = (n.div_ceil(LANES) * LANES, k.div_ceil(QUAD) * QUAD);
    // init = bias - (128 + za) colsum + K za zb, wrapping like the reference.
    let init: Vec<i32> = (0..np)
        .map(|p| {
            lane_bias[p]
                .wrapping_sub((128 + za).wrapping_mul(packed.col_sums[p]))
                .wrapping_add((k as i32).wrapping_mul(za).wrapping_mul(packed.zb[p]))
        })
        .collect();
    let row_sums: Vec<i32> = if packed.any_zb {
        // One per row, also where K is 0 (a sum of nothing).
        (0..m).map(|i| a[i * k..(i + 1) * k].iter().map(|&v| v as i32).sum()).collect()
    } else {
        Vec::new()
    };
    super::scratch::with_u8(m * kq, |au| {
        unsigned_rows_into(&a[..m * k], m, k, kq, au);
        // A target-feature function, not this closure, runs the kernel: a closure does not
        // inherit `target_feature`, and the intrinsics inlined into it would become calls.
        let job = Job { au: au.as_ptr(), row_sums: &row_sums, m, kq, n };
        gemm_vnni_unsigned(&job, packed, &init, &mut sink)
    })
}

/// Panel pairs over row blocks (the last panel alone where one remains).
#[target_feature(enable = "avx2,avx512f,avx512vnni")]
unsafe fn gemm_vnni_unsigned<S: BlockSink>(job: &Job<'_>, packed: &Packed, init: &[i32], sink: &mut S) {
    let np = job.n.div_ceil(LANES) * LANES;
    let mut j = 0;
    while j < np {
        if np - j >= 2 * LANES {
            job.panels::<S, 2>(packed, init, j, sink);
            j += 2 * LANES;
        } else {
            job.panels::<S, 1>(packed, init, j, sink);
            j += LANES;
        }
    }
}

/// `dst` = A's rows plus 128 as bytes (`a ^ 0x80`), rows of `kq` with zero padding.
#[target_feature(enable = "avx2")]
unsafe fn unsigned_rows_into(a: &[i8], m: usize, k: usize, kq: usize, dst: &mut [u8]) {
    let dst = &mut dst[..m * kq];
    if kq == k {
        // No padding: one flat run.
        return unsigned_run(a, dst);
    }
    for (d, row) in dst.chunks_exact_mut(kq.max(1)).zip(a.chunks_exact(k.max(1))) {
        unsigned_run(row, &mut d[..k]);
        d[k..].fill(0);
    }
}

/// `dst[i] = src[i] + 128` as a byte, for equal lengths, 32 at a time (`vpxor` with 0x80).
#[target_feature(enable = "avx2")]
unsafe fn unsigned_run(src: &[i8], dst: &mut [u8]) {
    let len = src.len().min(dst.len());
    let flip = _mm256_set1_epi8(-128);
    let mut i = 0;
    while i + 32 <= len {
        // SAFETY (caller: AVX2): 32 bytes read and written, inside both slices.
        let x = _mm256_loadu_si256(src.as_ptr().add(i) as *const __m256i);
        _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, _mm256_xor_si256(x, flip));
        i += 32;
    }
    for (o, &v) in dst[i..len].iter_mut().zip(&src[i..len]) {
        *o = (v as u8) ^ 0x80;
    }
}

/// One call's unsigned A `[M, KQ]`, row sums (empty where B has no zero points) and shape.
struct Job<'a> {
    au: *const u8,
    row_sums: &'a [i32],
    m: usize,
    kq: usize,
    n: usize,
}

impl Job<'_> {
    /// Every row of A against the `V` panels from channel `j`, stored through `sink`.
    #[inline(always)]
    unsafe fn panels<S: BlockSink, const V: usize>(&self, packed: &Packed, init: &[i32], j: usize, sink: &mut S) {
        let panel_len = LANES * self.kq;
        let mut b = [core::ptr::null::<i8>(); V];
        let mut start = [_mm512_setzero_si512(); V];
        let mut zb = [_mm512_setzero_si512(); V];
        for v in 0..V {
            let ch = j + v * LANES;
            b[v] = packed.bytes.as_ptr().add((ch / LANES) * panel_len);
            start[v] = _mm512_loadu_si512(init.as_ptr().add(ch) as *const __m512i);
            zb[v] = _mm512_loadu_si512(packed.zb.as_ptr().add(ch) as *const __m512i);
        }
        let mut i = 0;
        while i < self.m {
            let rows = (self.m - i).min(MR);
            // Rows past the last one reuse it; their sums are not stored.
            let mut row_ptr = [self.au; MR];
            for (r, p) in row_ptr.iter_mut().enumerate() {
                *p = self.au.add((i + r.min(rows - 1)) * self.kq);
            }
            let acc = block::<V>(row_ptr, b, self.kq / QUAD, start);
            for (r, sums) in acc.iter().enumerate().take(rows) {
                let row_sum =
                    if packed.any_zb { _mm512_set1_epi32(self.row_sums[i + r]) } else { _mm512_setzero_si512() };
                for v in 0..V {
                    let ch = j + v * LANES;
                    let mut s = sums[v];
                    if packed.any_zb {
                        s = _mm512_sub_epi32(s, _mm512_mullo_epi32(zb[v], row_sum));
                    }
                    // The halves are the AVX2 output stage's two lane-order vectors.
                    let halves = [_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s)];
                    sink.store((i + r) * self.n + ch, ch, (self.n - ch).min(LANES), halves);
                }
            }
            i += MR;
        }
    }
}

/// The micro-kernel: eight rows of unsigned A (`rows`, `quads` groups of 4 bytes each) against
/// `V` packed panels (`b`), from `init`.
#[inline(always)]
unsafe fn block<const V: usize>(
    rows: [*const u8; MR],
    b: [*const i8; V],
    quads: usize,
    init: [__m512i; V],
) -> [[__m512i; V]; MR] {
    let mut acc = [init; MR];
    for q in 0..quads {
        let mut w = [_mm512_setzero_si512(); V];
        for v in 0..V {
            w[v] = _mm512_loadu_si512(b[v].add(q * LANES * QUAD) as *const __m512i);
        }
        for r in 0..MR {
            let a4 = _mm512_set1_epi32((rows[r].add(QUAD * q) as *const i32).read_unaligned());
            for v in 0..V {
                acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], a4, w[v]);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VNNI kernel (where it runs: a CPU with AVX-512 VNNI, or Miri with those target
    /// features) and the packed layout read one product at a time against the plain centred
    /// sums of `gemm_i8_acc`, and the fused requantization against those sums requantized, on
    /// shapes that hit every tail (rows around the 8-row block, K off the 4-byte quad, channels
    /// around the 16- and 32-channel steps, K = 0), extreme values (-128 against -128 with zero points
    /// 127: centred 255 * 255 products) and weights with and without zero points. Small
    /// shapes: Miri interprets every lane.
    #[test]
    fn gemm_vnni_equals_the_plain_sums() {
        if !vnni() {
            eprintln!("gemm_vnni: this CPU has no AVX-512 VNNI; only the packed layout is checked");
        }
        let mut seed = 0x9e37_79b9u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for &(m, k, n) in &[(1, 1, 1), (9, 5, 17), (8, 4, 32), (3, 24, 33), (17, 7, 48), (2, 33, 15), (3, 0, 17)] {
            for extreme in [false, true] {
                for weight_zps in [false, true] {
                    let byte = |r: u32| if extreme { -128 } else { r as i8 };
                    let a: Vec<i8> = (0..m * k).map(|_| byte(next())).collect();
                    let b: Vec<i8> = (0..n * k).map(|_| byte(next())).collect();
                    let za = if extreme { 127 } else { (next() % 256) as i32 - 128 };
                    let zb: Vec<i32> = match (weight_zps, extreme) {
                        (false, _) => vec![0],
                        (true, true) => vec![127; n],
                        (true, false) => (0..n).map(|_| (next() % 256) as i32 - 128).collect(),
                    };
                    let bias: Vec<i32> = (0..n).map(|_| next() as i32 >> 8).collect();
                    let want = plain(&a, za, &b, &zb, &bias, (m, k, n));
                    let packed = pack_b(&b, &zb, n, k);
                    let what = format!("m={m} k={k} n={n} extreme={extreme} zb={weight_zps}");
                    assert_eq!(reference(&a, za, &packed, Some(&bias), m, k, n), want, "packed layout: {what}");
                    let mut got = vec![0i32; m * n];
                    gemm_i8_acc_packed(&a, za, &packed, Some(&bias), m, k, n, &mut got);
                    assert_eq!(got, want, "sums: {what}");

                    // Fused: multipliers that leave values inside and outside the bounds.
                    let mults: Vec<f32> =
                        (0..n).map(|j| 1e-3 * (1 + (j * 37 + next() as usize) % 500) as f32).collect();
                    let (zp, lo, hi) = (-3, -128, 100);
                    let want_q: Vec<i8> = want
                        .iter()
                        .enumerate()
                        .map(|(idx, &v)| crate::quant::requantize(v, mults[idx % n], zp, lo, hi) as i8)
                        .collect();
                    let (lane_bias, lane_mults) = (
                        super::super::gemm_x86::lane_bias(Some(&bias), n),
                        super::super::requant_x86::lane_order(&mults),
                    );
                    let mut got_q = vec![0i8; m * n];
                    gemm_i8_requant_packed(
                        &a,
                        za,
                        &packed,
                        &lane_bias,
                        (m, k, n),
                        &lane_mults,
                        (zp, lo, hi),
                        &mut got_q,
                    );
                    assert_eq!(got_q, want_q, "requantized: {what}");

                    // Through `PackedB` and the layer entry points (task split, lane-order
                    // bias made there), on the larger shapes.
                    if m * n >= 100 {
                        use crate::quant::{Activation, OutputQuant, Requant};
                        let pb = super::super::gemm::PackedB::new(&b, &zb, n, k).unwrap();
                        let acc = super::super::gemm::gemm_i8_acc_packed(&a, za, &pb, Some(&bias), m).unwrap();
                        assert_eq!(acc, want, "PackedB sums: {what}");
                        let scales: Vec<f32> = mults.iter().map(|&m| m * 0.05 / 0.1).collect();
                        let rq =
                            Requant::new("t", 0.1, &scales, &OutputQuant::new(0.05, -3, Activation::None).unwrap())
                                .unwrap();
                        let fused =
                            super::super::gemm::gemm_i8_requant_packed(&a, za, &pb, Some(&bias), &rq, m).unwrap();
                        let want_rq: Vec<i8> = want.iter().enumerate().map(|(x, &v)| rq.apply(v, x % n)).collect();
                        assert_eq!(fused, want_rq, "PackedB requantized: {what}");
                    }
                }
            }
        }
    }

    /// The spec: `bias[j] + sum_p (a[i, p] - za) * (b[j, p] - zb[j])`, wrapping.
    fn plain(a: &[i8], za: i32, b: &[i8], zb: &[i32], bias: &[i32], (m, k, n): (usize, usize, usize)) -> Vec<i32> {
        let mut out = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                let z = zb[j.min(zb.len() - 1)];
                out[i * n + j] = (0..k).fold(bias[j], |s, p| {
                    s.wrapping_add((a[i * k + p] as i32 - za).wrapping_mul(b[j * k + p] as i32 - z))
                });
            }
        }
        out
    }
}
