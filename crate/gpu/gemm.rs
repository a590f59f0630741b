//! int8 GEMM with fused bias + per-channel requantization on the GPU
//! (`shaders/gemm_i8_requant.wgsl`), in two variants of the 4-lane dot product:
//! `dot4I8Packed` (WGSL `packed_4x8_integer_dot_product`) and unpacked sign extension.
//!
//! `out[m, n] = requantize(bias[n] + sum_k (A[m, k] - za) * B[n, k], mult[n], zp, lo, hi)`,
//! A `[M, K]` int8 activations (per-tensor zero point `za`), B `[N, K]` int8 weights
//! (symmetric per channel), the same spec as [`crate::ops::gemm::gemm_i8_acc`] followed by
//! [`crate::quant::requantize`]. A and the output are packed activations (`[M, ceil(K/4)]`
//! and `[M, ceil(N/4)]` words); the input zero point is folded into the bias at prepare time:
//! `bias_eff[n] = bias[n] - za * sum_k B[n, k]` (wrapping i32, exact whenever the CPU's
//! accumulator is, see [`crate::ops::gemm::MAX_INT8_REDUCTION`]). Each invocation computes a
//! 4 x 4 register tile (4 rows, one output word).

use super::context::GpuContext;
use super::kernel::{
    bias_and_zero_points, bytes, check_zero_points, compile, pack_rows, padded, storage, storage_init,
    zero_points_wgsl, Dispatch, RequantKind,
};
use crate::base::error::{Error, Result};
use crate::ops::gemm::{check_int8_reduction, check_int8_zero_points};
use crate::quant::Requant;

/// Which 4-lane int8 dot product the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DotVariant {
    /// WGSL `dot4I8Packed` (needs `packed_4x8_integer_dot_product`).
    Packed,
    /// Byte extraction with sign extension (any WGSL implementation).
    Unpacked,
}

impl DotVariant {
    pub fn name(self) -> &'static str {
        match self {
            DotVariant::Packed => "dot4I8Packed",
            DotVariant::Unpacked => "unpacked",
        }
    }

    /// The WGSL `dot4` function of this variant (a `requires` directive, if any, first).
    pub fn wgsl(self) -> &'static str {
        match self {
            DotVariant::Packed => include_str!("../../shaders/dot4_i8_packed.wgsl"),
            DotVariant::Unpacked => include_str!("../../shaders/dot4_i8_unpacked.wgsl"),
        }
    }

    /// Fails when `ctx`'s device cannot compile this variant.
    pub fn check(self, ctx: &GpuContext) -> Result<()> {
        if self == DotVariant::Packed && !ctx.report.packed_int8_dot {
            return Err(Error::Gpu(format!("{} has no packed_4x8_integer_dot_product", ctx.report.describe())));
        }
        Ok(())
    }
}

const GEMM: &str = include_str!("../../shaders/gemm_i8_requant.wgsl");

/// The full WGSL source of the GEMM in one variant and requantization, with or without
/// weight zero points.
pub fn shader_source(variant: DotVariant, kind: RequantKind, zero_points: bool) -> String {
    // The variant's source comes first: it may hold a directive, which precedes declarations.
    format!("{}\n{}{}\n{GEMM}", variant.wgsl(), zero_points_wgsl(zero_points), kind.wgsl())
}

/// A compiled GEMM pipeline.
pub struct GemmI8 {
    pub variant: DotVariant,
    pub kind: RequantKind,
    zero_points: bool,
    pipeline: wgpu::ComputePipeline,
}

/// The constants of one GEMM layer: weights `[N, K]`, their zero points when asymmetric,
/// optional bias, requantization.
pub struct GemmLayer<'a> {
    pub weights: &'a [i8],
    pub weight_zero_points: Option<&'a [i32]>,
    pub bias: Option<&'a [i32]>,
    pub requant: &'a Requant,
}

