//! Matrix products.
//!
//! f32: `C[m, n] = sum_k A[m, k] * B[k, n]` (B as `[K, N]`), or with B stored as `[N, K]`
//! (weights `[out, in]`: `C = A · Bᵀ`). Summation runs over k in increasing order in both
//! layouts, so the two give identical results.
//!
//! int8: `acc[m, n] = sum_k (A[m, k] - za) * (B[n, k] - zb[n]) + bias[n]` with B as
//! `[N, K]` (one row per output channel, per-channel zero points, usually 0), accumulated
//! in i32. The fast form expands the product:
//! `sum ab - zb[n] * rowsum(A)[m] - za * rowsum(B)[n] + K * za * zb[n]`, in wrapping i32
//! arithmetic: the wrapped result equals the exact one whenever the exact one fits in i32,
//! which [`check_int8_reduction`] guarantees by bounding K.

use super::activation::apply_activation;
use crate::base::error::{Error, Result};
use crate::quant::{Activation, Requant};

/// Longest reduction whose int8 accumulator cannot overflow i32: `K * 255 * 255 < 2^31`
/// (|x - zx| and |w - zw| are at most 255), leaving room for a bias.
pub const MAX_INT8_REDUCTION: usize = 32_000;

/// Errors if an int8 reduction of length `k` could overflow the i32 accumulator.
pub fn check_int8_reduction(op: &'static str, k: usize) -> Result<()> {
    if k > MAX_INT8_REDUCTION {
        return Err(Error::invalid(
            op,
            format!("reduction length {k} exceeds {MAX_INT8_REDUCTION}: the int32 accumulator could overflow"),
        ));
    }
    Ok(())
}

/// Errors unless every zero point of int8 data lies in [-128, 127], which bounds centred
/// values `q - z` to [-255, 255] (the accumulator bound and the i16 centring rely on it).
pub fn check_int8_zero_points(op: &'static str, zps: &[i32]) -> Result<()> {
    match zps.iter().find(|z| !(-128..=127).contains(*z)) {
        Some(z) => Err(Error::invalid(op, format!("int8 zero point {z} outside [-128, 127]"))),
        None => Ok(()),
    }
}

/// Layout of the right-hand operand of a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BLayout {
    /// `[K, N]`, row-major.
    KN,
    /// `[N, K]`, row-major (weights as `[out, in]`).
    NK,
}

fn check_len(op: &'static str, what: &str, got: usize, shape: [usize; 2]) -> Result<()> {
    let need = shape[0].checked_mul(shape[1]).ok_or_else(|| Error::shape(op, format!("{what} {shape:?} overflows")))?;
    if got != need {
        return Err(Error::shape(op, format!("{what} has {got} values, shape {shape:?} needs {need}")));
    }
    Ok(())
}

/// f32 matrix product `A[m, k] · B` -> `[m, n]`.
pub fn matmul_f32(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, b_layout: BLayout) -> Result<Vec<f32>> {
    const OP: &str = "matmul_f32";
    check_len(OP, "A", a.len(), [m, k])?;
    check_len(OP, "B", b.len(), if b_layout == BLayout::KN { [k, n] } else { [n, k] })?;
    crate::base::tensor::numel(OP, &[m, n])?;
    if m >= 4 && (b_layout == BLayout::NK || PackedF32B::panels()) {
        // Laying B out once (one pass over it) lets every row use the fast loop; the sum
        // over k runs in the same order, so the bits are the same.
        return matmul_f32_packed(a, m, &PackedF32B::new(b, k, n, b_layout)?, None, Activation::None);
    }
    let mut c = vec![0.0f32; m * n];
    match b_layout {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        BLayout::KN => return Ok(super::gemm_wasm::matmul_f32_kn(a, b, m, k, n)),
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        BLayout::KN => matmul_f32_kn_rows(a, b, k, n, &mut c),
        BLayout::NK => {
            for i in 0..m {
                let ai = &a[i * k..(i + 1) * k];
                for j in 0..n {
                    let bj = &b[j * k..(j + 1) * k];
                    let mut s = 0.0f32;
                    for (&x, &y) in ai.iter().zip(bj) {
                        s += x * y;
                    }
                    c[i * n + j] = s;
                }
            }
        }
    }
    Ok(c)
}

/// The right-hand operand of an f32 product laid out once for the fast loop (weights are
/// packed when a model is prepared, not per call): natively on x86-64 with AVX2 the AVX2
/// kernel's column panels (`gemm_f32_x86`), elsewhere `B[K, N]` row-major for the
/// row-update form (the wasm SIMD kernel's and the portable loop's layout).
#[derive(Clone, Debug)]
pub struct PackedF32B {
    k: usize,
    n: usize,
    /// True: [`pack_f32_panels`]'s panels; false: `[K, N]`.
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    panels: bool,
    data: Vec<f32>,
}

/// Columns per panel of [`pack_f32_panels`].
pub(super) const F32_PANEL: usize = 16;

/// B given by `at(p, j)` (`p < k`, `j < n`) as `ceil(N / 16)` panels of 16 columns, each
/// `[K][16]` contiguous, columns past N zero: `panels[(q * K + p) * 16 + c] = B[p, 16 q + c]`
/// (the native SIMD f32 kernels' layout: `gemm_f32_x86`, `gemm_f32_neon`).
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(super) fn pack_f32_panels(k: usize, n: usize, at: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let panels = n.div_ceil(F32_PANEL);
    let mut out = vec![0f32; panels * k * F32_PANEL];
    for q in 0..panels {
        for p in 0..k {
            let dst = &mut out[(q * k + p) * F32_PANEL..][..F32_PANEL];
            for (c, d) in dst.iter_mut().enumerate().take(n - q * F32_PANEL) {
                *d = at(p, q * F32_PANEL + c);
            }
        }
    }
    out
}

impl PackedF32B {
    /// True where a native panel kernel runs (x86-64 AVX2, aarch64 NEON).
    fn panels() -> bool {
        #[cfg(target_arch = "x86_64")]
        return super::gemm_x86::avx2();
        #[cfg(target_arch = "aarch64")]
        return super::gemm_neon::neon();
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        false
    }

