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

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use crate::error::{Error, Result};
use crate::ops::gemm::{check_int8_reduction, check_int8_zero_points};

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

const REQUANT: &str = include_str!("../../shaders/requant.wgsl");
const GEMM: &str = include_str!("../../shaders/gemm_i8_requant.wgsl");
const DOT_PACKED: &str = include_str!("../../shaders/dot4_i8_packed.wgsl");
const DOT_UNPACKED: &str = include_str!("../../shaders/dot4_i8_unpacked.wgsl");

/// The WGSL source of one variant (the `requires` directive must come first).
pub fn shader_source(variant: DotVariant) -> String {
    let dot = match variant {
        DotVariant::Packed => DOT_PACKED,
        DotVariant::Unpacked => DOT_UNPACKED,
    };
    format!("{dot}\n{REQUANT}\n{GEMM}")
}

/// A compiled GEMM pipeline.
pub struct GemmI8 {
    pub variant: DotVariant,
    pipeline: wgpu::ComputePipeline,
}

/// Requantization of the GEMM's outputs: per-column multipliers, zero point and clamp bounds.
pub struct GemmOutput<'a> {
    pub multipliers: &'a [f32],
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
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
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("gemm_i8_requant"),
            source: wgpu::ShaderSource::Wgsl(shader_source(variant).into()),
        });
        let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("gemm_i8_requant"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("gemm_i8_requant ({}): {e}", variant.name())));
        }
        Ok(GemmI8 { variant, pipeline })
    }

    /// Runs `requantize(A · Bᵀ + bias)` and returns `[m, n]` int8 values.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        ctx: &GpuContext,
        a: &[i8],
        za: i32,
        b: &[i8],
        bias: Option<&[i32]>,
        out: &GemmOutput,
        (m, k, n): (usize, usize, usize),
    ) -> Result<Vec<i8>> {
        const OP: &str = "gemm_i8 (gpu)";
        if m == 0 || n == 0 || k == 0 || a.len() != m * k || b.len() != n * k {
            return Err(Error::shape(OP, format!("A {} / B {} values for m {m}, k {k}, n {n}", a.len(), b.len())));
        }
        if bias.is_some_and(|v| v.len() != n) || out.multipliers.len() != n {
            return Err(Error::shape(OP, format!("bias and multipliers must have {n} values")));
        }
        check_int8_reduction(OP, k)?;
        check_int8_zero_points(OP, &[za, out.zero_point])?;
        let k4 = k.div_ceil(4);
        let bias_eff: Vec<i32> = (0..n)
            .map(|c| {
                let rowsum: i32 = b[c * k..(c + 1) * k].iter().map(|&v| v as i32).sum();
                bias.map_or(0, |v| v[c]).wrapping_sub(za.wrapping_mul(rowsum))
            })
            .collect();
        let params: [u32; 8] =
            [m as u32, n as u32, k4 as u32, out.zero_point as u32, out.lo as u32, out.hi as u32, 0, 0];
        let dev = &ctx.device;
        let storage = |label: &str, bytes: &[u8]| {
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        let words = |v: &[u32]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
        let pa = words(&pack_rows(a, m, k));
        let pb = words(&pack_rows(b, n, k));
        let pbias: Vec<u8> = bias_eff.iter().flat_map(|v| v.to_le_bytes()).collect();
        let pmult: Vec<u8> = out.multipliers.iter().flat_map(|v| v.to_le_bytes()).collect();
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let uniform = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("gemm params"),
            contents: &words(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let (ba, bb, bbias, bmult) =
            (storage("A", &pa), storage("B", &pb), storage("bias", &pbias), storage("mult", &pmult));
        let out_bytes = (m * n * 4) as u64;
        let bout = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("out"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: out_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let entries: Vec<wgpu::BindGroupEntry> = [&uniform, &ba, &bb, &bbias, &bmult, &bout]
            .iter()
            .enumerate()
            .map(|(i, buf)| wgpu::BindGroupEntry { binding: i as u32, resource: buf.as_entire_binding() })
            .collect();
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("gemm"),
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gemm") });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("gemm"), timestamp_writes: None });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(n.div_ceil(8) as u32, m.div_ceil(8) as u32, 1);
        }
        enc.copy_buffer_to_buffer(&bout, 0, &readback, 0, out_bytes);
        ctx.queue.submit(Some(enc.finish()));
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("gemm_i8 dispatch: {e}")));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        readback.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        dev.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("device poll: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Gpu("readback never completed".into()))?
            .map_err(|e| Error::Gpu(format!("readback: {e}")))?;
        let view = readback.get_mapped_range(..).map_err(|e| Error::Gpu(format!("readback view: {e}")))?;
        let values: Vec<i8> =
            view.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i8).collect();
        drop(view);
        readback.unmap();
        Ok(values)
    }
}
