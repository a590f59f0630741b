//! int8 direct convolution with fused bias + per-channel requantization on the GPU
//! (`shaders/conv_i8_requant.wgsl`): the spec of [`crate::ops::conv::conv2d_i8`] for regular,
//! grouped and depthwise convolutions, any kernel size, stride and padding, no dilation (the
//! stem's 3x3 stride 2 and the depthwise 3x3/5x5 stride 1/2 of EfficientNet-Lite0; pointwise
//! convolutions are GEMMs). Activations cross as one int8 value per 32-bit word for now (the
//! plain form; packed activations come with the execution plan).

use super::context::GpuContext;
use super::kernel::{bytes, compile, run_once, REQUANT_WGSL};
use crate::error::{Error, Result};
use crate::ops::conv::{Conv2dParams, ConvGeometry};
use crate::ops::gemm::{check_int8_reduction, check_int8_zero_points};
use crate::quant::Requant;

const CONV: &str = include_str!("../../shaders/conv_i8_requant.wgsl");

/// A compiled convolution pipeline.
pub struct ConvI8 {
    pipeline: wgpu::ComputePipeline,
}

impl ConvI8 {
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(ConvI8 { pipeline: compile(ctx, "conv_i8_requant", &format!("{REQUANT_WGSL}\n{CONV}"))? })
    }

    /// `x` NHWC int8 with zero point `zx` (shape `x_shape`), `w` OHWI symmetric int8,
    /// `bias` int32 `[Cout]`; returns the NHWC int8 output and its shape.
    pub fn run(
        &self,
        ctx: &GpuContext,
        (x, x_shape, zx): (&[i8], &[usize], i32),
        (w, w_shape): (&[i8], &[usize]),
        bias: Option<&[i32]>,
        p: &Conv2dParams,
        rq: &Requant,
    ) -> Result<(Vec<i8>, [usize; 4])> {
        const OP: &str = "conv_i8 (gpu)";
        let g = ConvGeometry::new(OP, x_shape, w_shape, p)?;
        if p.dilation != [1, 1] {
            return Err(Error::invalid(OP, "dilation is not supported on the GPU"));
        }
        if x.len() != x_shape.iter().product::<usize>() || w.len() != w_shape.iter().product::<usize>() {
            return Err(Error::shape(OP, "data lengths do not match the shapes"));
        }
        if bias.is_some_and(|b| b.len() != g.out_c) || rq.multipliers.len() != g.out_c {
            return Err(Error::shape(OP, format!("bias and multipliers must have {} values", g.out_c)));
        }
        check_int8_reduction(OP, g.reduction_len())?;
        check_int8_zero_points(OP, &[zx, rq.zero_point])?;
        let [kh, kw] = g.kernel;
        let params: [u32; 24] = [
            g.batch as u32,
            g.in_h as u32,
            g.in_w as u32,
            g.in_c as u32,
            g.out_c as u32,
            g.in_c_group as u32,
            g.out_c_group as u32,
            g.out_h as u32,
            g.out_w as u32,
            kh as u32,
            kw as u32,
            g.stride[0] as u32,
            g.stride[1] as u32,
            g.pad_top as u32,
            g.pad_left as u32,
            zx as u32,
            rq.zero_point as u32,
            rq.lo as u32,
            rq.hi as u32,
            0,
            0,
            0,
            0,
            0,
        ];
        let widen = |v: &[i8]| v.iter().map(|&q| q as i32).collect::<Vec<i32>>();
        let zeros = vec![0i32; g.out_c];
        let shape = g.out_shape();
        let out = run_once(
            ctx,
            &self.pipeline,
            OP,
            &bytes(&params),
            &[&bytes(&widen(x)), &bytes(&widen(w)), &bytes(bias.unwrap_or(&zeros)), &bytes(&rq.multipliers)],
            shape.iter().product(),
            [g.out_c.div_ceil(64) as u32, g.out_w as u32, (g.batch * g.out_h) as u32],
        )?;
        Ok((out.into_iter().map(|v| v as i8).collect(), shape))
    }
}
