//! Batch normalization in inference form, channels last:
//! `y = (x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]`.
//! In deployed networks BN is folded into the preceding convolution at prepare time:
//! `w' = w * gamma / sqrt(var + eps)`, `b' = (b - mean) * gamma / sqrt(var + eps) + beta`
//! ([`fold_into_conv`]).
//!
//! Training mode normalizes with the batch's own statistics over the `M = N*H*W` pixels,
//! `mu = mean(x)`, `var = mean((x - mu)^2)` (biased), `xhat = (x - mu) / sqrt(var + eps)`,
//! and moves the running statistics as PyTorch does:
//! `running = (1 - momentum) * running + momentum * batch` (the variance unbiased, `* M / (M - 1)`).
//! Backward (training): `dbeta = sum dy`, `dgamma = sum dy * xhat`,
//! `dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))`.
//! Backward (frozen, running statistics): `dx = dy * gamma / sqrt(running_var + eps)`, same
//! `dgamma` and `dbeta` with `xhat` from the running statistics.

use crate::base::error::{Error, Result};

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

/// What a training-mode forward keeps for its backward.
#[derive(Clone, Debug)]
pub struct BatchNormCache {
    /// Normalized input `xhat`, channels last.
    pub xhat: Vec<f32>,
    /// `1 / sqrt(var + eps)` per channel.
    pub inv_std: Vec<f32>,
}

/// Gradients of the affine parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormGrads {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

fn pixels(op: &'static str, len: usize, c: usize) -> Result<usize> {
    if !len.is_multiple_of(c) || len == 0 {
        return Err(Error::shape(op, format!("{len} values are not a non-empty multiple of {c} channels")));
    }
    Ok(len / c)
}

/// Training-mode BN in place with batch statistics; updates `bn.mean` and `bn.var`.
pub fn batch_norm_train_f32(x: &mut [f32], bn: &mut BatchNorm, momentum: f32) -> Result<BatchNormCache> {
    const OP: &str = "batch_norm_train_f32";
    let c = bn.check(OP)?;
    let m = pixels(OP, x.len(), c)?;
    let mut mean = vec![0f64; c];
    let mut var = vec![0f64; c];
    for px in x.chunks_exact(c) {
        mean.iter_mut().zip(px).for_each(|(a, &v)| *a += v as f64);
    }
    mean.iter_mut().for_each(|v| *v /= m as f64);
    for px in x.chunks_exact(c) {
        var.iter_mut().zip(px).zip(&mean).for_each(|((a, &v), &mu)| *a += (v as f64 - mu).powi(2));
    }
    var.iter_mut().for_each(|v| *v /= m as f64);
    let inv_std: Vec<f32> = var.iter().map(|&v| (1.0 / (v + bn.eps as f64).sqrt()) as f32).collect();
    let mut xhat = vec![0f32; x.len()];
    for (px, hx) in x.chunks_exact_mut(c).zip(xhat.chunks_exact_mut(c)) {
        for ch in 0..c {
            hx[ch] = ((px[ch] as f64 - mean[ch]) * inv_std[ch] as f64) as f32;
            px[ch] = hx[ch] * bn.gamma[ch] + bn.beta[ch];
        }
    }
    let unbias = if m > 1 { m as f64 / (m - 1) as f64 } else { 1.0 };
    for ch in 0..c {
        bn.mean[ch] = ((1.0 - momentum as f64) * bn.mean[ch] as f64 + momentum as f64 * mean[ch]) as f32;
        bn.var[ch] = ((1.0 - momentum as f64) * bn.var[ch] as f64 + momentum as f64 * var[ch] * unbias) as f32;
    }
    Ok(BatchNormCache { xhat, inv_std })
}

/// Training-mode BN backward: accumulates into `dx`, returns the parameter gradients.
pub fn batch_norm_train_backward_f32(
    cache: &BatchNormCache,
    gamma: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) -> Result<BatchNormGrads> {
    const OP: &str = "batch_norm_train_backward_f32";
    let c = gamma.len();
    let m = pixels(OP, dy.len(), c)?;
    if cache.xhat.len() != dy.len() || dx.len() != dy.len() || cache.inv_std.len() != c {
        return Err(Error::shape(OP, format!("cache/dx do not match dy of {} values", dy.len())));
    }
    let (mut sum_dy, mut sum_dy_xhat) = (vec![0f64; c], vec![0f64; c]);
    for (d, h) in dy.chunks_exact(c).zip(cache.xhat.chunks_exact(c)) {
        for ch in 0..c {
            sum_dy[ch] += d[ch] as f64;
            sum_dy_xhat[ch] += d[ch] as f64 * h[ch] as f64;
        }
    }
    for ((g, d), h) in dx.chunks_exact_mut(c).zip(dy.chunks_exact(c)).zip(cache.xhat.chunks_exact(c)) {
        for ch in 0..c {
            let centred = d[ch] as f64 - sum_dy[ch] / m as f64 - h[ch] as f64 * sum_dy_xhat[ch] / m as f64;
            g[ch] += (gamma[ch] as f64 * cache.inv_std[ch] as f64 * centred) as f32;
        }
    }
    Ok(BatchNormGrads {
        gamma: sum_dy_xhat.iter().map(|&v| v as f32).collect(),
        beta: sum_dy.iter().map(|&v| v as f32).collect(),
    })
}