    /// `b` as `[K, N]` (`KN`) or `[N, K]` (`NK`, weights as `[out, in]`).
    pub fn new(b: &[f32], k: usize, n: usize, layout: BLayout) -> Result<Self> {
        const OP: &str = "matmul_f32 weights";
        check_len(OP, "B", b.len(), if layout == BLayout::KN { [k, n] } else { [n, k] })?;
        let at = |p: usize, j: usize| if layout == BLayout::KN { b[p * n + j] } else { b[j * k + p] };
        if Self::panels() {
            return Ok(PackedF32B { k, n, panels: true, data: pack_f32_panels(k, n, at) });
        }
        let data = match layout {
            BLayout::KN => b.to_vec(),
            BLayout::NK => (0..k).flat_map(|p| (0..n).map(move |j| at(p, j))).collect(),
        };
        Ok(PackedF32B { k, n, panels: false, data })
    }

    /// `(K, N)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// `act(A[m, k] · B (+ bias[n]))` -> `[m, n]` on a packed B: each element sums over k in
/// increasing order from +0.0, then adds the bias (the bits of [`matmul_f32`] then a bias
/// add), then the activation (natively fused into the kernel's store).
pub fn matmul_f32_packed(
    a: &[f32],
    m: usize,
    b: &PackedF32B,
    bias: Option<&[f32]>,
    act: Activation,
) -> Result<Vec<f32>> {
    const OP: &str = "matmul_f32";
    let (k, n) = (b.k, b.n);
    check_len(OP, "A", a.len(), [m, k])?;
    if let Some(bias) = bias {
        if bias.len() != n {
            return Err(Error::shape(OP, format!("bias has {} values, expected {n}", bias.len())));
        }
    }
    crate::base::tensor::numel(OP, &[m, n])?;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if b.panels {
        // The kernels store every element: a recycled buffer needs no zeroing.
        let mut c = super::scratch::output_f32(m * n);
        let clamp = super::activation::activation_bounds(act);
        // Row blocks over the pool's threads; each element's chain is the same.
        let rows = crate::base::pool::chunk_len(m, 6).div_ceil(6) * 6;
        crate::base::pool::parallel_chunks_mut(&mut c, rows * n.max(1), &|t, part| {
            let r = part.len() / n.max(1);
            let a_rows = &a[t * rows * k..][..r * k];
            #[cfg(target_arch = "x86_64")]
            super::gemm_f32_x86::matmul_f32_panels(a_rows, &b.data, r, k, n, bias, clamp, part);
            #[cfg(target_arch = "aarch64")]
            super::gemm_f32_neon::matmul_f32_panels(a_rows, &b.data, r, k, n, bias, clamp, part);
        });
        return Ok(c);
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let mut c = super::gemm_wasm::matmul_f32_kn(a, &b.data, m, k, n);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let mut c = {
        let mut c = vec![0.0f32; m * n];
        matmul_f32_kn_rows(a, &b.data, k, n, &mut c);
        c
    };
    if let Some(bias) = bias {
        for row in c.chunks_exact_mut(n.max(1)) {
            for (v, &bv) in row.iter_mut().zip(bias) {
                *v += bv;
            }
        }
    }
    apply_activation(&mut c, act);
    Ok(c)
}

/// [`pack_f32_panels`]' product one element at a time: the chain from +0.0 over k in order,
/// the bias, the clamp (the fallback of the panel kernels and their tests' reference).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_f32_panels_scalar(
    a: &[f32],
    panels: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    clamp: [f32; 2],
    c: &mut [f32],
) {
    for i in 0..m {
        for j in 0..n {
            let (q, col) = (j / F32_PANEL, j % F32_PANEL);
            let mut s = 0.0f32;
            for p in 0..k {
                s += a[i * k + p] * panels[(q * k + p) * F32_PANEL + col];
            }
            if let Some(b) = bias {
                s += b[j];
            }
            c[i * n + j] = super::activation::clamp_to_bounds(s, clamp);
        }
    }
}

/// `c += A · B` with B `[K, N]`, in i-k-j order: the inner loop is a contiguous axpy that
/// vectorizes, and each `c[i, j]` sums over k in increasing order (the reference's order).
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
fn matmul_f32_kn_rows(a: &[f32], b: &[f32], k: usize, n: usize, c: &mut [f32]) {
    for (i, ci) in c.chunks_exact_mut(n.max(1)).enumerate() {
        for p in 0..k {
            let av = a[i * k + p];
            let bp = &b[p * n..(p + 1) * n];
            for (cv, &bv) in ci.iter_mut().zip(bp) {
                *cv += av * bv;
            }
        }
    }
}

/// Dense layer `y[m, n] = x[m, k] · w[n, k]ᵀ + bias[n]` in f32.
pub fn dense_f32(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Result<Vec<f32>> {
    let mut y = matmul_f32(x, w, m, k, n, BLayout::NK)?;
    if let Some(b) = bias {
        if b.len() != n {
            return Err(Error::shape("dense_f32", format!("bias has {} values, expected {n}", b.len())));
        }
        for row in y.chunks_exact_mut(n.max(1)) {
            for (v, &bv) in row.iter_mut().zip(b) {
                *v += bv;
            }
        }
    }
    Ok(y)
}

/// Dense backward, accumulating: `dx += dy · w` (`[m, k]`), `dw += dyᵀ · x` (`[n, k]`),
/// `db += sum_m dy`. `dx` is skipped when `None` (a first layer needs no input gradient).
#[allow(clippy::too_many_arguments)]
pub fn dense_backward_f32(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    (m, k, n): (usize, usize, usize),
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) -> Result<()> {
    const OP: &str = "dense_backward_f32";
    check_len(OP, "x", x.len(), [m, k])?;
    check_len(OP, "w", w.len(), [n, k])?;
    check_len(OP, "dy", dy.len(), [m, n])?;
    check_len(OP, "dw", dw.len(), [n, k])?;
    if let Some(dx) = dx {
        check_len(OP, "dx", dx.len(), [m, k])?;
        let g = matmul_f32(dy, w, m, n, k, BLayout::KN)?;
        dx.iter_mut().zip(g).for_each(|(a, b)| *a += b);
    }
    for (xr, dyr) in x.chunks_exact(k.max(1)).zip(dy.chunks_exact(n.max(1))) {
        for (o, &d) in dyr.iter().enumerate() {
            if d != 0.0 {
                dw[o * k..(o + 1) * k].iter_mut().zip(xr).for_each(|(g, &xv)| *g += d * xv);
            }
        }
    }
    if let Some(db) = db {
        if db.len() != n {
            return Err(Error::shape(OP, format!("db has {} values, expected {n}", db.len())));
        }
        for dyr in dy.chunks_exact(n.max(1)) {
            db.iter_mut().zip(dyr).for_each(|(g, &d)| *g += d);
        }
    }
    Ok(())
}

/// Zero point of row `j` of B: per-tensor (len 1) or per-row.
#[inline]
pub(super) fn zp_at(zb: &[i32], j: usize) -> i32 {
    if zb.len() == 1 {
        zb[0]
    } else {
        zb[j]
    }
}

/// int8 product accumulators `acc[m, n]` (see module docs), B as `[N, K]`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_acc(
    a: &[i8],
    za: i32,
    b: &[i8],
    zb: &[i32],
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Result<Vec<i32>> {
    const OP: &str = "gemm_i8";
    check_len(OP, "A", a.len(), [m, k])?;
    check_len(OP, "B", b.len(), [n, k])?;
    check_int8_reduction(OP, k)?;
    check_int8_zero_points(OP, &[za])?;
    check_int8_zero_points(OP, zb)?;
    crate::base::tensor::numel(OP, &[m, n])?;
    if zb.len() != 1 && zb.len() != n {
        return Err(Error::shape(OP, format!("{} B zero points for {n} rows", zb.len())));
    }
    if let Some(bias) = bias {
        if bias.len() != n {
            return Err(Error::shape(OP, format!("bias has {} values, expected {n}", bias.len())));
        }
    }
    if m >= 4 {
        return gemm_i8_acc_packed(a, za, &PackedB::new(b, zb, n, k)?, bias, m);
    }
    let row_sum = |r: &[i8]| r.iter().map(|&v| v as i32).sum::<i32>();
    let a_sums: Vec<i32> = a.chunks_exact(k.max(1)).map(row_sum).collect();
    let b_sums: Vec<i32> = b.chunks_exact(k.max(1)).map(row_sum).collect();
    let kk = k as i32;
    let mut acc = vec![0i32; m * n];
    for i in 0..m {
        let ai = &a[i * k..(i + 1) * k];
        for j in 0..n {
            let bj = &b[j * k..(j + 1) * k];
            let mut s = 0i32;
            for (&x, &y) in ai.iter().zip(bj) {
                s = s.wrapping_add(x as i32 * y as i32);
            }
            let zbj = zp_at(zb, j);
            let mut v = s
                .wrapping_sub(zbj.wrapping_mul(a_sums.get(i).copied().unwrap_or(0)))
                .wrapping_sub(za.wrapping_mul(b_sums.get(j).copied().unwrap_or(0)))
                .wrapping_add(kk.wrapping_mul(za).wrapping_mul(zbj));
            if let Some(bias) = bias {
                v = v.wrapping_add(bias[j]);
            }
            acc[i * n + j] = v;
        }
    }
    Ok(acc)
}

/// B `[N, K]` int8, centred by its zero points and laid out once for the fast GEMM (weights
/// are packed when a model is prepared, not per call). In wasm builds the layout is the SIMD
/// kernel's (`gemm_wasm`: blocks of 4 channels, K in pairs); natively on x86-64 with AVX-512
/// VNNI that kernel's (`gemm_vnni`: panels of 16 channels, K in quads of bytes), with AVX2 the
/// AVX2 kernel's (`gemm_x86`: blocks of 8 channels, K in pairs); elsewhere `Bt[K, N]` i16,
/// `Bt[p, j] = b[j, p] - zb[j]` (in [-255, 255]) for the row-update form.
#[derive(Clone, Debug)]
pub struct PackedB {
    n: usize,
    k: usize,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    data: super::gemm_wasm::Packed,
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    data: NativePacked,
}

/// The native layouts of [`PackedB`], chosen when packing by what the CPU runs.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[derive(Clone, Debug)]
enum NativePacked {
    /// `Bt[K, N]` for [`gemm_i8_acc_rows`].
    Rows(Vec<i16>),
    /// [`super::gemm_x86::pack_b`]'s blocks.
    #[cfg(target_arch = "x86_64")]
    Avx2(Vec<i16>),
    /// [`super::gemm_vnni::pack_b`]'s panels.
    #[cfg(target_arch = "x86_64")]
    Vnni(super::gemm_vnni::Packed),
    /// [`super::gemm_neon::pack_b`]'s blocks.
    #[cfg(target_arch = "aarch64")]
    Neon(Vec<i16>),
}

impl PackedB {
    pub fn new(b: &[i8], zb: &[i32], n: usize, k: usize) -> Result<Self> {
        const OP: &str = "gemm_i8 weights";
        check_len(OP, "B", b.len(), [n, k])?;
        check_int8_reduction(OP, k)?;
        check_int8_zero_points(OP, zb)?;
        if zb.len() != 1 && zb.len() != n {
            return Err(Error::shape(OP, format!("{} B zero points for {n} rows", zb.len())));
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let data = super::gemm_wasm::pack_b(b, zb, n, k);
        #[cfg(target_arch = "x86_64")]
        if super::gemm_vnni::vnni() {
            return Ok(PackedB { n, k, data: NativePacked::Vnni(super::gemm_vnni::pack_b(b, zb, n, k)) });
        }
        #[cfg(target_arch = "x86_64")]
        if super::gemm_x86::avx2() {
            return Ok(PackedB { n, k, data: NativePacked::Avx2(super::gemm_x86::pack_b(b, zb, n, k)) });
        }
        #[cfg(target_arch = "aarch64")]
        if super::gemm_neon::neon() {
            return Ok(PackedB { n, k, data: NativePacked::Neon(super::gemm_neon::pack_b(b, zb, n, k)) });
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        let data = NativePacked::Rows({
            let mut bt = vec![0i16; k * n];
            for (j, row) in b.chunks_exact(k.max(1)).enumerate().take(n) {
                let z = zp_at(zb, j);
                for (p, &v) in row.iter().enumerate() {
                    bt[p * n + j] = (v as i32 - z) as i16;
                }
            }
            bt
        });
        Ok(PackedB { n, k, data })
    }

    /// `(N, K)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }
}

/// `rows` rows of `k` int8 values minus `zero`, as i16 rows of `kp` (zero padded): the A side
/// of the SIMD kernels (`gemm_wasm`, `gemm_x86`).
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code)
)]
pub(super) fn centred_rows(src: &[i8], rows: usize, k: usize, kp: usize, zero: i32) -> Vec<i16> {
    let mut out = vec![0i16; rows * kp];
    for (dst, row) in out.chunks_exact_mut(kp.max(1)).zip(src.chunks_exact(k.max(1))).take(rows) {
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = (v as i32 - zero) as i16;
        }
    }
    out
}

