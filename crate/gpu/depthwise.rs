//! int8 depthwise convolution on the GPU (groups = Cin = Cout, any kernel, stride and
//! padding, no dilation): the host side of `shaders/depthwise_i8_requant.wgsl`, the spec of
//! [`crate::ops::depthwise::depthwise_i8_ref`] with the fused requantization of
//! [`crate::ops::depthwise::depthwise_i8_requant`], bit for bit.
//!
//! Weights go up once, when the network's plan is built, as `[KH, KW, C4]` words: the
//! filter of channel `c` in lane `c % 4` of word `c / 4` (padded channels zero). Each
//! invocation owns one word (4 channels) of 4 adjacent output pixels.

use super::context::GpuContext;
use super::kernel::{
    bias_and_zero_points, check_zero_points, compile, pack_rows, window_dispatch, zero_points_wgsl, ConvLayer,
    Dispatch, RequantKind,
};
use crate::base::error::Result;
use crate::ops::conv::ConvGeometry;

const DEPTHWISE_I8_REQUANT: &str = include_str!("../../shaders/depthwise_i8_requant.wgsl");

/// The compiled depthwise pipeline.
pub struct DepthwiseI8 {
    pipeline: wgpu::ComputePipeline,
    kind: RequantKind,
    zero_points: bool,
}

impl DepthwiseI8 {
    /// Requantizing as `kind`; `zero_points`: taking asymmetric weights.
    pub async fn new(ctx: &GpuContext, kind: RequantKind, zero_points: bool) -> Result<Self> {
        let label = format!("depthwise_i8_requant ({})", kind.name());
        let source = format!("{}{}\n{DEPTHWISE_I8_REQUANT}", zero_points_wgsl(zero_points), kind.wgsl());
        let pipeline = compile(ctx, &label, &source).await?;
        Ok(DepthwiseI8 { pipeline, kind, zero_points })
    }

    /// The dispatch of `layer` (geometry `g`, checked by [`super::conv::ConvI8::geometry`]) on
    /// the packed NHWC buffer `x` with zero point `zx`.
    pub fn dispatch(
        &self,
        ctx: &GpuContext,
        label: &str,
        (x, zx): (&wgpu::Buffer, i32),
        g: &ConvGeometry,
        layer: &ConvLayer,
    ) -> Result<Dispatch> {
        check_zero_points(layer.weight_zero_points, self.zero_points)?;
        let taps = g.kernel[0] * g.kernel[1];
        let c4 = g.out_c.div_ceil(4);
        // [C, KH, KW, 1] -> [KH, KW, C], then 4 channels per word.
        let hwc: Vec<i8> = (0..taps * g.out_c).map(|i| layer.weights[(i % g.out_c) * taps + i / g.out_c]).collect();
        let zeros = vec![0i32; g.out_c];
        let bias = layer.bias.unwrap_or(&zeros);
        let head = [g.batch, g.in_h, g.in_w, c4].map(|d| d as u32);
        let words = pack_rows(&hwc, taps, g.out_c);
        // 4 adjacent output pixels per invocation, 8 x 8 invocations per workgroup.
        let grid = [c4.div_ceil(8) as u32, g.out_w.div_ceil(32) as u32, (g.batch * g.out_h) as u32];
        window_dispatch(
            ctx,
            label,
            &self.pipeline,
            (x, g, zx as u32),
            (&head, &words, &bias_and_zero_points(bias, layer.weight_zero_points, c4)),
            (layer.requant, self.kind),
            grid,
        )
    }
}
