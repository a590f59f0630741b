//! Batch normalization in inference form, channels last:
//! `y = (x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]`.
//! In deployed networks BN is folded into the preceding convolution at prepare time:
//! `w' = w * gamma / sqrt(var + eps)`, `b' = (b - mean) * gamma / sqrt(var + eps) + beta`
//! ([`fold_into_conv`]).

use crate::error::{Error, Result};

/// Per-channel BN statistics and affine parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

impl BatchNorm {
    fn check(&self, op: &'static str) -> Result<usize> {
        let c = self.gamma.len();
        if self.beta.len() != c || self.mean.len() != c || self.var.len() != c || c == 0 {
            return Err(Error::shape(
                op,
                format!(
                    "gamma {}, beta {}, mean {}, var {} values must be equal and non-zero",
                    c,
                    self.beta.len(),
                    self.mean.len(),
                    self.var.len()
                ),
            ));
        }
        Ok(c)
    }

    /// Per-channel `(scale, shift)` with `y = x * scale + shift`.
    fn affine(&self) -> Vec<(f32, f32)> {
        (0..self.gamma.len())
            .map(|c| {
                let inv = 1.0 / (self.var[c] + self.eps).sqrt();
                (self.gamma[c] * inv, self.beta[c] - self.mean[c] * self.gamma[c] * inv)
            })
            .collect()
    }
}

/// Applies BN to channels-last data (`x.len()` a multiple of the channel count).
pub fn batch_norm_f32(x: &mut [f32], bn: &BatchNorm) -> Result<()> {
    const OP: &str = "batch_norm_f32";
    let c = bn.check(OP)?;
    if !x.len().is_multiple_of(c) {
        return Err(Error::shape(OP, format!("{} values are not a multiple of {c} channels", x.len())));
    }
    for px in x.chunks_exact_mut(c) {
        for (ch, v) in px.iter_mut().enumerate() {
            *v = (*v - bn.mean[ch]) / (bn.var[ch] + bn.eps).sqrt() * bn.gamma[ch] + bn.beta[ch];
        }
    }
    Ok(())
}

/// Folds BN into OHWI conv weights (`[Cout, ...]`) and bias, in place.
pub fn fold_into_conv(w: &mut [f32], bias: &mut [f32], bn: &BatchNorm) -> Result<()> {
    const OP: &str = "fold_bn";
    let c = bn.check(OP)?;
    if bias.len() != c || !w.len().is_multiple_of(c) {
        return Err(Error::shape(OP, format!("weights {} / bias {} do not fit {c} channels", w.len(), bias.len())));
    }
    let per = w.len() / c;
    for (ch, (scale, shift)) in bn.affine().into_iter().enumerate() {
        w[ch * per..(ch + 1) * per].iter_mut().for_each(|v| *v *= scale);
        bias[ch] = bias[ch] * scale + shift;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_equals_applying() {
        let bn = BatchNorm {
            gamma: vec![2.0, 0.5],
            beta: vec![1.0, -1.0],
            mean: vec![0.5, 2.0],
            var: vec![4.0, 0.25],
            eps: 1e-3,
        };
        // a 1x1 conv with identity weights: folding must equal BN applied to the input.
        let mut w = vec![1.0, 0.0, 0.0, 1.0];
        let mut b = vec![0.0, 0.0];
        fold_into_conv(&mut w, &mut b, &bn).unwrap();
        let x = [3.0f32, -1.0];
        let mut y = x.to_vec();
        batch_norm_f32(&mut y, &bn).unwrap();
        let folded = [x[0] * w[0] + x[1] * w[1] + b[0], x[0] * w[2] + x[1] * w[3] + b[1]];
        for (a, b) in y.iter().zip(folded) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