/// B `[N, K]` centred and packed for the SIMD kernels' channel-lane tiles: blocks of `lanes`
/// output channels, K in pairs, `block[q] = [b'(c0, 2q), b'(c0, 2q+1), b'(c0+1, 2q), ..]`
/// (`2 * lanes` i16 per pair), K padded to even and N to a multiple of `nr` with zeros:
/// `ceil(N / nr) * nr / lanes` blocks of `ceil(K / 2)` pairs.
#[cfg_attr(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))), allow(dead_code))]
pub(super) fn pack_b_pairs(b: &[i8], zb: &[i32], n: usize, k: usize, lanes: usize, nr: usize) -> Vec<i16> {
    let (kp, np) = (k.div_ceil(2) * 2, n.div_ceil(nr) * nr);
    let block_len = kp * lanes;
    let mut out = vec![0i16; np * kp];
    for (j, row) in b.chunks_exact(k.max(1)).enumerate().take(n) {
        let z = zp_at(zb, j);
        let block = &mut out[(j / lanes) * block_len..][..block_len];
        let lane = j % lanes;
        for (pair, two) in row.chunks(2).enumerate() {
            for (e, &v) in two.iter().enumerate() {
                block[pair * 2 * lanes + lane * 2 + e] = (v as i32 - z) as i16;
            }
        }
    }
    out
}