impl GemmI8 {
    /// Compiles the kernel; a variant the device cannot compile is an error, not a panic.
    pub async fn new(ctx: &GpuContext, variant: DotVariant, kind: RequantKind, zero_points: bool) -> Result<Self> {
        variant.check(ctx)?;
        let label = format!("gemm_i8_requant ({}, {})", variant.name(), kind.name());
        let pipeline = compile(ctx, &label, &shader_source(variant, kind, zero_points)).await?;
        Ok(GemmI8 { variant, kind, zero_points, pipeline })
    }

    /// Prepares `requantize(A · Bᵀ + bias)` over the packed activation buffer `a` (`[m, k]`,
    /// zero point `za`): uploads the layer's constants and allocates the packed `[m, n]`
    /// output (the dispatch's [`Dispatch::output`]).
    pub fn dispatch(
        &self,
        ctx: &GpuContext,
        label: &str,
        (a, za): (&wgpu::Buffer, i32),
        layer: &GemmLayer,
        (m, k, n): (usize, usize, usize),
    ) -> Result<Dispatch> {
        const OP: &str = "gemm_i8 (gpu)";
        let GemmLayer { weights: b, weight_zero_points: zw, bias, requant: rq } = *layer;
        if m == 0 || n == 0 || k == 0 || b.len() != n * k {
            return Err(Error::shape(OP, format!("B has {} values for m {m}, k {k}, n {n}", b.len())));
        }
        if bias.is_some_and(|v| v.len() != n) || zw.is_some_and(|v| v.len() != n) || rq.multipliers.len() != n {
            return Err(Error::shape(OP, format!("bias and multipliers must have {n} values")));
        }
        check_int8_reduction(OP, k)?;
        check_int8_zero_points(OP, &[za, rq.zero_point])?;
        check_zero_points(zw, self.zero_points)?;
        let (k4, n4) = (k.div_ceil(4), n.div_ceil(4));
        // sum (a - za)(b - zw) = sum a b - za sum b - zw sum a + zw * K * za; the kernel
        // computes sum a b (and sum a when zw is given), the rest is folded here.
        let bias_eff: Vec<i32> = (0..n)
            .map(|c| {
                let rowsum: i32 = b[c * k..(c + 1) * k].iter().map(|&v| v as i32).sum();
                let zwk = zw.map_or(0, |z| z[c]).wrapping_mul(k as i32).wrapping_mul(za);
                bias.map_or(0, |v| v[c]).wrapping_sub(za.wrapping_mul(rowsum)).wrapping_add(zwk)
            })
            .collect();
        let params = [m as u32, n4 as u32, k4 as u32, rq.zero_point as u32, rq.lo as u32, rq.hi as u32, 0, 0];
        let weights = storage_init(ctx, label, &bytes(&pack_rows(&padded(b, n4 * 4 * k, 0), n4 * 4, k)));
        let bias = storage_init(ctx, label, &bytes(&bias_and_zero_points(&bias_eff, zw, n4)));
        let mult = storage_init(ctx, label, &self.kind.channel_mults(rq, n4)?);
        let out = storage(ctx, label, m * n4);
        Dispatch::new(
            ctx,
            label,
            &self.pipeline,
            &bytes(&params),
            &[a, &weights, &bias, &mult, &out],
            [n4.div_ceil(8) as u32, m.div_ceil(32) as u32, 1],
        )
    }

    /// Runs `requantize(A · Bᵀ + bias)` once on host data and returns the `[m, n]` int8 output.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(
        &self,
        ctx: &GpuContext,
        (a, za): (&[i8], i32),
        layer: &GemmLayer,
        (m, k, n): (usize, usize, usize),
    ) -> Result<Vec<i8>> {
        if a.len() != m * k {
            return Err(Error::shape("gemm_i8 (gpu)", format!("A has {} values for m {m}, k {k}", a.len())));
        }
        let input = storage_init(ctx, "gemm input", &bytes(&pack_rows(a, m, k)));
        let d = self.dispatch(ctx, "gemm_i8", (&input, za), layer, (m, k, n))?;
        let words = super::kernel::block_on(super::kernel::run_and_read(ctx, &[&d], d.output(), m * n.div_ceil(4)))?;
        Ok(super::kernel::unpack_rows(&words, m, n))
    }
}
