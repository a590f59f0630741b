//! int8 element-wise operators of two inputs on the GPU as tables
//! (`shaders/binary_i8_table.wgsl`): the CPU computes all 65,536 results of the model's own
//! arithmetic once, at plan time, and the kernel looks each pair up. Exact by construction
//! for any arithmetic (TFLite's fixed-point add, onnxruntime's fused multiply-adds), so the
//! imported models' adds run on the GPU bit-identical to the CPU.

use super::context::GpuContext;
use super::kernel::{bytes, compile, pack_rows, storage, storage_init, Dispatch, LANES_WGSL};
use crate::base::error::{Error, Result};

const TABLE: &str = include_str!("../../shaders/binary_i8_table.wgsl");

/// Entries of a table: one per pair of int8 inputs, index `(a + 128) * 256 + (b + 128)`.
pub const TABLE_LEN: usize = 256 * 256;

/// The compiled table-lookup pipeline.
pub struct BinaryTableI8 {
    pipeline: wgpu::ComputePipeline,
}

impl BinaryTableI8 {
    pub async fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(BinaryTableI8 { pipeline: compile(ctx, "binary_i8_table", &format!("{LANES_WGSL}\n{TABLE}")).await? })
    }

    /// `table[a, b]` over `words` packed words of each buffer, into a new buffer (the
    /// dispatch's output).
    pub fn dispatch(
        &self,
        ctx: &GpuContext,
        label: &str,
        (a, b): (&wgpu::Buffer, &wgpu::Buffer),
        words: usize,
        table: &[i8],
    ) -> Result<Dispatch> {
        if words == 0 || table.len() != TABLE_LEN {
            return Err(Error::shape("binary_i8_table (gpu)", format!("{words} words, a table of {}", table.len())));
        }
        let params = [words as u32, 0, 0, 0];
        let table = storage_init(ctx, label, &bytes(&pack_rows(table, 1, TABLE_LEN)));
        let out = storage(ctx, label, words);
        Dispatch::new(
            ctx,
            label,
            &self.pipeline,
            &bytes(&params),
            &[a, b, &table, &out],
            [words.div_ceil(256) as u32, 1, 1],
        )
    }

    /// `table[a, b]` element-wise on host data.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, ctx: &GpuContext, a: &[i8], b: &[i8], table: &[i8]) -> Result<Vec<i8>> {
        use super::kernel::{block_on, run_and_read, unpack_rows};
        if a.len() != b.len() || a.is_empty() {
            return Err(Error::shape("binary_i8_table (gpu)", format!("inputs of {} and {} values", a.len(), b.len())));
        }
        let upload = |v: &[i8]| storage_init(ctx, "table input", &bytes(&pack_rows(v, 1, v.len())));
        let (ba, bb) = (upload(a), upload(b));
        let words = a.len().div_ceil(4);
        let d = self.dispatch(ctx, "binary_i8_table", (&ba, &bb), words, table)?;
        Ok(unpack_rows(&block_on(run_and_read(ctx, &[&d], d.output(), words))?, 1, a.len()))
    }
}