/// The native int8 GEMM kernel this process runs: `"avx512-vnni"`, `"avx2"` (x86-64), `"neon"`
/// (aarch64) or `"portable"` (the portable loops, also where `EDGETUNE_CPU_KERNELS=portable`);
/// `"wasm-simd"` in wasm SIMD builds. For benchmark reports.
pub fn int8_gemm_kernel() -> &'static str {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        "wasm-simd"
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        #[cfg(target_arch = "x86_64")]
        if super::gemm_vnni::vnni() {
            return "avx512-vnni";
        }
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        if native_simd() {
            return if cfg!(target_arch = "x86_64") { "avx2" } else { "neon" };
        }
        "portable"
    }
}

/// True where the native int8 GEMM runs a SIMD kernel (x86-64 with AVX2, see `gemm_x86`;
/// aarch64 NEON, see `gemm_neon`).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn native_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::gemm_x86::avx2();
    #[cfg(target_arch = "aarch64")]
    super::gemm_neon::neon()
}

/// Multiply-adds per second the int8 GEMM's instruction mix can reach at most on this
/// machine (wasm SIMD builds: `i32x4.dot_i16x8_s` + `i32x4.add`; relaxed-SIMD builds:
/// `i32x4.relaxed_dot_i8x16_i7x16_add_s`, 8 useful multiply-adds each; no loads), measured over
/// `iters` rounds of independent chains; `None` where that kernel is not built.
/// For the benchmarks.
pub fn int8_dot_peak_macs_per_s(iters: u32) -> Option<f64> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let t = crate::base::clock::now_ms();
        #[cfg(target_feature = "relaxed-simd")]
        let r = super::gemm_wasm_relaxed::dot_add_peak_i7(iters, iters as i32);
        #[cfg(not(target_feature = "relaxed-simd"))]
        let r = super::gemm_wasm::dot_add_peak(iters, iters as i32);
        let ms = (crate::base::clock::now_ms() - t).max(1e-3);
        // `r` is used so the loop is not removed.
        let macs_per_round = 8.0 * super::gemm_wasm::PEAK_CHAINS as f64;
        Some(if r == i32::MIN { 0.0 } else { macs_per_round * iters as f64 / (ms / 1000.0) })
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let _ = iters;
        None
    }
}

/// Shapes and zero point of a GEMM on packed weights.
fn check_packed_args(a: &[i8], za: i32, b: &PackedB, bias: Option<&[i32]>, m: usize) -> Result<()> {
    const OP: &str = "gemm_i8";
    check_len(OP, "A", a.len(), [m, b.k])?;
    check_int8_zero_points(OP, &[za])?;
    crate::base::tensor::numel(OP, &[m, b.n])?;
    match bias {
        Some(bias) if bias.len() != b.n => {
            Err(Error::shape(OP, format!("bias has {} values, expected {}", bias.len(), b.n)))
        }
        _ => Ok(()),
    }
}

/// [`gemm_i8_acc`] with B packed beforehand: `acc[i, j] = bias[j] + sum_p (a[i, p] - za) * b'[j, p]`.
pub fn gemm_i8_acc_packed(a: &[i8], za: i32, b: &PackedB, bias: Option<&[i32]>, m: usize) -> Result<Vec<i32>> {
    check_packed_args(a, za, b, bias, m)?;
    let (n, k) = (b.n, b.k);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return Ok(super::gemm_wasm::gemm_i8_acc_packed(a, za, &b.data, bias, m, k, n));
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut acc = vec![0i32; m * n];
        gemm_i8_acc_native(a, za, &b.data, bias, m, k, n, &mut acc);
        Ok(acc)
    }
}

