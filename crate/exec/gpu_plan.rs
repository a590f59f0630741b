//! The execution plan of a whole int8 network on the GPU.
//!
//! Made once per model and batch size: every layer's constants are uploaded and every
//! activation buffer and bind group is created here, so a frame is one input upload, one
//! command buffer with one dispatch per layer (no CPU round trip between layers) and one
//! small readback: the global pool's `[N, C]` i32 sums. The CPU finishes the embedding
//! ([`PreparedI8::embedding_from_pool_sums`], e.g. `e = s_x * sum / (H * W)`) and the head
//! ([`PreparedI8::head_logits`]), exactly as the CPU backend does, so the GPU's logits are
//! bit-identical to the CPU's whenever its sums are (the kernels are tested bit-exact).
//!
//! Imported models keep their own arithmetic here too: the kernels are compiled with the
//! model's requantization ([`RequantKind`]: TFLite's fixed point for TFLite files), and adds
//! in TFLite's or onnxruntime's arithmetic run as tables of their 65,536 results
//! ([`crate::gpu::table`]).
//!
//! Activations live as packed NHWC words (`[N, H, W, ceil(C/4)]`, 4 x i8 per u32), one
//! buffer per value. Layers before the pool must be convolutions (pointwise, one-group or
//! depthwise) and int8 adds; anything else (pooling windows, concatenation, products,
//! element-wise functions) is [`Error::Unsupported`] and the caller runs the model on the
//! CPU.

use crate::base::error::{Error, Result};
use crate::base::tensor::{QTensor, Tensor};
use crate::exec::cpu_int8::{Int8Layer, PreparedI8};
use crate::gpu::add::AddI8;
use crate::gpu::context::GpuContext;
use crate::gpu::conv::{ConvI8, ConvLayer};
use crate::gpu::gemm::DotVariant;
use crate::gpu::kernel::{bytes, pack_rows, read_words, readback_buffer, storage, Dispatch, RequantKind};
use crate::gpu::pool::GlobalSumI8;
use crate::gpu::table::BinaryTableI8;
use crate::model::etm::{Arithmetic, ValueQuant};

/// One dispatched layer, for reports and per-layer timing.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    pub name: String,
    /// "gemm", "conv", "depthwise", "add" or "global_sum".
    pub kind: &'static str,
    /// Multiply-accumulates (element operations for adds and pools).
    pub macs: u64,
}

/// A packed activation on the device: buffer, NHWC shape, scale and zero point.
struct Value {
    buffer: wgpu::Buffer,
    shape: [usize; 4],
    scale: f32,
    zero_point: i32,
}

/// A network's compiled plan on one device.
pub struct GpuNetwork {
    pub variant: DotVariant,
    pub batch: usize,
    pub layers: Vec<LayerInfo>,
    dispatches: Vec<Dispatch>,
    input: wgpu::Buffer,
    input_shape: [usize; 4],
    /// `[N, C]` i32 pool sums, their readback copy, pixels per sum and the pooled value's
    /// quantization.
    sums: wgpu::Buffer,
    readback: wgpu::Buffer,
    channels: usize,
    pooled_pixels: usize,
    pooled: ValueQuant,
}

