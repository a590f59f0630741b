//! What every kernel shares: compiling WGSL into a compute pipeline inside an error scope (a
//! bad shader is an [`Error::Gpu`], not a panic), buffers, a [`Dispatch`] (pipeline + bind
//! group + workgroup count, made once and encoded every frame), and the asynchronous readback
//! that works both natively (the device is polled) and in the browser (the map callback
//! resolves a future the page's event loop drives).
//!
//! Int8 tensors cross to the GPU packed 4 x i8 per u32 word along the last (channel) axis,
//! byte j = element 4w + j, rows zero-padded to a multiple of 4 ([`pack_rows`]).

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use crate::base::error::{Error, Result};
use crate::ops::conv::{Conv2dParams, ConvGeometry};
use crate::quant::Requant;

/// `const WEIGHT_ZERO_POINTS`: whether an int8 convolution kernel takes asymmetric weights
/// (zero points per output channel, as uint8 TFLite files have). Compiled in only for models
/// that have them, so the other models' kernels are exactly those without.
pub fn zero_points_wgsl(on: bool) -> String {
    format!("const WEIGHT_ZERO_POINTS: bool = {on};\n")
}

/// A layer with weight zero points for kernels compiled without them is an error, not wrong
/// numbers (kernels compiled with them take symmetric layers too: their zero points are 0).
pub fn check_zero_points(layer: Option<&[i32]>, compiled: bool) -> Result<()> {
    if layer.is_some() && !compiled {
        return Err(Error::invalid("gpu", "asymmetric weights for kernels compiled without weight zero points"));
    }
    Ok(())
}

/// The lane helpers for packed words (`lanes`, `pack_lanes`) every int8 kernel includes.
pub const LANES_WGSL: &str = include_str!("../../shaders/int8_lanes.wgsl");

/// The requantization an int8 kernel is compiled with, one per model (its arithmetic): the
/// engine's f32 multiplier (`shaders/requant.wgsl`, mirroring `quant::requantize`) or
/// TFLite's fixed point (`shaders/requant_fixed.wgsl`, mirroring `Requant::apply` with
/// `fixed` multipliers), whose last shift rounds ties away from zero or up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequantKind {
    Float,
    Fixed { half_up: bool },
}

impl RequantKind {
    /// The kind that reproduces `rq`.
    pub fn of(rq: &Requant) -> Self {
        match rq.fixed {
            None => RequantKind::Float,
            Some(_) => RequantKind::Fixed { half_up: rq.shift_half_up },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RequantKind::Float => "float",
            RequantKind::Fixed { half_up: false } => "fixed",
            RequantKind::Fixed { half_up: true } => "fixed, ties up",
        }
    }

    /// The WGSL an int8 kernel includes: this requantization (`ChannelMult`, `requantize4`)
    /// and the lane helpers.
    pub fn wgsl(self) -> String {
        match self {
            RequantKind::Float => format!("{}\n{LANES_WGSL}", include_str!("../../shaders/requant.wgsl")),
            RequantKind::Fixed { half_up } => format!(
                "const SHIFT_HALF_UP: bool = {half_up};\n{}\n{LANES_WGSL}",
                include_str!("../../shaders/requant_fixed.wgsl")
            ),
        }
    }

    /// The `mult` binding of `rq` for `c4` words of channels (padded channels zero): f32
    /// multipliers, or per word the four q31 then the four exponents. `rq` must be of this
    /// kind, and fixed exponents within what the shader handles (`[-31, 30]`).
    pub fn channel_mults(self, rq: &Requant, c4: usize) -> Result<Vec<u8>> {
        if RequantKind::of(rq) != self {
            return Err(Error::invalid(
                "gpu requantization",
                format!("a {} layer for kernels compiled with {}", RequantKind::of(rq).name(), self.name()),
            ));
        }
        let Some(fixed) = &rq.fixed else {
            return Ok(bytes(&padded(&rq.multipliers, c4 * 4, 0.0)));
        };
        let n = rq.multipliers.len();
        let at = |c: usize| if fixed.len() == 1 { Some(fixed[0]) } else { fixed.get(c).copied() };
        let mut words: Vec<i32> = Vec::with_capacity(c4 * 8);
        for w in 0..c4 {
            let four: Vec<crate::quant::requant::FixedMultiplier> = (4 * w..4 * w + 4)
                .map(|c| {
                    if c < n { at(c) } else { None }
                        .unwrap_or(crate::quant::requant::FixedMultiplier { q31: 0, exponent: 0 })
                })
                .collect();
            if let Some(f) = four.iter().find(|f| !(-31..=30).contains(&f.exponent)) {
                return Err(Error::unsupported(format!(
                    "a TFLite multiplier of exponent {} on the GPU (only -31 to 30)",
                    f.exponent
                )));
            }
            words.extend(four.iter().map(|f| f.q31));
            words.extend(four.iter().map(|f| f.exponent));
        }
        Ok(bytes(&words))
    }
}

