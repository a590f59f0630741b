//! The integer half of global average pooling on the GPU (`shaders/global_sum_i8.wgsl`):
//! per-channel sums of `x - zx`, equal to [`crate::model::int8::global_sums_i8`]; the
//! embedding is finished on the CPU by [`crate::model::int8::embedding_from_sums`].

use super::context::GpuContext;
use super::kernel::{bytes, compile, run_once};
use crate::error::{Error, Result};
use crate::ops::gemm::{check_int8_reduction, check_int8_zero_points};

const GLOBAL_SUM: &str = include_str!("../../shaders/global_sum_i8.wgsl");

/// A compiled global-sum pipeline.
pub struct GlobalSumI8 {
    pipeline: wgpu::ComputePipeline,
}

impl GlobalSumI8 {
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(GlobalSumI8 { pipeline: compile(ctx, "global_sum_i8", GLOBAL_SUM)? })
    }

    /// Sums of `x - zx` over H and W for NHWC `x` of shape `shape`: `[N, C]` i32.
    pub fn run(&self, ctx: &GpuContext, x: &[i8], shape: [usize; 4], zx: i32) -> Result<Vec<i32>> {
        const OP: &str = "global_sum_i8 (gpu)";
        let [n, h, w, c] = shape;
        if x.len() != n * h * w * c || x.is_empty() {
            return Err(Error::shape(OP, format!("{} values for shape {shape:?}", x.len())));
        }
        check_int8_reduction(OP, h * w)?;
        check_int8_zero_points(OP, &[zx])?;
        let params = [n as u32, (h * w) as u32, c as u32, zx as u32];
        let wide: Vec<i32> = x.iter().map(|&q| q as i32).collect();
        run_once(
            ctx,
            &self.pipeline,
            OP,
            &bytes(&params),
            &[&bytes(&wide)],
            n * c,
            [c.div_ceil(64) as u32, n as u32, 1],
        )
    }
}