impl GpuNetwork {
    /// Compiles the kernels in `variant` and builds the plan of `model` for `batch` images.
    pub async fn new(ctx: &GpuContext, model: &PreparedI8, variant: DotVariant, batch: usize) -> Result<Self> {
        let kind = match model.arithmetic() {
            Arithmetic::TfliteUint8 => RequantKind::Fixed { half_up: false },
            Arithmetic::TfliteInt8 => RequantKind::Fixed { half_up: true },
            _ => RequantKind::Float,
        };
        // Only the pipelines this model needs (each compile costs seconds on a software adapter,
        // inside the startup self-test's time).
        let (mut zero_points, mut engine_adds, mut table_adds) = (false, false, false);
        for i in 0..model.graph.embedding.min(model.graph.nodes.len()) {
            match model.layer(i)? {
                Int8Layer::Conv { weight, .. } => zero_points |= weight.params().zero_points().iter().any(|&z| z != 0),
                Int8Layer::Add { .. } => engine_adds = true,
                Int8Layer::TableAdd { .. } => table_adds = true,
                _ => {}
            }
        }
        let conv = ConvI8::new(ctx, variant, kind, zero_points).await?;
        let add = if engine_adds { Some(AddI8::new(ctx).await?) } else { None };
        let table = if table_adds { Some(BinaryTableI8::new(ctx).await?) } else { None };
        let pool = GlobalSumI8::new(ctx).await?;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let plan = Self::plan(ctx, model, (&conv, add.as_ref(), table.as_ref(), &pool), variant, batch);
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("building the GPU plan: {e}")));
        }
        plan
    }

    fn plan(
        ctx: &GpuContext,
        model: &PreparedI8,
        (conv, add, table, pool): (&ConvI8, Option<&AddI8>, Option<&BinaryTableI8>, &GlobalSumI8),
        variant: DotVariant,
        batch: usize,
    ) -> Result<Self> {
        let [h, w, c] = model.graph.input;
        if batch == 0 {
            return Err(Error::invalid("gpu plan", "batch size 0"));
        }
        let input_shape = [batch, h, w, c];
        let input = storage(ctx, "input", batch * h * w * c.div_ceil(4));
        let (scale, zero_point) = model.value_quant(0)?;
        let mut values: Vec<Option<Value>> =
            vec![Some(Value { buffer: input.clone(), shape: input_shape, scale, zero_point })];
        let (mut dispatches, mut layers) = (vec![], vec![]);
        let embedding = model.graph.embedding;
        let mut pooled = None;
        for (i, node) in model.graph.nodes.iter().enumerate().take(embedding) {
            let value = |k: usize| -> Result<&Value> {
                node.inputs.get(k).and_then(|&v| values.get(v)).and_then(Option::as_ref).ok_or_else(|| {
                    Error::unsupported(format!("node '{}' reads a value the GPU does not hold", node.name))
                })
            };
            let out_quant = || model.value_quant(i + 1);
            let (d, info, out) = match model.layer(i)? {
                Int8Layer::Conv { weight, bias, params, requant } => {
                    let x = value(0)?;
                    let zw = weight.params().zero_points();
                    let layer = ConvLayer {
                        weights: weight.i8_data("gpu plan")?,
                        weight_shape: weight.shape(),
                        weight_zero_points: zw.iter().any(|&z| z != 0).then_some(zw),
                        bias,
                        params,
                        requant,
                    };
                    let g = ConvI8::geometry(&x.shape, x.zero_point, &layer)?;
                    let (d, shape) = conv.dispatch(ctx, &node.name, (&x.buffer, &x.shape, x.zero_point), &layer)?;
                    let kind = if g.is_pointwise() {
                        "gemm"
                    } else if g.groups == 1 {
                        "conv"
                    } else {
                        "depthwise"
                    };
                    let macs = (shape.iter().product::<usize>() * g.reduction_len()) as u64;
                    let (scale, zero_point) = out_quant()?;
                    let out = Value { buffer: d.output().clone(), shape, scale, zero_point };
                    (d, LayerInfo { name: node.name.clone(), kind, macs }, Some(out))
                }
                layer @ (Int8Layer::Add { .. } | Int8Layer::TableAdd { .. }) => {
                    let (a, b) = (value(0)?, value(1)?);
                    if a.shape != b.shape {
                        return Err(Error::shape(
                            "gpu plan",
                            format!("node '{}' adds {:?} and {:?}", node.name, a.shape, b.shape),
                        ));
                    }
                    let [n, h, w, c] = a.shape;
                    let (inputs, words) = ((&a.buffer, &b.buffer), n * h * w * c.div_ceil(4));
                    let missing =
                        || Error::invalid("gpu plan", format!("node '{}': its add kernel was not compiled", node.name));
                    let d = match &layer {
                        Int8Layer::TableAdd { table: t } => {
                            table.ok_or_else(missing)?.dispatch(ctx, &node.name, inputs, words, t)?
                        }
                        Int8Layer::Add { requant } => {
                            add.ok_or_else(missing)?.dispatch(ctx, &node.name, inputs, words, requant)?
                        }
                        _ => return Err(missing()),
                    };
                    let (scale, zero_point) = out_quant()?;
                    let out = Value { buffer: d.output().clone(), shape: a.shape, scale, zero_point };
                    (d, LayerInfo { name: node.name.clone(), kind: "add", macs: (n * h * w * c) as u64 }, Some(out))
                }
                Int8Layer::GlobalAvgPool if i + 1 == embedding => {
                    let x = value(0)?;
                    let d = pool.dispatch(ctx, &node.name, &x.buffer, x.shape, x.zero_point)?;
                    let [_, h, w, c] = x.shape;
                    pooled = Some((c, h * w, ValueQuant { scale: x.scale, zero_point: x.zero_point }));
                    let macs = x.shape.iter().product::<usize>() as u64;
                    (d, LayerInfo { name: node.name.clone(), kind: "global_sum", macs }, None)
                }
                Int8Layer::Other(kind) => {
                    return Err(Error::unsupported(format!(
                        "node '{}' ({kind}) on the GPU: its kernels run convolutions, adds and the global pool",
                        node.name
                    )))
                }
                _ => {
                    return Err(Error::unsupported(format!(
                        "node '{}' on the GPU (only the head may follow the pool)",
                        node.name
                    )))
                }
            };
            dispatches.push(d);
            layers.push(info);
            values.push(out);
        }
        let (Some((channels, pooled_pixels, pooled)), Some(last)) = (pooled, dispatches.last()) else {
            return Err(Error::unsupported("a network whose embedding is not a global average pool, on the GPU"));
        };
        let sums = last.output().clone();
        let readback = readback_buffer(ctx, "pool sums", (batch * channels * 4) as u64);
        Ok(GpuNetwork {
            variant,
            batch,
            layers,
            dispatches,
            input,
            input_shape,
            sums,
            readback,
            channels,
            pooled_pixels,
            pooled,
        })
    }

    /// Uploads a quantized input batch (the plan's shape).
    pub fn upload(&self, ctx: &GpuContext, x: &QTensor) -> Result<()> {
        if x.shape() != self.input_shape {
            return Err(Error::shape(
                "gpu network",
                format!("input {:?}, the plan expects {:?}", x.shape(), self.input_shape),
            ));
        }
        let c = self.input_shape[3];
        let data = x.i8_data("gpu network")?;
        ctx.queue.write_buffer(&self.input, 0, &bytes(&pack_rows(data, data.len() / c, c)));
        Ok(())
    }

    /// Records every layer into one compute pass (the order of the graph).
    pub fn record(&self, enc: &mut wgpu::CommandEncoder) {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("network"), timestamp_writes: None });
        for d in &self.dispatches {
            d.record(&mut pass);
        }
    }

    /// The layers' dispatches, for per-layer timing.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// The pool sums `[N, C]` of the uploaded input: one submit, one readback.
    pub async fn run_sums(&self, ctx: &GpuContext) -> Result<Vec<i32>> {
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("frame") });
        self.record(&mut enc);
        let words = self.batch * self.channels;
        enc.copy_buffer_to_buffer(&self.sums, 0, &self.readback, 0, (words * 4) as u64);
        ctx.queue.submit(Some(enc.finish()));
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("frame: {e}")));
        }
        if ctx.is_lost() {
            return Err(Error::Gpu("the GPU device was lost".into()));
        }
        Ok(read_words(ctx, &self.readback, words).await?.into_iter().map(|v| v as i32).collect())
    }

    /// The f32 embedding `[N, D]` of a quantized input batch of `model` (the model this
    /// plan was built from), bit-identical to the CPU's.
    pub async fn embeddings(&self, ctx: &GpuContext, model: &PreparedI8, x: &QTensor) -> Result<Tensor> {
        self.upload(ctx, x)?;
        let sums = self.run_sums(ctx).await?;
        Tensor::new(
            vec![self.batch, self.channels],
            model.embedding_from_pool_sums(&sums, self.pooled, self.pooled_pixels)?,
        )
    }

    /// Total multiply-accumulates of one image.
    pub fn macs_per_image(&self) -> u64 {
        self.layers.iter().filter(|l| l.kind != "add" && l.kind != "global_sum").map(|l| l.macs).sum::<u64>()
            / self.batch as u64
    }
}

