//! Softmax along one axis: `y_i = exp(x_i - max_j x_j) / sum_j exp(x_j - max_j x_j)`.
//! Subtracting the max keeps `exp` finite for large logits. The tensor is viewed as
//! `[outer, n, inner]` with `n` the softmax axis.

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;

/// Softmax of `x` along `axis`.
pub fn softmax_f32(x: &Tensor, axis: usize) -> Result<Tensor> {
    let shape = x.shape();
    if axis >= shape.len() {
        return Err(Error::invalid("softmax_f32", format!("axis {axis} out of range for shape {shape:?}")));
    }
    let outer: usize = shape[..axis].iter().product();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut y = x.data().to_vec();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let max = (0..n).map(|j| y[at(j)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for j in 0..n {
                let e = (y[at(j)] - max).exp();
                y[at(j)] = e;
                sum += e;
            }
            for j in 0..n {
                y[at(j)] /= sum;
            }
        }
    }
    Tensor::new(shape.to_vec(), y)
}

/// Softmax of one row of logits (the classifier head's output).
pub fn softmax_row(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&v| (v - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let x = Tensor::new(vec![2, 3], vec![1000.0, 1001.0, 1002.0, 0.0, 0.0, 0.0]).unwrap();
        let y = softmax_f32(&x, 1).unwrap();
        let r0: f32 = y.data()[..3].iter().sum();
        assert!((r0 - 1.0).abs() < 1e-6);
        assert!((y.data()[3] - 1.0 / 3.0).abs() < 1e-6);
        let y0 = softmax_f32(&x, 0).unwrap();
        assert!((y0.data()[0] - 1.0).abs() < 1e-6);
        assert_eq!(softmax_row(&[0.0, 0.0]), vec![0.5, 0.5]);
    }
}
