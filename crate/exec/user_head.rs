//! The user's own classes on the engine's embedding: a head trained in the page (or by
//! `edgetune fewshot`), run in the engine right after the backbone, the one implementation
//! the live view and the page's int8-head check both use.
//!
//! ```text
//! logits[n, c] = sum_k e[n, k] * W[c, k] + b[c]      W [classes, dim] row-major, b [classes]
//! p[n, :] = softmax(logits[n, :])                     (crate::ops::softmax)
//! ```
//! The dense product is [`crate::ops::gemm::dense_f32`], the same f32 arithmetic the head
//! trainer ([`crate::train::head::LinearHead`]) was trained with.

use crate::base::error::{Error, Result};
use crate::ops::gemm::dense_f32;

/// A trained head with its class names.
#[derive(Clone, Debug, PartialEq)]
pub struct UserHead {
    dim: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
    names: Vec<String>,
}

impl UserHead {
    /// Checks the shapes against the backbone's embedding width `dim` and that every weight
    /// is finite (a head from storage or a file is untrusted).
    pub fn new(dim: usize, weight: Vec<f32>, bias: Vec<f32>, names: Vec<String>) -> Result<Self> {
        let classes = names.len();
        if classes == 0 || bias.len() != classes || weight.len() != classes * dim {
            return Err(Error::shape(
                "user head",
                format!(
                    "{classes} names, {} biases and {} weights do not make a head on {dim} features",
                    bias.len(),
                    weight.len()
                ),
            ));
        }
        if weight.iter().chain(&bias).any(|v| !v.is_finite()) {
            return Err(Error::invalid("user head", "a weight or bias is NaN or infinite"));
        }
        Ok(UserHead { dim, weight, bias, names })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Logits `[n, classes]` of `n` embeddings `[n, dim]`.
    pub fn logits(&self, embeddings: &[f32]) -> Result<Vec<f32>> {
        let n = embeddings.len() / self.dim.max(1);
        if n * self.dim != embeddings.len() {
            return Err(Error::shape("user head", format!("{} values are not rows of {}", embeddings.len(), self.dim)));
        }
        dense_f32(embeddings, &self.weight, Some(&self.bias), n, self.dim, self.names.len())
    }

    /// The `k` most probable classes of one embedding, best first.
    pub fn top_k(&self, embedding: &[f32], k: usize) -> Result<Vec<(usize, f32)>> {
        Ok(super::top_k(&self.logits(embedding)?, k))
    }

    /// The predicted class of each of `n` embeddings `[n, dim]`.
    pub fn predictions(&self, embeddings: &[f32]) -> Result<Vec<usize>> {
        let logits = self.logits(embeddings)?;
        let c = self.names.len();
        Ok(logits
            .chunks_exact(c)
            .map(|row| row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best }))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_w_e_plus_b() {
        let names = vec!["a".to_string(), "b".to_string()];
        let h = UserHead::new(2, vec![1.0, 0.0, 0.0, 1.0], vec![0.0, 0.5], names).unwrap();
        let top = h.top_k(&[2.0, 0.0], 2).unwrap();
        let p0 = (2.0f64.exp() / (2.0f64.exp() + 0.5f64.exp())) as f32;
        assert_eq!(top[0].0, 0);
        assert!((top[0].1 - p0).abs() < 1e-6 && (top[0].1 + top[1].1 - 1.0).abs() < 1e-6);
        assert_eq!(h.predictions(&[2.0, 0.0, 0.0, 3.0]).unwrap(), vec![0, 1]);
    }

    #[test]
    fn bad_heads_are_refused() {
        let names = || vec!["a".to_string(), "b".to_string()];
        assert!(UserHead::new(2, vec![1.0; 3], vec![0.0; 2], names()).is_err());
        assert!(UserHead::new(2, vec![1.0; 4], vec![0.0; 1], names()).is_err());
        assert!(UserHead::new(2, vec![f32::NAN, 0.0, 0.0, 1.0], vec![0.0; 2], names()).is_err());
        let h = UserHead::new(2, vec![1.0; 4], vec![0.0; 2], names()).unwrap();
        assert!(h.logits(&[1.0, 2.0, 3.0]).is_err());
    }
}