/// [`gemm_i8_acc_packed`] followed by [`requantize_channels_last`]. In wasm SIMD builds the
/// requantization (either arithmetic, where the SIMD form covers it) is fused into the GEMM's
/// store: same bits, no i32 sums in memory.
pub fn gemm_i8_requant_packed(
    a: &[i8],
    za: i32,
    b: &PackedB,
    bias: Option<&[i32]>,
    rq: &Requant,
    m: usize,
) -> Result<Vec<i8>> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use super::requant_wasm::ChannelRequant;
        let (n, k) = (b.n, b.k);
        check_packed_args(a, za, b, bias, m)?;
        match ChannelRequant::new(rq, n)? {
            Some(ChannelRequant::Float(f)) => {
                return Ok(super::gemm_wasm::gemm_i8_requant_packed(a, za, &b.data, bias, &f, m, k, n))
            }
            Some(ChannelRequant::Fixed(f)) => {
                return Ok(super::gemm_wasm::gemm_i8_requant_packed(a, za, &b.data, bias, &f, m, k, n))
            }
            None => {}
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        check_packed_args(a, za, b, bias, m)?;
        let (n, k) = (b.n, b.k);
        let channel = ChannelRequantNative::new(rq, n)?;
        // Every element is stored below: a recycled buffer's stale bytes never show.
        let mut out = super::scratch::output_i8(m * n);
        if n == 0 {
            return Ok(out);
        }
        // Row blocks split over the pool's threads, each requantized while its accumulators
        // are still in cache: no image-sized i32 buffer. Blocks of at most ~64 KiB of sums.
        #[cfg(target_arch = "x86_64")]
        let mr = if matches!(b.data, NativePacked::Vnni(_)) { 8 } else { 6 };
        #[cfg(not(target_arch = "x86_64"))]
        let mr = 6;
        let rows = native_rows_per_task(m, n, mr);
        // The bias in the AVX2 kernel's lane order, once per call.
        #[cfg(target_arch = "x86_64")]
        let lane_bias = match &b.data {
            NativePacked::Avx2(_) | NativePacked::Vnni(_) => super::gemm_x86::lane_bias(bias, n),
            _ => Vec::new(),
        };
        crate::base::pool::parallel_chunks_mut(&mut out, rows * n, &|t, part| {
            let (i0, r) = (t * rows, part.len() / n);
            let a_rows = &a[i0 * k..(i0 + r) * k];
            #[cfg(target_arch = "x86_64")]
            if let ChannelRequantNative::Float { lane_mults, .. } = &channel {
                // Requantized in registers by the micro-kernel: the same bits, no i32 pass.
                let bounds = (rq.zero_point, rq.lo, rq.hi);
                let shape = (r, k, n);
                let (bias, mults) = (&lane_bias, lane_mults);
                match &b.data {
                    NativePacked::Avx2(p) => {
                        return super::gemm_x86::gemm_i8_requant_packed(a_rows, za, p, bias, shape, mults, bounds, part)
                    }
                    NativePacked::Vnni(p) => {
                        return super::gemm_vnni::gemm_i8_requant_packed(
                            a_rows, za, p, bias, shape, mults, bounds, part,
                        )
                    }
                    _ => {}
                }
            }
            super::scratch::with_i32(r * n, |acc| {
                gemm_i8_acc_native(a_rows, za, &b.data, bias, r, k, n, acc);
                channel.apply(acc, n, rq, part);
            })
        });
        Ok(out)
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        let acc = gemm_i8_acc_packed(a, za, b, bias, m)?;
        requantize_channels_last(&acc, b.n, rq)
    }
}

/// Rows of output per task of the native fused GEMM: a multiple of `mr` (the micro-kernel's
/// rows: 6 for AVX2, 8 for VNNI), about two tasks per thread, and at most ~16K i32 sums
/// (64 KiB) per task so they stay in L2 until requantized.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn native_rows_per_task(m: usize, n: usize, mr: usize) -> usize {
    let cache_rows = ((16 * 1024) / n.max(1)).max(mr) / mr * mr;
    let split = crate::base::pool::chunk_len(m, mr).div_ceil(mr) * mr;
    split.min(cache_rows).max(mr)
}

/// The native accumulators on whichever layout [`PackedB::new`] chose, into `out` (`m * n`,
/// every element written).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[allow(clippy::too_many_arguments)]
fn gemm_i8_acc_native(
    a: &[i8],
    za: i32,
    data: &NativePacked,
    bias: Option<&[i32]>,
    m: usize,
    k: usize,
    n: usize,
    out: &mut [i32],
) {
    match data {
        NativePacked::Rows(bt) => out.copy_from_slice(&gemm_i8_acc_rows(a, za, bt, bias, m, k, n)),
        #[cfg(target_arch = "x86_64")]
        NativePacked::Avx2(p) => super::gemm_x86::gemm_i8_acc_packed(a, za, p, bias, m, k, n, out),
        #[cfg(target_arch = "x86_64")]
        NativePacked::Vnni(p) => super::gemm_vnni::gemm_i8_acc_packed(a, za, p, bias, m, k, n, out),
        #[cfg(target_arch = "aarch64")]
        NativePacked::Neon(p) => super::gemm_neon::gemm_i8_acc_packed(a, za, p, bias, m, k, n, out),
    }
}

/// A requantization prepared for the native row kernels: the per-channel float multipliers
/// once per call (the engine's arithmetic), or TFLite's fixed point value by value.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub(super) enum ChannelRequantNative {
    /// Per-channel multipliers, and on x86-64 the same in the AVX2 kernels' lane order
    /// (`requant_x86::lane_order`) for their fused output stage.
    Float {
        mults: Vec<f32>,
        #[cfg(target_arch = "x86_64")]
        lane_mults: Vec<f32>,
    },
    Fixed,
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
impl ChannelRequantNative {
    pub(super) fn new(rq: &Requant, c: usize) -> Result<Self> {
        Ok(match rq.fixed {
            Some(_) => Self::Fixed,
            None => {
                let mults = rq.per_channel(c)?;
                Self::Float {
                    #[cfg(target_arch = "x86_64")]
                    lane_mults: super::requant_x86::lane_order(&mults),
                    mults,
                }
            }
        })
    }

    /// Requantizes rows of `c` channels of `acc` into `out` (same length).
    pub(super) fn apply(&self, acc: &[i32], c: usize, rq: &Requant, out: &mut [i8]) {
        match self {
            Self::Fixed => {
                for (orow, arow) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
                    for (k, (o, &a)) in orow.iter_mut().zip(arow).enumerate() {
                        *o = rq.apply(a, k);
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Self::Float { mults, lane_mults } if super::gemm_x86::avx2() => {
                super::requant_x86::requantize_rows(acc, c, mults, lane_mults, rq.zero_point, rq.lo, rq.hi, out)
            }
            Self::Float { mults, .. } => {
                for (orow, arow) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
                    for ((o, &a), &m) in orow.iter_mut().zip(arow).zip(mults) {
                        *o = crate::quant::requantize(a, m, rq.zero_point, rq.lo, rq.hi) as i8;
                    }
                }
            }
        }
    }
}

/// The row-update form: each output row is built by `acc[i, :] += (a[i, p] - za) * Bt[p, :]`,
/// a contiguous widening i16 multiply-add the compiler vectorizes. Integer sums are exact in
/// any order, so this equals the dot form.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
fn gemm_i8_acc_rows(a: &[i8], za: i32, bt: &[i16], bias: Option<&[i32]>, m: usize, k: usize, n: usize) -> Vec<i32> {
    let mut acc = vec![0i32; m * n];
    for (i, row) in acc.chunks_exact_mut(n.max(1)).enumerate().take(m) {
        if let Some(bias) = bias {
            row.copy_from_slice(bias);
        }
        for p in 0..k {
            let av = (a[i * k + p] as i32 - za) as i16;
            for (o, &bv) in row.iter_mut().zip(&bt[p * n..(p + 1) * n]) {
                *o = o.wrapping_add(av as i32 * bv as i32);
            }
        }
    }
    acc
}

/// Requantizes accumulators laid out `[.., C]` (channel last) with per-channel multipliers.
pub fn requantize_channels_last(acc: &[i32], channels: usize, rq: &Requant) -> Result<Vec<i8>> {
    let c = channels.max(1);
    let mut out = vec![0i8; acc.len()];
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use super::requant_wasm::{requantize_rows, ChannelRequant};
        match ChannelRequant::new(rq, c)? {
            Some(ChannelRequant::Float(f)) => requantize_rows(acc, c, &f, &mut out),
            Some(ChannelRequant::Fixed(f)) => requantize_rows(acc, c, &f, &mut out),
            None => requantize_rows_scalar(acc, c, rq, &mut out)?,
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    requantize_rows_scalar(acc, c, rq, &mut out)?;
    Ok(out)
}

/// Where no SIMD form covers the requantization (natively: every case, by
/// [`ChannelRequantNative`]).
fn requantize_rows_scalar(acc: &[i32], c: usize, rq: &Requant, out: &mut [i8]) -> Result<()> {
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        // Row blocks over the pool's threads.
        let channel = ChannelRequantNative::new(rq, c)?;
        let chunk = crate::base::pool::chunk_len(acc.len() / c, 256) * c;
        crate::base::pool::parallel_chunks_mut(out, chunk, &|t, part| {
            channel.apply(&acc[t * chunk..][..part.len()], c, rq, part)
        });
        Ok(())
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        for (orow, arow) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
            for (k, (o, &a)) in orow.iter_mut().zip(arow).enumerate() {
                *o = rq.apply(a, k);
            }
        }
        Ok(())
    }
}

