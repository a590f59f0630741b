//! Per-node profiles of the CPU executors: what the benchmarks' per-layer tables print.

/// One node's line of [`super::cpu_int8::PreparedI8::profile`] and [`super::cpu_f32::PreparedF32::profile`].
#[derive(Clone, Debug)]
pub struct LayerProfile {
    pub name: String,
    pub kind: &'static str,
    pub ms: f64,
    pub macs: u64,
}

impl LayerProfile {
    /// Kind and multiply-adds of a convolution with OHWI weights and `out_len` outputs.
    pub fn conv(weight_shape: &[usize], groups: usize, out_len: u64) -> (&'static str, u64) {
        let per_output = weight_shape.iter().skip(1).product::<usize>() as u64;
        let kind = match weight_shape {
            [_, 1, 1, _] if groups == 1 => "pointwise",
            [o, _, _, 1] if groups == *o && *o > 1 => "depthwise",
            _ => "conv",
        };
        (kind, out_len * per_output)
    }
}
