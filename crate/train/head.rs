//! The classification head trained on cached embeddings: `logits[n, k] = e[n, :] · W[k, :] + b[k]`
//! with `W` `[classes, dim]` and `b` `[classes]` (the same layout as the model's dense head).

use crate::base::error::{Error, Result};
use crate::ops::gemm::{dense_backward_f32, dense_f32};

use crate::base::rng::Rng;

/// A dense layer from embeddings to class logits.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearHead {
    pub dim: usize,
    pub classes: usize,
    /// `[classes, dim]`, row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LinearHead {
    /// PyTorch's `nn.Linear` initialization: weights and bias uniform in `±1/sqrt(dim)`.
    pub fn new(dim: usize, classes: usize, rng: &mut Rng) -> Result<Self> {
        if dim == 0 || classes == 0 {
            return Err(Error::invalid("head", format!("dim {dim} and classes {classes} must be positive")));
        }
        let bound = 1.0 / (dim as f32).sqrt();
        let weight = (0..dim * classes).map(|_| rng.uniform(-bound, bound)).collect();
        let bias = (0..classes).map(|_| rng.uniform(-bound, bound)).collect();
        Ok(LinearHead { dim, classes, weight, bias })
    }

    /// Logits `[n, classes]` for `n` embeddings `[n, dim]`.
    pub fn logits(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        dense_f32(x, &self.weight, Some(&self.bias), n, self.dim, self.classes)
    }

    /// `(dW, db)` for upstream gradients `dlogits` `[n, classes]`.
    pub fn gradients(&self, x: &[f32], n: usize, dlogits: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut dw = vec![0f32; self.weight.len()];
        let mut db = vec![0f32; self.classes];
        dense_backward_f32(x, &self.weight, dlogits, (n, self.dim, self.classes), None, &mut dw, Some(&mut db))?;
        Ok((dw, db))
    }
}
