//! int8 residual addition on the GPU (`shaders/add_i8_requant.wgsl`): the spec of
//! [`crate::ops::add::add_i8`] / [`crate::quant::AddRequant`], both inputs rescaled to the
//! output scale with one rounding, four lanes of a packed word per invocation.

use super::context::GpuContext;
use super::kernel::{bytes, compile, storage, Dispatch, LANES_WGSL};
use crate::base::error::{Error, Result};
use crate::quant::AddRequant;

const ADD: &str = include_str!("../../shaders/add_i8_requant.wgsl");

/// A compiled int8-add pipeline.
pub struct AddI8 {
    pipeline: wgpu::ComputePipeline,
}

impl AddI8 {
    pub async fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(AddI8 { pipeline: compile(ctx, "add_i8_requant", &format!("{LANES_WGSL}\n{ADD}")).await? })
    }

    /// `a + b` over `words` packed words of each buffer, requantized by `rq`, into a new
    /// buffer (the dispatch's output).
    pub fn dispatch(
        &self,
        ctx: &GpuContext,
        label: &str,
        (a, b): (&wgpu::Buffer, &wgpu::Buffer),
        words: usize,
        rq: &AddRequant,
    ) -> Result<Dispatch> {
        if words == 0 {
            return Err(Error::shape("add_i8 (gpu)", "empty inputs"));
        }
        let ints = [words as u32, rq.zero_point_a as u32, rq.zero_point_b as u32, rq.zero_point as u32];
        let mut params = bytes(&ints);
        params.extend(bytes(&[rq.multiplier_a, rq.multiplier_b]));
        params.extend(bytes(&[rq.lo, rq.hi]));
        let out = storage(ctx, label, words);
        Dispatch::new(ctx, label, &self.pipeline, &params, &[a, b, &out], [words.div_ceil(256) as u32, 1, 1])
    }

    /// `a + b` element-wise on host data, requantized by `rq`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, ctx: &GpuContext, a: &[i8], b: &[i8], rq: &AddRequant) -> Result<Vec<i8>> {
        super::kernel::run_pair(ctx, "add_i8", (a, b), |inputs, words| self.dispatch(ctx, "add_i8", inputs, words, rq))
    }
}
