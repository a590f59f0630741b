//! Optimizers as pure step functions over `(param, grad, state)`, one parameter tensor at a
//! time, with PyTorch's update rules (so trajectories can be compared step by step; `t` is
//! the 1-based step, `g` the gradient, `wd` the weight decay, all element-wise):
//!
//! - SGD: `g += wd p`; with momentum `mu`: `b = g` on the first step, else `b = mu b + g`;
//!   `g = g + mu b` (Nesterov) or `g = b`; `p -= lr g`.
//! - Adam: `g += wd p`; `m = b1 m + (1 - b1) g`; `v = b2 v + (1 - b2) g^2`;
//!   `p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
//! - AdamW: `p *= 1 - lr wd` (decoupled decay), then Adam without the `g += wd p`.
//! - RMSprop: `g += wd p`; `v = a v + (1 - a) g^2`; with momentum `mu`:
//!   `b = mu b + g / (sqrt(v) + eps)`, `p -= lr b`; else `p -= lr g / (sqrt(v) + eps)`.
//!
//! Gradient clipping by global norm (PyTorch's `clip_grad_norm_`): with
//! `n = sqrt(sum g^2)` over all parameters, every gradient is scaled by
//! `min(1, max_norm / (n + 1e-6))`.

use crate::base::error::{Error, Result};

/// Optimizer choice and hyper-parameters (the learning rate comes from the schedule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd { momentum: f32, nesterov: bool, weight_decay: f32 },
    Adam { beta1: f32, beta2: f32, eps: f32, weight_decay: f32 },
    AdamW { beta1: f32, beta2: f32, eps: f32, weight_decay: f32 },
    RmsProp { alpha: f32, eps: f32, momentum: f32, weight_decay: f32 },
}

impl Optimizer {
    /// Defaults by name (`sgd`, `momentum`, `nesterov`, `adam`, `adamw`, `rmsprop`), with
    /// PyTorch's default betas/alpha/eps and the given weight decay.
    pub fn parse(name: &str, weight_decay: f32) -> Result<Self> {
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(Error::invalid("optimizer", format!("weight decay {weight_decay} must be >= 0")));
        }
        Ok(match name {
            "sgd" => Optimizer::Sgd { momentum: 0.0, nesterov: false, weight_decay },
            "momentum" => Optimizer::Sgd { momentum: 0.9, nesterov: false, weight_decay },
            "nesterov" => Optimizer::Sgd { momentum: 0.9, nesterov: true, weight_decay },
            "adam" => Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay },
            "adamw" => Optimizer::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay },
            "rmsprop" => Optimizer::RmsProp { alpha: 0.99, eps: 1e-8, momentum: 0.0, weight_decay },
            _ => {
                return Err(Error::invalid(
                    "optimizer",
                    format!("unknown optimizer '{name}' (sgd, momentum, nesterov, adam, adamw, rmsprop)"),
                ))
            }
        })
    }

    /// The short name used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd { momentum, nesterov, .. } if *momentum == 0.0 && !nesterov => "sgd",
            Optimizer::Sgd { nesterov: false, .. } => "momentum",
            Optimizer::Sgd { .. } => "nesterov",
            Optimizer::Adam { .. } => "adam",
            Optimizer::AdamW { .. } => "adamw",
            Optimizer::RmsProp { .. } => "rmsprop",
        }
    }
}

/// Per-parameter optimizer state (buffers allocated on first use).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Steps taken so far.
    pub step: u64,
    /// Momentum buffer, or Adam's first moment.
    pub first: Vec<f32>,
    /// Adam's / RMSprop's second moment.
    pub second: Vec<f32>,
}

