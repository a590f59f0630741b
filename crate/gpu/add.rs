//! int8 residual addition on the GPU (`shaders/add_i8_requant.wgsl`): the spec of
//! [`crate::ops::add::add_i8`] / [`crate::quant::AddRequant`], both inputs rescaled to the
//! output scale with one rounding. Values cross as one int8 per 32-bit word (plain form).

use super::context::GpuContext;
use super::kernel::{bytes, compile, run_once};
use crate::error::{Error, Result};
use crate::quant::AddRequant;

const ADD: &str = include_str!("../../shaders/add_i8_requant.wgsl");

/// Workgroups along x are limited to 65,535 by WebGPU: 256 values each.
const MAX_LEN: usize = 65_535 * 256;

/// A compiled int8-add pipeline.
pub struct AddI8 {
    pipeline: wgpu::ComputePipeline,
}

impl AddI8 {
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(AddI8 { pipeline: compile(ctx, "add_i8_requant", ADD)? })
    }

    /// `a + b` element-wise, requantized by `rq`.
    pub fn run(&self, ctx: &GpuContext, a: &[i8], b: &[i8], rq: &AddRequant) -> Result<Vec<i8>> {
        const OP: &str = "add_i8 (gpu)";
        if a.len() != b.len() || a.is_empty() || a.len() > MAX_LEN {
            return Err(Error::shape(
                OP,
                format!("inputs of {} and {} values (1..={MAX_LEN}, equal)", a.len(), b.len()),
            ));
        }
        let ints = [a.len() as u32, rq.zero_point_a as u32, rq.zero_point_b as u32, rq.zero_point as u32];
        let mut params = bytes(&ints);
        params.extend(bytes(&[rq.multiplier_a, rq.multiplier_b]));
        params.extend(bytes(&[rq.lo, rq.hi]));
        let widen = |v: &[i8]| v.iter().map(|&q| q as i32).collect::<Vec<i32>>();
        let out = run_once(
            ctx,
            &self.pipeline,
            OP,
            &params,
            &[&bytes(&widen(a)), &bytes(&widen(b))],
            a.len(),
            [a.len().div_ceil(256) as u32, 1, 1],
        )?;
        Ok(out.into_iter().map(|v| v as i8).collect())
    }
}
