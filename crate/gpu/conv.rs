//! int8 convolution with fused bias + per-channel requantization on the GPU: the spec of
//! [`crate::ops::conv::conv2d_i8`] on packed NHWC activations (`[N, H, W, ceil(C/4)]` words),
//! routed by shape:
//! - pointwise (1x1, stride 1, no padding, one group): the GEMM `[N*H*W, Cin] · [Cout, Cin]ᵀ`
//!   ([`super::gemm`]);
//! - one group, any kernel (the stem's 3x3 stride 2): `shaders/conv_i8_requant.wgsl`, `dot4`
//!   over input words with the input zero point folded into the bias;
//! - depthwise (groups = Cin = Cout): [`super::depthwise::DepthwiseI8`]
//!   (`shaders/depthwise_i8_requant.wgsl`), lane-wise.
//!
//! Other grouped convolutions and dilation are [`Error::Unsupported`]: the CPU runs them
//! (EfficientNet-Lite0 and MobileNetV2 need none).

use super::context::GpuContext;
use super::depthwise::DepthwiseI8;
use super::gemm::{DotVariant, GemmI8, GemmLayer};
pub use super::kernel::ConvLayer;
use super::kernel::{
    bias_and_zero_points, check_zero_points, compile, pack_rows, padded, window_dispatch, zero_points_wgsl, Dispatch,
    RequantKind,
};
#[cfg(not(target_arch = "wasm32"))]
use super::kernel::{bytes, storage_init};
use crate::base::error::{Error, Result};
use crate::ops::conv::ConvGeometry;
use crate::ops::gemm::{check_int8_reduction, check_int8_zero_points};

const CONV: &str = include_str!("../../shaders/conv_i8_requant.wgsl");

/// The compiled convolution pipelines (GEMM, one-group direct, depthwise).
pub struct ConvI8 {
    pub gemm: GemmI8,
    regular: wgpu::ComputePipeline,
    depthwise: DepthwiseI8,
    pub kind: RequantKind,
    zero_points: bool,
}

impl ConvI8 {
    /// The pipelines in `variant`, requantizing as `kind` (the model's arithmetic);
    /// `zero_points`: taking asymmetric weights (only models that have them need it).
    pub async fn new(ctx: &GpuContext, variant: DotVariant, kind: RequantKind, zero_points: bool) -> Result<Self> {
        let gemm = GemmI8::new(ctx, variant, kind, zero_points).await?;
        let regular = compile(
            ctx,
            &format!("conv_i8_requant ({}, {})", variant.name(), kind.name()),
            &format!("{}\n{}{}\n{CONV}", variant.wgsl(), zero_points_wgsl(zero_points), kind.wgsl()),
        )
        .await?;
        let depthwise = DepthwiseI8::new(ctx, kind, zero_points).await?;
        Ok(ConvI8 { gemm, regular, depthwise, kind, zero_points })
    }

    /// Validates the layer against the input shape; returns its geometry.
    pub fn geometry(x_shape: &[usize], zx: i32, layer: &ConvLayer) -> Result<ConvGeometry> {
        const OP: &str = "conv_i8 (gpu)";
        let p = layer.params;
        let g = ConvGeometry::new(OP, x_shape, layer.weight_shape, p)?;
        if p.dilation != [1, 1] {
            return Err(Error::unsupported("dilated convolution on the GPU"));
        }
        if !(g.groups == 1 || (g.in_c_group == 1 && g.out_c == g.in_c)) {
            return Err(Error::unsupported(format!(
                "grouped convolution ({} groups of {} channels) on the GPU",
                g.groups, g.in_c_group
            )));
        }
        if layer.weights.len() != layer.weight_shape.iter().product::<usize>() {
            return Err(Error::shape(OP, "weight data does not match its shape"));
        }
        if layer.bias.is_some_and(|b| b.len() != g.out_c)
            || layer.weight_zero_points.is_some_and(|z| z.len() != g.out_c)
            || layer.requant.multipliers.len() != g.out_c
        {
            return Err(Error::shape(OP, format!("bias and multipliers must have {} values", g.out_c)));
        }
        check_int8_reduction(OP, g.reduction_len())?;
        check_int8_zero_points(OP, &[zx, layer.requant.zero_point])?;
        Ok(g)
    }