/// One optimizer step on one parameter tensor, in place.
pub fn step(opt: &Optimizer, lr: f32, param: &mut [f32], grad: &[f32], state: &mut State) -> Result<()> {
    const OP: &str = "optimizer step";
    if param.len() != grad.len() {
        return Err(Error::shape(OP, format!("parameter has {} values, gradient {}", param.len(), grad.len())));
    }
    if !lr.is_finite() || lr < 0.0 {
        return Err(Error::invalid(OP, format!("learning rate {lr} must be finite and >= 0")));
    }
    let first_step = state.step == 0;
    state.step += 1;
    let n = param.len();
    let ensure = |v: &mut Vec<f32>| {
        if v.len() != n {
            *v = vec![0.0; n];
        }
    };
    match *opt {
        Optimizer::Sgd { momentum, nesterov, weight_decay } => {
            if momentum != 0.0 {
                ensure(&mut state.first);
            }
            for i in 0..n {
                let mut g = grad[i];
                if weight_decay != 0.0 {
                    g += weight_decay * param[i];
                }
                if momentum != 0.0 {
                    let b = &mut state.first[i];
                    *b = if first_step { g } else { momentum * *b + g };
                    g = if nesterov { g + momentum * *b } else { *b };
                }
                param[i] -= lr * g;
            }
        }
        Optimizer::Adam { beta1, beta2, eps, weight_decay } | Optimizer::AdamW { beta1, beta2, eps, weight_decay } => {
            let decoupled = matches!(opt, Optimizer::AdamW { .. });
            ensure(&mut state.first);
            ensure(&mut state.second);
            let t = state.step as i32;
            let bc1 = 1.0 - (beta1 as f64).powi(t);
            let bc2_sqrt = (1.0 - (beta2 as f64).powi(t)).sqrt() as f32;
            let step_size = (lr as f64 / bc1) as f32;
            // Scalars formed in f64 and rounded once, as PyTorch does with Python floats.
            let (one_minus_b1, one_minus_b2) = ((1.0 - beta1 as f64) as f32, (1.0 - beta2 as f64) as f32);
            let decay = (1.0 - lr as f64 * weight_decay as f64) as f32;
            for i in 0..n {
                let mut g = grad[i];
                if decoupled {
                    param[i] *= decay;
                } else if weight_decay != 0.0 {
                    g += weight_decay * param[i];
                }
                let (m, v) = (&mut state.first[i], &mut state.second[i]);
                *m = beta1 * *m + one_minus_b1 * g;
                *v = beta2 * *v + one_minus_b2 * g * g;
                param[i] -= step_size * (*m / (v.sqrt() / bc2_sqrt + eps));
            }
        }
        Optimizer::RmsProp { alpha, eps, momentum, weight_decay } => {
            ensure(&mut state.second);
            if momentum > 0.0 {
                ensure(&mut state.first);
            }
            let one_minus_alpha = (1.0 - alpha as f64) as f32;
            for i in 0..n {
                let mut g = grad[i];
                if weight_decay != 0.0 {
                    g += weight_decay * param[i];
                }
                let v = &mut state.second[i];
                *v = alpha * *v + one_minus_alpha * g * g;
                let avg = v.sqrt() + eps;
                if momentum > 0.0 {
                    let b = &mut state.first[i];
                    *b = momentum * *b + g / avg;
                    param[i] -= lr * *b;
                } else {
                    param[i] -= lr * (g / avg);
                }
            }
        }
    }
    Ok(())
}

/// Scales all gradients so their global L2 norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> Result<f32> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::invalid("clip_grad_norm", format!("max norm {max_norm} must be positive")));
    }
    let norm = grads.iter().flat_map(|g| g.iter()).map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() as f32;
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    if coef < 1.0 {
        grads.iter_mut().for_each(|g| g.iter_mut().for_each(|v| *v *= coef));
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimizes `0.5 * sum (p - target)^2`: every optimizer must get close.
    #[test]
    fn every_optimizer_minimizes_a_quadratic() {
        let target = [1.0f32, -2.0, 0.5];
        for name in ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"] {
            let opt = Optimizer::parse(name, 0.0).unwrap();
            let lr = if name.starts_with("adam") || name == "rmsprop" { 0.05 } else { 0.1 };
            let mut p = vec![0.0f32; 3];
            let mut s = State::default();
            for _ in 0..500 {
                let g: Vec<f32> = p.iter().zip(&target).map(|(a, b)| a - b).collect();
                step(&opt, lr, &mut p, &g, &mut s).unwrap();
            }
            for (a, b) in p.iter().zip(&target) {
                assert!((a - b).abs() < 0.05, "{name}: {p:?}");
            }
            assert_eq!(opt.name(), name);
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let (mut a, mut b) = (vec![3.0f32], vec![4.0f32]);
        let n = clip_grad_norm(&mut [&mut a, &mut b], 1.0).unwrap();
        assert_eq!(n, 5.0);
        assert!((a[0] - 0.6).abs() < 1e-6 && (b[0] - 0.8).abs() < 1e-6);
        assert!(clip_grad_norm(&mut [&mut a], 0.0).is_err());
    }

    #[test]
    fn bad_arguments_are_errors() {
        let opt = Optimizer::parse("sgd", 0.0).unwrap();
        assert!(step(&opt, 0.1, &mut [0.0; 2], &[0.0; 3], &mut State::default()).is_err());
        assert!(step(&opt, f32::NAN, &mut [0.0], &[0.0], &mut State::default()).is_err());
        assert!(Optimizer::parse("lbfgs", 0.0).is_err());
        assert!(Optimizer::parse("sgd", -1.0).is_err());
    }
}
