//! The backend interface: what the engine drives, the same for every executor.
//!
//! ```text
//! embeddings(preprocessed NHWC f32 [N, H, W, C]) -> f32 [N, D]     (the global pool's output)
//! ```
//! An int8 model's input is quantized once on entry, by the CPU executor's own
//! [`PreparedI8::quantize_input`], whichever backend runs the network. Everything after the
//! pool (the model's classifier, or a user's head) is not a backend's business: the engine
//! runs it once, on the CPU, from the embedding ([`Classifier::head_logits`]), so equal
//! embeddings give bit-identical logits on every backend.
//!
//! - [`Backend::Cpu`]: the classifier's own prepared executor ([`super::cpu_int8`] or
//!   [`super::cpu_f32`]).
//! - [`Backend::Gpu`]: the int8 network's WGSL plan ([`super::gpu_plan`]) on a wgpu device,
//!   built for batch 1: a batch runs image by image, one upload and one small readback each.

use super::classifier::Classifier;
use super::cpu_int8::PreparedI8;
use super::gpu_plan::GpuNetwork;
use crate::base::error::{Error, Result};
use crate::base::tensor::{QTensor, Tensor};
use crate::gpu::context::GpuContext;

/// A device and the network's plan on it.
pub struct GpuBackend {
    pub ctx: GpuContext,
    pub plan: GpuNetwork,
}

/// Where the network before the pool runs.
pub enum Backend {
    Cpu,
    /// Boxed: the device and plan are large, and the CPU variant holds nothing.
    Gpu(Box<GpuBackend>),
}

impl Backend {
    /// "cpu" or "gpu".
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu(_) => "gpu",
        }
    }

    /// Embeddings `[N, D]` of a preprocessed batch of `classifier`'s model.
    pub async fn embeddings(&self, classifier: &Classifier, input: &Tensor) -> Result<Tensor> {
        match self {
            Backend::Cpu => classifier.embeddings(input.clone()),
            Backend::Gpu(gpu) => {
                let model = classifier.int8().ok_or_else(|| Error::Gpu("the GPU plan runs int8 models only".into()))?;
                gpu.embeddings(model, input).await
            }
        }
    }
}

impl GpuBackend {
    /// The GPU's embeddings, image by image (the plan holds batch 1).
    pub async fn embeddings(&self, model: &PreparedI8, input: &Tensor) -> Result<Tensor> {
        let x = model.quantize_input(input)?;
        let n = x.shape()[0];
        let per = x.len() / n.max(1);
        let data = x.i8_data("gpu backend")?;
        let mut out = vec![];
        let mut dim = 0;
        for i in 0..n {
            let mut shape = x.shape().to_vec();
            shape[0] = 1;
            let one = QTensor::from_i8(shape, data[i * per..(i + 1) * per].to_vec(), x.params().clone())?;
            let e = self.plan.embeddings(&self.ctx, model, &one).await?;
            dim = e.shape()[1];
            out.extend_from_slice(e.data());
        }
        Tensor::new(vec![n, dim], out)
    }
}