/// `sum_p (w[p] - z) * x[p]` in f32 for an int8 weight row against a float vector (the
/// classifier head on the float embedding), in one fixed order: eight running sums, lane
/// `p % 8` (sequential within the lane), then `((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))`,
/// then the tail `p >= 8 * floor(k / 8)` in order. No compiler may reassociate f32 sums, so
/// every build (native, wasm, the GPU backend's host-side head) gives the same bits, and the
/// eight lanes are two f32x4 vectors for the vectorizer. `w` and `x` have equal lengths.
pub fn dot_i8_f32(w: &[i8], z: i32, x: &[f32]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::gemm_wasm::dot_i8_f32(w, z, x);
    #[cfg(target_arch = "x86_64")]
    if super::gemm_x86::avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { dot_i8_f32_lanes_avx2(w, z, x) };
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    dot_i8_f32_lanes(w, z, x)
}

/// [`dot_i8_f32`] of `x` with each row of `w` (`[n, k]`, zero point `zw[row]`), into `out`
/// (`n` values): the same bits as one [`dot_i8_f32`] per row. Natively with AVX2, four rows
/// share each load of `x` and run four independent chains of sums (one row's chain alone
/// waits on the add latency).
pub fn dot_i8_f32_rows(w: &[i8], zw: &[i32], x: &[f32], out: &mut [f32]) -> Result<()> {
    const OP: &str = "dot_i8_f32_rows";
    let (k, n) = (x.len(), out.len());
    check_len(OP, "w", w.len(), [n, k])?;
    if zw.len() != n {
        return Err(Error::shape(OP, format!("{} zero points for {n} rows", zw.len())));
    }
    #[cfg(target_arch = "x86_64")]
    if super::gemm_x86::avx2() {
        // SAFETY: the CPU has AVX2 and `w` holds `n` rows of `k` values (checked above).
        unsafe { dot_i8_f32_rows_avx2(w, zw, x, out) };
        return Ok(());
    }
    for (r, (o, &z)) in out.iter_mut().zip(zw).enumerate() {
        // In bounds: `w` holds n rows of k (checked above), also when k = 0.
        *o = dot_i8_f32(&w[r * k..(r + 1) * k], z, x);
    }
    Ok(())
}

/// [`dot_i8_f32_rows`] four rows at a time: per row the eight lane sums of
/// [`dot_i8_f32_lanes`] in one __m256 (`vcvtdq2ps` of `w - z` is exact, then a multiply and an
/// add, never an FMA), the same final pairing, then the tail in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_f32_rows_avx2(w: &[i8], zw: &[i32], x: &[f32], out: &mut [f32]) {
    use core::arch::x86_64::*;
    let k = x.len();
    let body = k / 8 * 8;
    let finish = |s: __m256, r: usize| {
        let mut l = [0f32; 8];
        _mm256_storeu_ps(l.as_mut_ptr(), s);
        let mut sum = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
        for p in body..k {
            sum += (w[r * k + p] as i32 - zw[r]) as f32 * x[p];
        }
        sum
    };
    let rows = out.len();
    let mut r = 0;
    while r < rows {
        let group = (rows - r).min(4);
        let mut acc = [_mm256_setzero_ps(); 4];
        let z: [__m256i; 4] = core::array::from_fn(|g| _mm256_set1_epi32(zw[r + g.min(group - 1)]));
        let wp: [*const i8; 4] = core::array::from_fn(|g| w.as_ptr().add((r + g.min(group - 1)) * k));
        let mut p = 0;
        while p < body {
            let xv = _mm256_loadu_ps(x.as_ptr().add(p));
            for g in 0..4 {
                let wv = _mm256_cvtepi8_epi32(_mm_loadl_epi64(wp[g].add(p) as *const __m128i));
                let wf = _mm256_cvtepi32_ps(_mm256_sub_epi32(wv, z[g]));
                acc[g] = _mm256_add_ps(acc[g], _mm256_mul_ps(wf, xv));
            }
            p += 8;
        }
        for g in 0..group {
            out[r + g] = finish(acc[g], r + g);
        }
        r += 4;
    }
}

/// [`dot_i8_f32_lanes`] built for AVX2: the eight running sums are one vector, each updated by
/// the same multiply then add (never contracted into an FMA), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_f32_lanes_avx2(w: &[i8], z: i32, x: &[f32]) -> f32 {
    dot_i8_f32_lanes(w, z, x)
}

/// The portable form of [`dot_i8_f32`] (the wasm SIMD one computes the same sums).
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
fn dot_i8_f32_lanes(w: &[i8], z: i32, x: &[f32]) -> f32 {
    let mut s = [0f32; 8];
    let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
    let (wt, xt) = (wc.remainder(), xc.remainder());
    for (wr, xr) in wc.zip(xc) {
        for l in 0..8 {
            s[l] += (wr[l] as i32 - z) as f32 * xr[l];
        }
    }
    let mut sum = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (&wv, &xv) in wt.iter().zip(xt) {
        sum += (wv as i32 - z) as f32 * xv;
    }
    sum
}

