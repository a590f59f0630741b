//! Element-wise activations: `relu(x) = max(x, 0)`, `clip(x) = min(max(x, lo), hi)`,
//! `relu6 = clip(x, 0, 6)`. In int8 graphs activations are fused into the requantization
//! clamp ([`crate::quant::Activation`]); [`clip_i8`] is the standalone form.
//! NaN stays NaN in f32 (comparisons are false), as in ONNX.

use crate::base::error::{Error, Result};
use crate::quant::Activation;

pub fn relu_f32(x: &mut [f32]) {
    for v in x {
        if *v < 0.0 {
            *v = 0.0;
        }
    }
}

/// Clamps to `[lo, hi]`. With `lo > hi` every value becomes `hi` (ONNX Clip's rule);
/// a NaN bound is an error.
pub fn clip_f32(x: &mut [f32], lo: f32, hi: f32) -> Result<()> {
    if lo.is_nan() || hi.is_nan() {
        return Err(Error::invalid("clip_f32", format!("bounds must not be NaN, got [{lo}, {hi}]")));
    }
    for v in x {
        if *v < lo {
            *v = lo;
        }
        if *v > hi {
            *v = hi;
        }
    }
    Ok(())
}

pub fn relu6_f32(x: &mut [f32]) {
    for v in x {
        *v = v.clamp(0.0, 6.0); // NaN stays NaN
    }
}

/// ReLU backward from the forward's output: `dx += dy` where `y > 0`.
pub fn relu_backward_f32(y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    clamp_backward("relu_backward_f32", y, dy, dx, f32::INFINITY)
}

/// ReLU6 backward from the forward's output: `dx += dy` where `0 < y < 6` (PyTorch's
/// hardtanh rule: no gradient at or beyond the bounds).
pub fn relu6_backward_f32(y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    clamp_backward("relu6_backward_f32", y, dy, dx, 6.0)
}

fn clamp_backward(op: &'static str, y: &[f32], dy: &[f32], dx: &mut [f32], hi: f32) -> Result<()> {
    if y.len() != dy.len() || y.len() != dx.len() {
        return Err(Error::shape(op, format!("y {}, dy {}, dx {} values differ", y.len(), dy.len(), dx.len())));
    }
    for ((g, &yv), &d) in dx.iter_mut().zip(y).zip(dy) {
        if yv > 0.0 && yv < hi {
            *g += d;
        }
    }
    Ok(())
}

/// Clamps int8 values to `[lo, hi]` (which may be given wider than int8's range).
pub fn clip_i8(x: &mut [i8], lo: i32, hi: i32) {
    // Clip with min > max saturates everything to max, as ONNX's reference does.
    for v in x {
        *v = (*v as i32).max(lo).min(hi) as i8;
    }
}

/// Applies a fused activation in place.
pub fn apply_activation(v: &mut [f32], act: Activation) {
    match act {
        Activation::None => {}
        Activation::Relu => relu_f32(v),
        Activation::Relu6 => relu6_f32(v),
    }
}

/// `act` as the clamp `[lo, hi]` a kernel applies as it stores (`v < lo -> lo`, then
/// `v > hi -> hi`; NaN and -0.0 stay): the bits of [`apply_activation`]. `None` is
/// `[-inf, +inf]`, which changes nothing.
pub fn activation_bounds(act: Activation) -> [f32; 2] {
    match act {
        Activation::None => [f32::NEG_INFINITY, f32::INFINITY],
        Activation::Relu => [0.0, f32::INFINITY],
        Activation::Relu6 => [0.0, 6.0],
    }
}

/// One value through [`activation_bounds`].
#[inline(always)]
pub fn clamp_to_bounds(v: f32, [lo, hi]: [f32; 2]) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_give_the_bits_of_each_activation() {
        let x = [-1.5, -0.0, 0.0, 3.0, 6.0, 7.5, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            let mut want = x;
            apply_activation(&mut want, act);
            let got = x.map(|v| clamp_to_bounds(v, activation_bounds(act)));
            assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "{act:?}");
        }
    }

    #[test]
    fn relu_and_relu6_gradients_match_finite_differences() {
        use crate::ops::gradcheck::{check, values};
        // Values away from the kinks at 0 and 6.
        let x: Vec<f32> =
            values(40, 1).iter().map(|v| v * 8.0 + 0.05).filter(|v| v.abs() > 0.1 && (v - 6.0).abs() > 0.1).collect();
        let dy = values(x.len(), 2);
        for (name, act, back) in [
            ("relu", relu_f32 as fn(&mut [f32]), relu_backward_f32 as fn(&[f32], &[f32], &mut [f32]) -> Result<()>),
            ("relu6", relu6_f32, relu6_backward_f32),
        ] {
            let f = |v: &[f32]| {
                let mut y = v.to_vec();
                act(&mut y);
                y
            };
            let mut dx = vec![0.0; x.len()];
            back(&f(&x), &dy, &mut dx).unwrap();
            check(name, &f, &x, &dy, &dx, 1e-3);
        }
    }

    #[test]
    fn clip_and_relu6() {
        let mut x = [-1.0, 0.5, 7.0, f32::NAN];
        relu6_f32(&mut x);
        assert_eq!(&x[..3], &[0.0, 0.5, 6.0]);
        assert!(x[3].is_nan());
        let mut y = [-3.0, 3.0];
        assert!(clip_f32(&mut y, f32::NAN, 0.0).is_err());
        clip_f32(&mut y, -1.0, 1.0).unwrap();
        assert_eq!(y, [-1.0, 1.0]);
        let mut q = [-128i8, 0, 127];
        clip_i8(&mut q, -5, 5);
        assert_eq!(q, [-5, 0, 5]);
    }
}