    /// Prepares the convolution of the packed NHWC buffer `x` (shape `x_shape`, zero point
    /// `zx`): uploads the constants, allocates the packed output; returns the dispatch and
    /// the output shape.
    pub fn dispatch(
        &self,
        ctx: &GpuContext,
        label: &str,
        (x, x_shape, zx): (&wgpu::Buffer, &[usize], i32),
        layer: &ConvLayer,
    ) -> Result<(Dispatch, [usize; 4])> {
        let g = Self::geometry(x_shape, zx, layer)?;
        let rq = layer.requant;
        if g.is_pointwise() {
            let gemm = GemmLayer {
                weights: layer.weights,
                weight_zero_points: layer.weight_zero_points,
                bias: layer.bias,
                requant: rq,
            };
            let m = g.batch * g.in_h * g.in_w;
            return Ok((self.gemm.dispatch(ctx, label, (x, zx), &gemm, (m, g.in_c, g.out_c))?, g.out_shape()));
        }
        if g.groups != 1 {
            return Ok((self.depthwise.dispatch(ctx, label, (x, zx), &g, layer)?, g.out_shape()));
        }
        check_zero_points(layer.weight_zero_points, self.zero_points)?;
        // OHWI rows of KH * KW taps, each tap's Cin packed into words; rows padded to whole
        // output words. The input zero point is folded into the bias.
        let taps = g.kernel[0] * g.kernel[1];
        let c4 = g.out_c.div_ceil(4);
        let cin4 = g.in_c.div_ceil(4);
        let w = padded(layer.weights, c4 * 4 * taps * g.in_c, 0);
        let zeros = vec![0i32; g.out_c];
        let bias = layer.bias.unwrap_or(&zeros);
        // sum (x - zx)(w - zw) = sum x w - zx sum w - zw sum x + zw * taps * Cin * zx; the
        // kernel computes sum x w (and sum x when zw is given), the rest is folded here.
        let zw = |oc: usize| layer.weight_zero_points.map_or(0, |z| z[oc]);
        let bias_eff: Vec<i32> = (0..g.out_c)
            .map(|oc| {
                let row = &layer.weights[oc * taps * g.in_c..(oc + 1) * taps * g.in_c];
                let sum: i32 = row.iter().map(|&v| v as i32).sum();
                let window = (taps * g.in_c) as i32;
                bias[oc].wrapping_sub(zx.wrapping_mul(sum)).wrapping_add(zw(oc).wrapping_mul(window).wrapping_mul(zx))
            })
            .collect();
        let zx_word = u32::from_le_bytes([zx as i8 as u8; 4]);
        let head = [g.batch, g.in_h, g.in_w, cin4, c4].map(|d| d as u32);
        let words = pack_rows(&w, c4 * 4 * taps, g.in_c);
        let grid = [c4.div_ceil(8) as u32, g.out_w.div_ceil(8) as u32, (g.batch * g.out_h) as u32];
        let d = window_dispatch(
            ctx,
            label,
            &self.regular,
            (x, &g, zx_word),
            (&head, &words, &bias_and_zero_points(&bias_eff, layer.weight_zero_points, c4)),
            (rq, self.kind),
            grid,
        )?;
        Ok((d, g.out_shape()))
    }

    /// Runs the convolution once on host data (NHWC `x`); returns the NHWC int8 output and
    /// its shape.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(
        &self,
        ctx: &GpuContext,
        (x, x_shape, zx): (&[i8], &[usize], i32),
        layer: &ConvLayer,
    ) -> Result<(Vec<i8>, [usize; 4])> {
        let c = *x_shape.last().unwrap_or(&0);
        if x.len() != x_shape.iter().product::<usize>() || c == 0 {
            return Err(Error::shape("conv_i8 (gpu)", "input data does not match its shape"));
        }
        let input = storage_init(ctx, "conv input", &bytes(&pack_rows(x, x.len() / c, c)));
        let (d, shape) = self.dispatch(ctx, "conv_i8", (&input, x_shape, zx), layer)?;
        let pixels = shape[0] * shape[1] * shape[2];
        let words = super::kernel::block_on(super::kernel::run_and_read(
            ctx,
            &[&d],
            d.output(),
            pixels * shape[3].div_ceil(4),
        ))?;
        Ok((super::kernel::unpack_rows(&words, pixels, shape[3]), shape))
    }
}