/// Compiles `source` (entry point `main`) into a compute pipeline.
pub async fn compile(ctx: &GpuContext, label: &str, source: &str) -> Result<wgpu::ComputePipeline> {
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    match scope.pop().await {
        Some(e) => Err(Error::Gpu(format!("{label}: {e}"))),
        None => Ok(pipeline),
    }
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

/// The inverse of [`pack_rows`]: `rows x k` int8 values (padding dropped).
pub fn unpack_rows(words: &[u32], rows: usize, k: usize) -> Vec<i8> {
    let k4 = k.div_ceil(4);
    (0..rows * k)
        .map(|i| (words.get((i / k) * k4 + (i % k) / 4).copied().unwrap_or(0) >> (8 * (i % k % 4))) as i8)
        .collect()
}

/// `v` extended with `fill` to `len` values (per-channel constants padded to whole words).
pub fn padded<T: Copy>(v: &[T], len: usize, fill: T) -> Vec<T> {
    v.iter().copied().chain(std::iter::repeat(fill)).take(len.max(v.len())).collect()
}

/// Little-endian bytes of 32-bit values (what WGSL's u32/i32/f32 arrays hold).
pub fn bytes<T: Copy + Into<Word>>(v: &[T]) -> Vec<u8> {
    v.iter().flat_map(|&x| x.into().0.to_le_bytes()).collect()
}

/// A 32-bit word of any WGSL scalar type.
pub struct Word(u32);
impl From<u32> for Word {
    fn from(v: u32) -> Self {
        Word(v)
    }
}
impl From<i32> for Word {
    fn from(v: i32) -> Self {
        Word(v as u32)
    }
}
impl From<f32> for Word {
    fn from(v: f32) -> Self {
        Word(v.to_bits())
    }
}

/// A storage buffer holding `contents` (an empty one gets one word: zero-length bindings are
/// invalid).
pub fn storage_init(ctx: &GpuContext, label: &str, contents: &[u8]) -> wgpu::Buffer {
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: if contents.is_empty() { &[0u8; 4] } else { contents },
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    })
}

/// A zeroed storage buffer of `words` 32-bit words (at least one), readable back.
pub fn storage(ctx: &GpuContext, label: &str, words: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (words.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// One kernel invocation over fixed buffers: encoded again every frame, never rebuilt.
#[derive(Clone)]
pub struct Dispatch {
    pub label: String,
    pipeline: wgpu::ComputePipeline,
    bind: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// The bound buffers, kept alive as long as the dispatch (binding order).
    buffers: Vec<wgpu::Buffer>,
}

impl Dispatch {
    /// Binding 0 is a uniform block holding `params`, bindings 1.. the `buffers` in order
    /// (the kernel's last binding is its output).
    pub fn new(
        ctx: &GpuContext,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Self> {
        let max = ctx.device.limits().max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&g| g > max) {
            return Err(Error::Gpu(format!("{label}: {workgroups:?} workgroups exceed the device's {max}")));
        }
        let uniform = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: params,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let buffers: Vec<wgpu::Buffer> = std::iter::once(uniform).chain(buffers.iter().map(|&b| b.clone())).collect();
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, buf)| wgpu::BindGroupEntry { binding: i as u32, resource: buf.as_entire_binding() })
            .collect();
        let bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Ok(Dispatch { label: label.to_string(), pipeline: pipeline.clone(), bind, workgroups, buffers })
    }

    /// The output buffer (the last binding).
    pub fn output(&self) -> &wgpu::Buffer {
        &self.buffers[self.buffers.len() - 1]
    }

    /// Records the dispatch into an open compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// A buffer the CPU can map for reading, `bytes` long.
pub fn readback_buffer(ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Maps `readback` (already filled by a submitted copy), returns its first `words` words and
/// unmaps it. Natively the device is polled until the copy is done; in the browser the
/// future resolves when WebGPU's mapAsync does.
pub async fn read_words(ctx: &GpuContext, readback: &wgpu::Buffer, words: usize) -> Result<Vec<u32>> {
    let (tx, rx) = futures_channel::oneshot::channel();
    readback.map_async(wgpu::MapMode::Read, .., move |r| {
        // Fails only when the receiver is gone, i.e. nobody awaits this read any more.
        let _ = tx.send(r);
    });
    #[cfg(target_arch = "wasm32")]
    let _ = ctx; // the browser's event loop completes the map
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("device poll: {e}")))?;
    rx.await
        .map_err(|_| Error::Gpu("readback never completed (device lost?)".into()))?
        .map_err(|e| Error::Gpu(format!("readback: {e}")))?;
    let view = readback.get_mapped_range(..).map_err(|e| Error::Gpu(format!("readback view: {e}")))?;
    let values: Vec<u32> =
        view.chunks_exact(4).take(words).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    drop(view);
    readback.unmap();
    Ok(values)
}

