//! Learning-rate schedules as functions of the 0-based optimizer step `t`:
//!
//! - linear warm-up over the first `W` steps: `lr(t) = base * (t + 1) / W` for `t < W`;
//! - then, with `u = t - W` and `U = total - W`:
//!   constant `base`; step decay `base * gamma^floor(u / every)`;
//!   cosine `min + (base - min) * (1 + cos(pi * min(u, U) / U)) / 2` (PyTorch's
//!   `CosineAnnealingLR` closed form).

use crate::base::error::{Error, Result};

/// Shape of the schedule after warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    Constant,
    Step { every: usize, gamma: f32 },
    Cosine { min_lr: f32 },
}

/// A complete schedule over `total` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub base_lr: f32,
    pub warmup: usize,
    pub total: usize,
    pub decay: Decay,
}

impl Schedule {
    pub fn new(base_lr: f32, warmup: usize, total: usize, decay: Decay) -> Result<Self> {
        if !(base_lr.is_finite() && base_lr > 0.0) {
            return Err(Error::invalid("schedule", format!("learning rate {base_lr} must be positive")));
        }
        if let Decay::Step { every: 0, .. } = decay {
            return Err(Error::invalid("schedule", "step decay needs a period of at least 1 step"));
        }
        Ok(Schedule { base_lr, warmup, total, decay })
    }

    /// Constant learning rate.
    pub fn constant(base_lr: f32) -> Result<Self> {
        Self::new(base_lr, 0, 0, Decay::Constant)
    }

    /// Learning rate at 0-based step `t`.
    pub fn lr(&self, t: usize) -> f32 {
        if t < self.warmup {
            return self.base_lr * (t + 1) as f32 / self.warmup as f32;
        }
        let u = t - self.warmup;
        match self.decay {
            Decay::Constant => self.base_lr,
            Decay::Step { every, gamma } => self.base_lr * gamma.powi((u / every.max(1)) as i32),
            Decay::Cosine { min_lr } => {
                let span = self.total.saturating_sub(self.warmup).max(1);
                let frac = u.min(span) as f64 / span as f64;
                (min_lr as f64 + (self.base_lr - min_lr) as f64 * (1.0 + (std::f64::consts::PI * frac).cos()) / 2.0)
                    as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_and_step() {
        let s = Schedule::new(1.0, 4, 14, Decay::Cosine { min_lr: 0.0 }).unwrap();
        assert_eq!([s.lr(0), s.lr(1), s.lr(3)], [0.25, 0.5, 1.0]);
        assert_eq!(s.lr(4), 1.0);
        assert!((s.lr(9) - 0.5).abs() < 1e-6);
        assert!(s.lr(14).abs() < 1e-6 && s.lr(100).abs() < 1e-6);
        let s = Schedule::new(0.8, 0, 0, Decay::Step { every: 3, gamma: 0.5 }).unwrap();
        assert_eq!([s.lr(0), s.lr(2), s.lr(3), s.lr(6)], [0.8, 0.8, 0.4, 0.2]);
        assert!(Schedule::new(0.0, 0, 0, Decay::Constant).is_err());
        assert!(Schedule::new(0.1, 0, 0, Decay::Step { every: 0, gamma: 0.1 }).is_err());
    }
}
