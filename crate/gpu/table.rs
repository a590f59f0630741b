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
        super::kernel::run_pair(ctx, "binary_i8_table", (a, b), |inputs, words| {
            self.dispatch(ctx, "binary_i8_table", inputs, words, table)
        })
    }
}
