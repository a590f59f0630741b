//! What every kernel wrapper shares: compiling WGSL into a compute pipeline inside an error
//! scope (a bad shader is an [`Error::Gpu`], not a panic), and running a pipeline once over
//! a uniform block and storage buffers with one i32 output read back. The network's
//! execution plan will keep buffers alive across frames; these one-shot runs are what the
//! kernel tests and the first benchmarks need.

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use crate::error::{Error, Result};

/// The requantization snippet every kernel with an int8 output includes.
pub const REQUANT_WGSL: &str = include_str!("../../shaders/requant.wgsl");

/// Compiles `source` (entry point `main`) into a compute pipeline.
pub fn compile(ctx: &GpuContext, label: &str, source: &str) -> Result<wgpu::ComputePipeline> {
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
    match pollster::block_on(scope.pop()) {
        Some(e) => Err(Error::Gpu(format!("{label}: {e}"))),
        None => Ok(pipeline),
    }
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

/// Runs `pipeline` once: binding 0 is the uniform `params`, bindings 1.. the `inputs` as
/// read-only storage, the last binding the i32 output of `out_len` values, which is returned.
pub fn run_once(
    ctx: &GpuContext,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    params: &[u8],
    inputs: &[&[u8]],
    out_len: usize,
    workgroups: [u32; 3],
) -> Result<Vec<i32>> {
    let dev = &ctx.device;
    let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
    let uniform = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: params,
        usage: wgpu::BufferUsages::UNIFORM,
    });
    // Zero-length storage bindings are invalid: an empty input gets one word.
    let storage: Vec<wgpu::Buffer> = inputs
        .iter()
        .map(|b| {
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: if b.is_empty() { &[0u8; 4] } else { b },
                usage: wgpu::BufferUsages::STORAGE,
            })
        })
        .collect();
    let out_bytes = (out_len.max(1) * 4) as u64;
    let out = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: out_bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: out_bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(&uniform)
        .chain(&storage)
        .chain(std::iter::once(&out))
        .enumerate()
        .map(|(i, buf)| wgpu::BindGroupEntry { binding: i as u32, resource: buf.as_entire_binding() })
        .collect();
    let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
    {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
    }
    enc.copy_buffer_to_buffer(&out, 0, &readback, 0, out_bytes);
    ctx.queue.submit(Some(enc.finish()));
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::Gpu(format!("{label} dispatch: {e}")));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    readback.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    dev.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("device poll: {e}")))?;
    rx.recv()
        .map_err(|_| Error::Gpu(format!("{label}: readback never completed")))?
        .map_err(|e| Error::Gpu(format!("{label} readback: {e}")))?;
    let view = readback.get_mapped_range(..).map_err(|e| Error::Gpu(format!("{label} readback view: {e}")))?;
    let values: Vec<i32> =
        view.chunks_exact(4).take(out_len).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    drop(view);
    readback.unmap();
    Ok(values)
}