/// The integer classifier on a float input that lies on an int8 grid (TFLite's, and
/// onnxruntime's QGemm): `k = round(x / s_x)` recovers the input's integers exactly, then
/// `acc[c] = bias_q[c] + sum_p (w[c, p] - zw[c]) * k[p]` (wrapping i32), requantized with `rq`
/// onto the output grid `(s_y, z_y)` and dequantized: `y = s_y * (rq(acc) - z_y)`.
/// `x` `[m, k]`, `w` `[n, k]`; `bias_q` is the i32 bias prepared once per model.
#[allow(clippy::too_many_arguments)]
pub fn dense_i8_on_grid(
    x: &[f32],
    m: usize,
    s_x: f32,
    w: &[i8],
    zw: &[i32],
    bias_q: &[i32],
    rq: &Requant,
    (s_y, z_y): (f32, i32),
) -> Result<Vec<f32>> {
    let n = zw.len();
    let k = x.len() / m.max(1);
    if x.len() != m * k || w.len() != n * k || bias_q.len() != n {
        return Err(Error::shape(
            "dense_i8",
            format!("x {} for [{m}, {k}], w {} for [{n}, {k}], bias {}", x.len(), w.len(), bias_q.len()),
        ));
    }
    let mut y = vec![0f32; m * n];
    for (row, e) in y.chunks_exact_mut(n.max(1)).zip(x.chunks_exact(k.max(1))) {
        let kq: Vec<i32> = e.iter().map(|&v| (v / s_x).round() as i32).collect();
        for (c, o) in row.iter_mut().enumerate() {
            let acc = w[c * k..(c + 1) * k]
                .iter()
                .zip(&kq)
                .fold(bias_q[c], |a, (&wv, &v)| a.wrapping_add((wv as i32 - zw[c]) * v));
            *o = crate::quant::dequantize(rq.apply(acc, c) as i32, s_y, z_y);
        }
    }
    Ok(y)
}

