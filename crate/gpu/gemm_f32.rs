//! f32 GEMM on the GPU (`shaders/gemm_f32.wgsl`): `out = A · Bᵀ + bias`, A `[M, K]`,
//! B `[N, K]`, the same register tile and loads per step as the int8 GEMM. It is the float
//! baseline `edgetune bench` measures the int8 kernels against; results match
//! [`crate::ops::gemm`]'s f32 GEMM up to summation-order rounding.

use super::context::GpuContext;
use super::kernel::{bytes, compile, padded, storage, storage_init, Dispatch};
use crate::base::error::{Error, Result};

const GEMM_F32: &str = include_str!("../../shaders/gemm_f32.wgsl");

/// A compiled f32 GEMM pipeline.
pub struct GemmF32 {
    pipeline: wgpu::ComputePipeline,
}

/// Rows of `k` floats padded to `k4 * 4` (zeros), `rows_out` rows (extra rows zero).
fn pad_rows(v: &[f32], rows: usize, k: usize, rows_out: usize) -> Vec<f32> {
    let k4 = k.div_ceil(4) * 4;
    let mut out = vec![0f32; rows_out * k4];
    for r in 0..rows {
        out[r * k4..r * k4 + k].copy_from_slice(&v[r * k..(r + 1) * k]);
    }
    out
}

impl GemmF32 {
    pub async fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(GemmF32 { pipeline: compile(ctx, "gemm_f32", GEMM_F32).await? })
    }

    /// Uploads A, B and the bias and prepares the dispatch (output `[M, ceil(N/4) * 4]`).
    pub fn dispatch(
        &self,
        ctx: &GpuContext,
        a: &[f32],
        b: &[f32],
        bias: &[f32],
        (m, k, n): (usize, usize, usize),
    ) -> Result<Dispatch> {
        if m * k * n == 0 || a.len() != m * k || b.len() != n * k || bias.len() != n {
            return Err(Error::shape(
                "gemm_f32 (gpu)",
                format!("A {} / B {} / bias {} for m {m}, k {k}, n {n}", a.len(), b.len(), bias.len()),
            ));
        }
        let (k4, n4) = (k.div_ceil(4), n.div_ceil(4));
        let ab = storage_init(ctx, "gemm_f32 a", &bytes(&pad_rows(a, m, k, m)));
        let bb = storage_init(ctx, "gemm_f32 b", &bytes(&pad_rows(b, n, k, n4 * 4)));
        let biasb = storage_init(ctx, "gemm_f32 bias", &bytes(&padded(bias, n4 * 4, 0.0)));
        let out = storage(ctx, "gemm_f32 out", m * n4 * 4);
        let params = [m as u32, n4 as u32, k4 as u32, 0];
        Dispatch::new(
            ctx,
            "gemm_f32",
            &self.pipeline,
            &bytes(&params),
            &[&ab, &bb, &biasb, &out],
            [n4.div_ceil(8) as u32, m.div_ceil(32) as u32, 1],
        )
    }

    /// Runs once and returns `[m, n]`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(
        &self,
        ctx: &GpuContext,
        a: &[f32],
        b: &[f32],
        bias: &[f32],
        (m, k, n): (usize, usize, usize),
    ) -> Result<Vec<f32>> {
        let d = self.dispatch(ctx, a, b, bias, (m, k, n))?;
        let n4 = n.div_ceil(4) * 4;
        let words = super::kernel::block_on(super::kernel::run_and_read(ctx, &[&d], d.output(), m * n4))?;
        Ok((0..m * n).map(|i| f32::from_bits(words[(i / n) * n4 + i % n])).collect())
    }
}
