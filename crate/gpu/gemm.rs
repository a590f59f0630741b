//! int8 GEMM with fused bias + per-channel requantization on the GPU
//! (`shaders/gemm_i8_requant.wgsl`), in two variants of the 4-lane dot product:
//! `dot4I8Packed` (WGSL `packed_4x8_integer_dot_product`) and unpacked sign extension.
//!
//! `out[m, n] = requantize(bias[n] + sum_k (A[m, k] - za) * B[n, k], mult[n], zp, lo, hi)`,
//! A `[M, K]` int8 activations (per-tensor zero point `za`), B `[N, K]` int8 weights
//! (symmetric per channel), the same spec as [`crate::ops::gemm::gemm_i8_acc`] followed by
//! [`crate::quant::requantize`]. Operands are packed 4 x i8 per u32 (byte 0 = lowest k),
//! K zero-padded to a multiple of 4; the input zero point is folded into the bias at prepare
//! time: `bias_eff[n] = bias[n] - za * sum_k B[n, k]` (wrapping i32, exact whenever the CPU's
//! accumulator is, see [`crate::ops::gemm::MAX_INT8_REDUCTION`]).
//!
//! This is the plain kernel (one invocation per output, no tiling): it fixes the numerics
//! and the plumbing; tiling and the rest of the network's kernels come next.

use super::context::GpuContext;
use super::kernel::{bytes, compile, run_once, REQUANT_WGSL};
use crate::error::{Error, Result};
use crate::ops::gemm::{check_int8_reduction, check_int8_zero_points};
use crate::quant::Requant;

/// Which 4-lane int8 dot product the kernel uses.
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
}

const GEMM: &str = include_str!("../../shaders/gemm_i8_requant.wgsl");
const DOT_PACKED: &str = include_str!("../../shaders/dot4_i8_packed.wgsl");
const DOT_UNPACKED: &str = include_str!("../../shaders/dot4_i8_unpacked.wgsl");

/// The WGSL source of one variant (the `requires` directive must come first).
pub fn shader_source(variant: DotVariant) -> String {
    let dot = match variant {
        DotVariant::Packed => DOT_PACKED,
        DotVariant::Unpacked => DOT_UNPACKED,
    };
    format!("{dot}\n{REQUANT_WGSL}\n{GEMM}")
}

/// A compiled GEMM pipeline.
pub struct GemmI8 {
    pub variant: DotVariant,
    pipeline: wgpu::ComputePipeline,
}

/// Packs rows of `k` int8 values into `ceil(k / 4)` u32 words each, zero-padded.
pub fn pack_rows(v: &[i8], rows: usize, k: usize) -> Vec<u32> {
    let k4 = k.div_ceil(4);
    let mut out = vec![0u32; rows * k4];
    for r in 0..rows {
        for (i, &x) in v[r * k..(r + 1) * k].iter().enumerate() {
            out[r * k4 + i / 4] |= (x as u8 as u32) << (8 * (i % 4));
        }
    }
    out
}

impl GemmI8 {
    /// Compiles the kernel; a variant the device cannot compile is an error, not a panic.
    pub fn new(ctx: &GpuContext, variant: DotVariant) -> Result<Self> {
        if variant == DotVariant::Packed && !ctx.report.packed_int8_dot {
            return Err(Error::Gpu(format!("{} has no packed_4x8_integer_dot_product", ctx.report.describe())));
        }
        let pipeline = compile(ctx, &format!("gemm_i8_requant ({})", variant.name()), &shader_source(variant))?;
        Ok(GemmI8 { variant, pipeline })
    }

    /// Runs `requantize(A · Bᵀ + bias)` (the CPU's [`Requant`] for the output) and returns
    /// `[m, n]` int8 values.
    pub fn run(
        &self,
        ctx: &GpuContext,
        (a, za): (&[i8], i32),
        b: &[i8],
        bias: Option<&[i32]>,
        rq: &Requant,
        (m, k, n): (usize, usize, usize),
    ) -> Result<Vec<i8>> {
        const OP: &str = "gemm_i8 (gpu)";
        if m == 0 || n == 0 || k == 0 || a.len() != m * k || b.len() != n * k {
            return Err(Error::shape(OP, format!("A {} / B {} values for m {m}, k {k}, n {n}", a.len(), b.len())));
        }
        if bias.is_some_and(|v| v.len() != n) || rq.multipliers.len() != n {
            return Err(Error::shape(OP, format!("bias and multipliers must have {n} values")));
        }
        check_int8_reduction(OP, k)?;
        check_int8_zero_points(OP, &[za, rq.zero_point])?;
        let k4 = k.div_ceil(4);
        let bias_eff: Vec<i32> = (0..n)
            .map(|c| {
                let rowsum: i32 = b[c * k..(c + 1) * k].iter().map(|&v| v as i32).sum();
                bias.map_or(0, |v| v[c]).wrapping_sub(za.wrapping_mul(rowsum))
            })
            .collect();
        let params = [m as u32, n as u32, k4 as u32, rq.zero_point as u32, rq.lo as u32, rq.hi as u32, 0, 0];
        let out = run_once(
            ctx,
            &self.pipeline,
            OP,
            &bytes(&params),
            &[&bytes(&pack_rows(a, m, k)), &bytes(&pack_rows(b, n, k)), &bytes(&bias_eff), &bytes(&rq.multipliers)],
            m * n,
            [n.div_ceil(8) as u32, m.div_ceil(8) as u32, 1],
        )?;
        Ok(out.into_iter().map(|v| v as i8).collect())
    }
}