/// int8 dense layer: `y = requant(x · wᵀ + bias)` with x `[m, k]` per-tensor and w `[n, k]`
/// per output channel.
#[allow(clippy::too_many_arguments)]
pub fn dense_i8(
    x: &[i8],
    zx: i32,
    w: &[i8],
    zw: &[i32],
    bias: Option<&[i32]>,
    rq: &Requant,
    m: usize,
    k: usize,
    n: usize,
) -> Result<Vec<i8>> {
    let acc = gemm_i8_acc(x, zx, w, zw, bias, m, k, n)?;
    requantize_channels_last(&acc, n, rq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Activation, OutputQuant};

    #[test]
    fn dense_gradients_match_finite_differences() {
        use crate::ops::gradcheck::{check, values};
        let (m, k, n) = (3, 5, 4);
        let (x, w, b, dy) = (values(m * k, 1), values(n * k, 2), values(n, 3), values(m * n, 4));
        let (mut dx, mut dw, mut db) = (vec![0.0; m * k], vec![0.0; n * k], vec![0.0; n]);
        dense_backward_f32(&x, &w, &dy, (m, k, n), Some(&mut dx), &mut dw, Some(&mut db)).unwrap();
        check("dense dx", &|v| dense_f32(v, &w, Some(&b), m, k, n).unwrap(), &x, &dy, &dx, 1e-3);
        check("dense dw", &|v| dense_f32(&x, v, Some(&b), m, k, n).unwrap(), &w, &dy, &dw, 1e-3);
        check("dense db", &|v| dense_f32(&x, &w, Some(v), m, k, n).unwrap(), &b, &dy, &db, 1e-3);
    }

    #[test]
    fn matmul_layouts_agree() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2x3
        let b_kn = [1.0, 0.0, 0.5, 1.0, -1.0, 2.0]; // 3x2
        let b_nk = [1.0, 0.5, -1.0, 0.0, 1.0, 2.0]; // 2x3
        let c1 = matmul_f32(&a, &b_kn, 2, 3, 2, BLayout::KN).unwrap();
        let c2 = matmul_f32(&a, &b_nk, 2, 3, 2, BLayout::NK).unwrap();
        assert_eq!(c1, vec![-1.0, 8.0, 0.5, 17.0]);
        assert_eq!(c1, c2);
        // The transposing path (m >= 4) and the dot-product path give identical bits.
        let a: Vec<f32> = (0..5 * 7).map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.173).collect();
        let b: Vec<f32> = (0..3 * 7).map(|i| ((i * 11 % 13) as f32 - 6.0) * 0.291).collect();
        let fast = matmul_f32(&a, &b, 5, 7, 3, BLayout::NK).unwrap();
        for i in 0..5 {
            let row = matmul_f32(&a[i * 7..(i + 1) * 7], &b, 1, 7, 3, BLayout::NK).unwrap();
            assert_eq!(&fast[i * 3..(i + 1) * 3], &row[..]);
        }
    }

    /// The many-row f32 product (register-blocked SIMD in wasm, axpy natively) gives the bits
    /// of the one-row dot loop on every tail shape: both sum over k in order from 0.
    #[test]
    fn matmul_f32_fast_path_equals_row_dots() {
        for &m in &[4usize, 5, 7, 9] {
            for &k in &[1usize, 3, 17] {
                for &n in &[1usize, 5, 8, 13] {
                    let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.173).collect();
                    let b: Vec<f32> = (0..n * k).map(|i| ((i * 11 % 13) as f32 - 6.0) * 0.291).collect();
                    let fast = matmul_f32(&a, &b, m, k, n, BLayout::NK).unwrap();
                    for i in 0..m {
                        let row = matmul_f32(&a[i * k..(i + 1) * k], &b, 1, k, n, BLayout::NK).unwrap();
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&fast[i * n..(i + 1) * n]), bits(&row), "m={m} k={k} n={n} row {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_i8_with_zero_points() {
        // (a - 1) . (b - zb)
        let a = [2i8, 3, -1, 0];
        let b = [1i8, 1, 5, -5];
        let acc = gemm_i8_acc(&a, 1, &b, &[0, 1], Some(&[10, 0]), 2, 2, 2).unwrap();
        // row0 a-1 = [1,2]; b0-0 = [1,1] -> 3 +10; b1-1 = [4,-6] -> 4-12 = -8
        // row1 a-1 = [-2,-1]; -> -3 + 10 = 7; -8+6 = -2
        assert_eq!(acc, vec![13, -8, 7, -2]);
    }

    /// The fast paths (`m >= 4`: the wasm SIMD kernel in wasm builds, the row-update form
    /// natively) against a plain loop of centred products, on shapes that hit every tail:
    /// rows not a multiple of 4, odd K, channels not a multiple of 4 or 8, per-row zero points.
    #[test]
    fn gemm_i8_fast_paths_equal_a_plain_loop() {
        let mut seed = 0x9e37_79b9u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for &m in &[1usize, 4, 5, 7, 8, 13] {
            for &k in &[1usize, 2, 3, 8, 24, 27, 33] {
                for &n in &[1usize, 3, 4, 5, 8, 9, 12, 17] {
                    let a: Vec<i8> = (0..m * k).map(|_| next() as i8).collect();
                    let b: Vec<i8> = (0..n * k).map(|_| (next() as i8).max(-127)).collect();
                    let za = (next() % 256) as i32 - 128;
                    let zb: Vec<i32> =
                        if n % 2 == 0 { vec![0] } else { (0..n).map(|_| (next() % 7) as i32 - 3).collect() };
                    let bias: Vec<i32> = (0..n).map(|_| (next() % 20_001) as i32 - 10_000).collect();
                    let got = gemm_i8_acc(&a, za, &b, &zb, Some(&bias), m, k, n).unwrap();
                    for i in 0..m {
                        for j in 0..n {
                            let z = zp_at(&zb, j);
                            let want =
                                (0..k).fold(bias[j], |s, p| s + (a[i * k + p] as i32 - za) * (b[j * k + p] as i32 - z));
                            assert_eq!(got[i * n + j], want, "m={m} k={k} n={n} at ({i}, {j})");
                        }
                    }
                    // The fused requantizing GEMM, in both arithmetics, equals the scalar
                    // requantization of the plain sums.
                    let packed = PackedB::new(&b, &zb, n, k).unwrap();
                    let out = OutputQuant::new(0.05, (next() % 21) as i32 - 10, Activation::Relu6).unwrap();
                    let scales: Vec<f32> = (0..n).map(|j| 0.002 * (1.0 + j as f32 * 0.37)).collect();
                    for rq in [
                        Requant::new("t", 0.1, &scales, &out).unwrap(),
                        Requant::tflite("t", 0.1, &scales, &out, false).unwrap(),
                    ] {
                        let fused = gemm_i8_requant_packed(&a, za, &packed, Some(&bias), &rq, m).unwrap();
                        let want: Vec<i8> = got.iter().enumerate().map(|(x, &acc)| rq.apply(acc, x % n)).collect();
                        assert_eq!(fused, want, "m={m} k={k} n={n} fixed={}", rq.fixed.is_some());
                    }
                }
            }
        }
    }

    /// Requantizing rows (SIMD in wasm builds) equals the scalar spec value by value: ties,
    /// accumulators past 2^24, saturation at both ends, fused ReLU6 bounds, channel counts on
    /// and off the 16-lane step.
    #[test]
    fn requantizing_rows_equals_the_scalar_spec() {
        use crate::quant::requantize;
        for &c in &[1usize, 5, 16, 19, 32] {
            for act in [Activation::None, Activation::Relu6] {
                let scales: Vec<f32> = (0..c).map(|j| 0.002 + 0.0007 * j as f32).collect();
                let rq = Requant::new("t", 0.5, &scales, &OutputQuant::new(0.25, -7, act).unwrap()).unwrap();
                let mut acc: Vec<i32> = (0..c * 9).map(|i| (i as i32 - 40) * 97).collect();
                acc.extend([i32::MAX, i32::MIN, 1 << 25, -(1 << 25) - 3, 0, 125, 375, -125]);
                acc.resize(acc.len().div_ceil(c) * c, 1);
                let got = requantize_channels_last(&acc, c, &rq).unwrap();
                for (i, (&g, &a)) in got.iter().zip(&acc).enumerate() {
                    let want = requantize(a, rq.multipliers[i % c], rq.zero_point, rq.lo, rq.hi) as i8;
                    assert_eq!(g, want, "c={c} {act:?} acc={a}");
                }
            }
        }
    }

    #[test]
    fn int8_by_float_dot_sums_in_its_documented_order() {
        for k in [0usize, 1, 7, 8, 9, 17, 1280] {
            let w: Vec<i8> = (0..k).map(|i| ((i * 37) % 255) as u8 as i8).collect();
            let x: Vec<f32> = (0..k).map(|i| ((i * 11 % 23) as f32 - 11.0) * 0.137).collect();
            let z = 3;
            let t = |p: usize| (w[p] as i32 - z) as f32 * x[p];
            let full = k / 8 * 8;
            let mut lanes = [0f32; 8];
            for p in 0..full {
                lanes[p % 8] += t(p);
            }
            let l = lanes;
            let mut want = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
            for p in full..k {
                want += t(p);
            }
            let got = dot_i8_f32(&w, z, &x);
            assert_eq!(got.to_bits(), want.to_bits(), "k={k}");
            let exact: f64 = (0..k).map(|p| (w[p] as i32 - z) as f64 * x[p] as f64).sum();
            assert!((got as f64 - exact).abs() <= 1e-4 * (1.0 + exact.abs()), "k={k}: {got} vs {exact}");
        }
    }

    /// Rows at a time (groups of four and a remainder) give each row's [`dot_i8_f32`] bits.
    #[test]
    fn int8_by_float_rows_equal_one_dot_per_row() {
        for (n, k) in [(1usize, 9usize), (3, 8), (4, 17), (7, 1280), (9, 0)] {
            let w: Vec<i8> = (0..n * k).map(|i| ((i * 53) % 255) as u8 as i8).collect();
            let zw: Vec<i32> = (0..n).map(|r| r as i32 * 7 - 9).collect();
            let x: Vec<f32> = (0..k).map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.071).collect();
            let mut got = vec![f32::NAN; n];
            dot_i8_f32_rows(&w, &zw, &x, &mut got).unwrap();
            for r in 0..n {
                let want = dot_i8_f32(&w[r * k..][..k], zw[r], &x);
                assert_eq!(got[r].to_bits(), want.to_bits(), "n={n} k={k} row {r}");
            }
        }
        assert!(dot_i8_f32_rows(&[0; 5], &[0, 0], &[0.0; 3], &mut [0.0; 2]).is_err());
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(gemm_i8_acc(&[0; 3], 0, &[0; 4], &[0], None, 2, 2, 2).is_err());
        assert!(matmul_f32(&[0.0; 4], &[0.0; 3], 2, 2, 2, BLayout::KN).is_err());
        assert!(check_int8_reduction("t", 40_000).is_err());
    }
}