impl GpuNetwork {
    /// GPU time of each layer in milliseconds, from timestamp queries around one compute
    /// pass per layer (the input already uploaded); `None` when the device grants no
    /// timestamp queries.
    pub async fn layer_times_ms(&self, ctx: &GpuContext) -> Result<Option<Vec<f64>>> {
        if !ctx.timestamps {
            return Ok(None);
        }
        let n = self.dispatches.len();
        let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("layer timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: (2 * n) as u32,
        });
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: (16 * n) as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = readback_buffer(ctx, "timestamps", (16 * n) as u64);
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("timed frame") });
        for (i, d) in self.dispatches.iter().enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&d.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some((2 * i) as u32),
                    end_of_pass_write_index: Some((2 * i + 1) as u32),
                }),
            });
            d.record(&mut pass);
        }
        enc.resolve_query_set(&queries, 0..(2 * n) as u32, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &readback, 0, (16 * n) as u64);
        ctx.queue.submit(Some(enc.finish()));
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("timed frame: {e}")));
        }
        let words = read_words(ctx, &readback, 4 * n).await?;
        let period_ns = ctx.queue.get_timestamp_period() as f64;
        let ticks: Vec<u64> = words.chunks_exact(2).map(|w| w[0] as u64 | (w[1] as u64) << 32).collect();
        Ok(Some(ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period_ns / 1e6).collect()))
    }
}
