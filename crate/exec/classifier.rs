//! [`Classifier`]: a loaded model on the CPU, f32 or int8 as its file says, with the
//! embedding / logits entry points every caller (CLI, tests, the engine) uses.

use std::path::Path;

use super::cpu_f32::PreparedF32;
use super::cpu_int8::PreparedI8;
use super::profile::LayerProfile;
use crate::base::error::Result;
use crate::base::tensor::Tensor;
use crate::model::etm;

/// A loaded model ready to classify: f32 or int8, chosen by the file's contents.
pub struct Classifier {
    pub file: etm::ModelFile,
    runner: Runner,
}

enum Runner {
    F32(PreparedF32),
    I8(PreparedI8),
}

impl Classifier {
    pub fn new(file: etm::ModelFile) -> Result<Self> {
        let runner = if file.is_int8() {
            Runner::I8(PreparedI8::new(&file)?)
        } else {
            Runner::F32(PreparedF32::new(&file.header.graph, &file.f32_tensors())?)
        };
        Ok(Classifier { file, runner })
    }

    pub fn load(path: &Path) -> Result<Self> {
        Self::new(etm::ModelFile::load(path)?)
    }

    /// "int8" or "f32".
    pub fn precision(&self) -> &'static str {
        match self.runner {
            Runner::F32(_) => "f32",
            Runner::I8(_) => "int8",
        }
    }

    /// The int8 network, when the model is quantized (what the GPU backend runs).
    pub fn int8(&self) -> Option<&PreparedI8> {
        match &self.runner {
            Runner::I8(p) => Some(p),
            Runner::F32(_) => None,
        }
    }

    /// Per-node times, kinds and multiply-adds on one preprocessed input (the benchmarks'
    /// per-layer profile; the int8 network's input quantization is its first line).
    pub fn profile(&self, input: &Tensor) -> Result<Vec<LayerProfile>> {
        check_finite(input)?;
        crate::base::pool::install(|| match &self.runner {
            Runner::F32(p) => p.profile(input.clone()),
            Runner::I8(p) => p.profile(input),
        })
    }

    /// Logits `[N, classes]` of a preprocessed NHWC batch.
    pub fn logits(&self, input: Tensor) -> Result<Tensor> {
        check_finite(&input)?;
        // A whole pass inside the pool: its kernels' threads start from there.
        crate::base::pool::install(|| match &self.runner {
            Runner::F32(p) => p.logits(input),
            Runner::I8(p) => p.logits(&input),
        })
    }
}

impl Classifier {
    /// Embeddings `[N, D]` (the global pool's output) of a preprocessed NHWC batch: what the
    /// head reads, and what head-only training caches.
    pub fn embeddings(&self, input: Tensor) -> Result<Tensor> {
        check_finite(&input)?;
        crate::base::pool::install(|| match &self.runner {
            Runner::F32(p) => p.value(input, p.graph.embedding),
            Runner::I8(p) => p.embeddings(&input),
        })
    }

    /// Logits from embeddings `[N, D]`: the nodes after the global pool, on the CPU. Every
    /// backend finishes here ([`super::engine::Engine`]), so equal embeddings give
    /// bit-identical logits.
    pub fn head_logits(&self, embedding: Tensor) -> Result<Tensor> {
        match &self.runner {
            Runner::F32(p) => p.head_logits(embedding),
            Runner::I8(p) => p.head_logits(embedding),
        }
    }

    /// Embeddings and logits of one pass: the network up to the pool, then the head on that
    /// embedding (the same arithmetic as [`Self::logits`]).
    pub fn embeddings_and_logits(&self, input: Tensor) -> Result<(Tensor, Tensor)> {
        let e = self.embeddings(input)?;
        Ok((e.clone(), self.head_logits(e)?))
    }
}

/// A NaN or infinite input value is refused: the f32 path would spread it to every logit and
/// the int8 path would quietly map it onto the grid, so neither result would mean anything.
pub(crate) fn check_finite(input: &Tensor) -> Result<()> {
    match input.data().iter().position(|v| !v.is_finite()) {
        Some(i) => Err(crate::Error::invalid("classify", format!("input element {i} is {}", input.data()[i]))),
        None => Ok(()),
    }
}

/// The `k` best `(class, probability)` of one row of logits, best first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let probs = crate::ops::softmax::softmax_row(logits);
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, probs[i])).collect()
}