/// Runs `dispatches` in one compute pass, copies `out`'s first `words` words back and returns
/// them: what the kernel tests and one-off runs need (the network keeps its buffers).
pub async fn run_and_read(
    ctx: &GpuContext,
    dispatches: &[&Dispatch],
    out: &wgpu::Buffer,
    words: usize,
) -> Result<Vec<u32>> {
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let readback = readback_buffer(ctx, "readback", (words * 4) as u64);
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
    {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("run"), timestamp_writes: None });
        for d in dispatches {
            d.record(&mut pass);
        }
    }
    enc.copy_buffer_to_buffer(out, 0, &readback, 0, (words.max(1) * 4) as u64);
    ctx.queue.submit(Some(enc.finish()));
    if let Some(e) = scope.pop().await {
        return Err(Error::Gpu(format!("{}: {e}", dispatches.first().map_or("run", |d| d.label.as_str()))));
    }
    read_words(ctx, &readback, words).await
}

/// Runs an element-wise kernel of two int8 inputs once on host data (tests and one-off runs):
/// uploads `a` and `b` packed, makes the dispatch with `dispatch(inputs, words)` and reads
/// its output back, unpacked.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_pair(
    ctx: &GpuContext,
    op: &str,
    (a, b): (&[i8], &[i8]),
    dispatch: impl FnOnce((&wgpu::Buffer, &wgpu::Buffer), usize) -> Result<Dispatch>,
) -> Result<Vec<i8>> {
    if a.len() != b.len() || a.is_empty() {
        return Err(Error::shape("gpu", format!("{op}: inputs of {} and {} values", a.len(), b.len())));
    }
    let upload = |v: &[i8]| storage_init(ctx, op, &bytes(&pack_rows(v, 1, v.len())));
    let (ba, bb) = (upload(a), upload(b));
    let words = a.len().div_ceil(4);
    let d = dispatch((&ba, &bb), words)?;
    Ok(unpack_rows(&block_on(run_and_read(ctx, &[&d], d.output(), words))?, 1, a.len()))
}

/// Blocks on a GPU future (native builds: the CLI, tests and benchmarks).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// The constants of one convolution: OHWI int8 weights, their zero points per output
/// channel when asymmetric (uint8 TFLite files), optional bias, parameters and output
/// requantization.
pub struct ConvLayer<'a> {
    pub weights: &'a [i8],
    pub weight_shape: &'a [usize],
    pub weight_zero_points: Option<&'a [i32]>,
    pub bias: Option<&'a [i32]>,
    pub params: &'a Conv2dParams,
    pub requant: &'a Requant,
}

/// `[bias (padded to c4 words), weight zero points (padded)]`: the bias binding of the int8
/// convolution kernels, whose second half those compiled with weight zero points read.
pub(super) fn bias_and_zero_points(bias: &[i32], zero_points: Option<&[i32]>, c4: usize) -> Vec<i32> {
    let mut v = padded(bias, c4 * 4, 0);
    v.extend(padded(zero_points.unwrap_or(&[]), c4 * 4, 0));
    v
}

/// The dispatch of a windowed convolution kernel (one-group direct or depthwise): uploads
/// the packed weights, bias and weight zero points (`bias_and_zw`, from
/// [`bias_and_zero_points`]) and multipliers (padded to whole output words), lays out the
/// params `[head.., OH, OW, KH, KW, SH, SW, PT, PL, zx, zp, lo, hi, 0, Cin]` and allocates the
/// packed output.
pub(super) fn window_dispatch(
    ctx: &GpuContext,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    (x, g, zx): (&wgpu::Buffer, &ConvGeometry, u32),
    (head, weights, bias_and_zw): (&[u32], &[u32], &[i32]),
    (rq, kind): (&Requant, RequantKind),
    grid: [u32; 3],
) -> Result<Dispatch> {
    let c4 = g.out_c.div_ceil(4);
    let window = [g.out_h, g.out_w, g.kernel[0], g.kernel[1], g.stride[0], g.stride[1], g.pad_top, g.pad_left];
    let mut params: Vec<u32> = head.to_vec();
    params.extend(window.map(|d| d as u32));
    params.extend([zx, rq.zero_point as u32, rq.lo as u32, rq.hi as u32]);
    params.extend([0, g.in_c as u32]);
    params.resize(params.len().next_multiple_of(4), 0);
    let weights = storage_init(ctx, label, &bytes(weights));
    let bias = storage_init(ctx, label, &bytes(bias_and_zw));
    let mult = storage_init(ctx, label, &kind.channel_mults(rq, c4)?);
    let out = storage(ctx, label, g.batch * g.out_h * g.out_w * c4);
    Dispatch::new(ctx, label, pipeline, &bytes(&params), &[x, &weights, &bias, &mult, &out], grid)
}
