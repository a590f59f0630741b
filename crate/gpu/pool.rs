//! The integer half of global average pooling on the GPU (`shaders/global_sum_i8.wgsl`):
//! per-channel sums of `x - zx` over a packed NHWC activation, equal to
//! [`crate::exec::cpu_int8::global_sums_i8`]; the embedding is finished on the CPU by
//! [`crate::exec::cpu_int8::embedding_from_sums`].

use super::context::GpuContext;
use super::kernel::{bytes, compile, storage, Dispatch, LANES_WGSL};
use crate::base::error::{Error, Result};
use crate::ops::gemm::{check_int8_reduction, check_int8_zero_points};

const GLOBAL_SUM: &str = include_str!("../../shaders/global_sum_i8.wgsl");

/// A compiled global-sum pipeline.
pub struct GlobalSumI8 {
    pipeline: wgpu::ComputePipeline,
}

impl GlobalSumI8 {
    pub async fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(GlobalSumI8 { pipeline: compile(ctx, "global_sum_i8", &format!("{LANES_WGSL}\n{GLOBAL_SUM}")).await? })
    }

    /// Sums of `x - zx` over H and W of the packed NHWC buffer `x` (shape `shape`) into a
    /// new `[N, C]` i32 buffer (the dispatch's output).
    pub fn dispatch(
        &self,
        ctx: &GpuContext,
        label: &str,
        x: &wgpu::Buffer,
        shape: [usize; 4],
        zx: i32,
    ) -> Result<Dispatch> {
        const OP: &str = "global_sum_i8 (gpu)";
        let [n, h, w, c] = shape;
        if n * h * w * c == 0 {
            return Err(Error::shape(OP, format!("empty shape {shape:?}")));
        }
        check_int8_reduction(OP, h * w)?;
        check_int8_zero_points(OP, &[zx])?;
        let c4 = c.div_ceil(4);
        let params = [n as u32, (h * w) as u32, c as u32, c4 as u32, zx as u32, 0, 0, 0];
        let out = storage(ctx, label, n * c);
        Dispatch::new(ctx, label, &self.pipeline, &bytes(&params), &[x, &out], [c4.div_ceil(64) as u32, n as u32, 1])
    }

    /// The sums of host data `x` (NHWC, unpacked): `[N, C]` i32.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, ctx: &GpuContext, x: &[i8], shape: [usize; 4], zx: i32) -> Result<Vec<i32>> {
        use super::kernel::{block_on, pack_rows, run_and_read, storage_init};
        let [n, h, w, c] = shape;
        if x.len() != n * h * w * c || x.is_empty() {
            return Err(Error::shape("global_sum_i8 (gpu)", format!("{} values for shape {shape:?}", x.len())));
        }
        let input = storage_init(ctx, "global sum input", &bytes(&pack_rows(x, n * h * w, c)));
        let d = self.dispatch(ctx, "global_sum_i8", &input, shape, zx)?;
        Ok(block_on(run_and_read(ctx, &[&d], d.output(), n * c))?.into_iter().map(|v| v as i32).collect())
    }
}