/// Frozen BN backward (running statistics, as in fine-tuning with BN in eval mode):
/// accumulates `dx` from the forward's input `x`, returns the parameter gradients.
pub fn batch_norm_frozen_backward_f32(x: &[f32], bn: &BatchNorm, dy: &[f32], dx: &mut [f32]) -> Result<BatchNormGrads> {
    const OP: &str = "batch_norm_frozen_backward_f32";
    let c = bn.check(OP)?;
    pixels(OP, dy.len(), c)?;
    if x.len() != dy.len() || dx.len() != dy.len() {
        return Err(Error::shape(OP, format!("x {} / dx {} do not match dy {}", x.len(), dx.len(), dy.len())));
    }
    let inv: Vec<f32> = bn.var.iter().map(|&v| 1.0 / (v + bn.eps).sqrt()).collect();
    let (mut dgamma, mut dbeta) = (vec![0f64; c], vec![0f64; c]);
    for ((g, d), xv) in dx.chunks_exact_mut(c).zip(dy.chunks_exact(c)).zip(x.chunks_exact(c)) {
        for ch in 0..c {
            g[ch] += d[ch] * bn.gamma[ch] * inv[ch];
            dgamma[ch] += d[ch] as f64 * ((xv[ch] - bn.mean[ch]) * inv[ch]) as f64;
            dbeta[ch] += d[ch] as f64;
        }
    }
    Ok(BatchNormGrads {
        gamma: dgamma.iter().map(|&v| v as f32).collect(),
        beta: dbeta.iter().map(|&v| v as f32).collect(),
    })
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

    fn bn(c: usize) -> BatchNorm {
        use crate::ops::gradcheck::values;
        BatchNorm {
            gamma: values(c, 11).iter().map(|v| 1.0 + 0.5 * v).collect(),
            beta: values(c, 12),
            mean: values(c, 13),
            var: values(c, 14).iter().map(|v| 1.0 + 0.5 * v).collect(),
            eps: 1e-3,
        }
    }

    #[test]
    fn batch_norm_gradients_match_finite_differences() {
        use crate::ops::gradcheck::{check, values};
        let c = 3;
        let x = values(24, 1);
        let dy = values(24, 2);
        let base = bn(c);
        // Training mode: gradients through the batch statistics.
        let train = |x: &[f32], b: &BatchNorm| {
            let mut y = x.to_vec();
            batch_norm_train_f32(&mut y, &mut b.clone(), 0.1).unwrap();
            y
        };
        let mut y = x.clone();
        let cache = batch_norm_train_f32(&mut y, &mut base.clone(), 0.1).unwrap();
        let mut dx = vec![0.0; 24];
        let g = batch_norm_train_backward_f32(&cache, &base.gamma, &dy, &mut dx).unwrap();
        check("bn train dx", &|v| train(v, &base), &x, &dy, &dx, 2e-3);
        check(
            "bn train dgamma",
            &|v| train(&x, &BatchNorm { gamma: v.to_vec(), ..base.clone() }),
            &base.gamma,
            &dy,
            &g.gamma,
            2e-3,
        );
        check(
            "bn train dbeta",
            &|v| train(&x, &BatchNorm { beta: v.to_vec(), ..base.clone() }),
            &base.beta,
            &dy,
            &g.beta,
            2e-3,
        );
        // Frozen mode: the running statistics are constants.
        let frozen = |x: &[f32], b: &BatchNorm| {
            let mut y = x.to_vec();
            batch_norm_f32(&mut y, b).unwrap();
            y
        };
        let mut dx = vec![0.0; 24];
        let g = batch_norm_frozen_backward_f32(&x, &base, &dy, &mut dx).unwrap();
        check("bn frozen dx", &|v| frozen(v, &base), &x, &dy, &dx, 1e-3);
        check(
            "bn frozen dgamma",
            &|v| frozen(&x, &BatchNorm { gamma: v.to_vec(), ..base.clone() }),
            &base.gamma,
            &dy,
            &g.gamma,
            1e-3,
        );
        check(
            "bn frozen dbeta",
            &|v| frozen(&x, &BatchNorm { beta: v.to_vec(), ..base.clone() }),
            &base.beta,
            &dy,
            &g.beta,
            1e-3,
        );
    }

    #[test]
    fn training_mode_updates_running_statistics_like_pytorch() {
        // x = [1, 3] in one channel: batch mean 2, biased var 1, unbiased var 2.
        let mut b = BatchNorm { gamma: vec![1.0], beta: vec![0.0], mean: vec![0.0], var: vec![1.0], eps: 0.0 };
        let mut x = vec![1.0, 3.0];
        batch_norm_train_f32(&mut x, &mut b, 0.1).unwrap();
        assert_eq!(x, vec![-1.0, 1.0]);
        assert!((b.mean[0] - 0.2).abs() < 1e-7 && (b.var[0] - 1.1).abs() < 1e-6, "{b:?}");
    }

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
