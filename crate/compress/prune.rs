//! Unstructured magnitude pruning with a gradual schedule, around any [`Trainable`].
//!
//! At the start of epoch `e` (0-based) of `E`, the target sparsity is
//! `s_e = S (1 - (1 - min(1, (e + 1) / R))^3)` (Zhu & Gupta's cubic schedule, reaching `S`
//! after the ramp of `R` epochs and holding it). Each weight tensor (not biases) then keeps its
//! `round((1 - s_e) n)` largest magnitudes; the others are set to zero and stay zero: the
//! mask is applied before every forward and to every gradient, so optimizer moments of pruned
//! weights do not build up. Pruned weights never return (masks only grow), which keeps the
//! schedule's sparsity exact. Every tensor gets the same sparsity, so no layer is emptied.

use crate::base::error::{Error, Result};

use crate::train::trainer::Trainable;

/// A model whose weights are pruned by magnitude while it trains.
#[derive(Clone, Debug)]
pub struct Pruned<M> {
    pub inner: M,
    /// Final sparsity `S` in `[0, 1)`.
    pub target: f32,
    /// Epochs over which the sparsity ramps up to `S`.
    pub ramp_epochs: usize,
    /// Per parameter tensor, the kept entries (`None` for tensors that are not pruned).
    masks: Vec<Option<Vec<bool>>>,
    /// The sparsity the masks hold now.
    current: f32,
}

/// Checks a sparsity argument: in `[0, 1)`.
pub fn check_sparsity(s: f32) -> Result<f32> {
    if s.is_finite() && (0.0..1.0).contains(&s) {
        Ok(s)
    } else {
        Err(Error::invalid("prune", format!("sparsity {s} is outside [0, 1): it is the fraction of weights removed")))
    }
}

/// The cubic schedule's sparsity at the start of epoch `epoch` (see the module header).
pub fn scheduled_sparsity(target: f32, epoch: usize, ramp_epochs: usize) -> f32 {
    let t = ((epoch + 1) as f32 / ramp_epochs.max(1) as f32).min(1.0);
    target * (1.0 - (1.0 - t).powi(3))
}

/// Keeps the `round((1 - sparsity) n)` largest magnitudes of `w` (ties by position), and
/// never an entry `previous` already removed.
pub fn magnitude_mask(w: &[f32], sparsity: f32, previous: Option<&[bool]>) -> Vec<bool> {
    let drop = ((w.len() as f64) * sparsity as f64).round() as usize;
    let mut order: Vec<usize> = (0..w.len()).collect();
    // Entries already pruned sort first (they are zero), then by magnitude.
    let gone = |i: usize| previous.is_some_and(|p| !p[i]);
    order.sort_by(|&a, &b| gone(b).cmp(&gone(a)).then(w[a].abs().total_cmp(&w[b].abs())).then(a.cmp(&b)));
    let mut keep = vec![true; w.len()];
    let already = (0..w.len()).filter(|&i| gone(i)).count();
    for &i in order.iter().take(drop.max(already)) {
        keep[i] = false;
    }
    keep
}

impl<M: Trainable> Pruned<M> {
    pub fn new(inner: M, target: f32, ramp_epochs: usize) -> Result<Self> {
        check_sparsity(target)?;
        Ok(Pruned { inner, target, ramp_epochs: ramp_epochs.max(1), masks: vec![], current: 0.0 })
    }

    /// Sets the masks for `sparsity` and zeroes the pruned weights.
    pub fn prune_to(&mut self, sparsity: f32) {
        let which = self.inner.weight_mask();
        let old = std::mem::take(&mut self.masks);
        let mut masks = vec![];
        for (i, p) in self.inner.params_mut().into_iter().enumerate() {
            if which.get(i).copied().unwrap_or(false) {
                let prev = old.get(i).and_then(|m| m.as_deref());
                let m = magnitude_mask(p, sparsity, prev);
                p.iter_mut().zip(&m).filter(|(_, &k)| !k).for_each(|(v, _)| *v = 0.0);
                masks.push(Some(m));
            } else {
                masks.push(None);
            }
        }
        self.masks = masks;
        self.current = sparsity;
    }

    /// Zeroes the masked weights (after an optimizer step moved them).
    pub fn apply_masks(&mut self) {
        let masks = &self.masks;
        for (p, m) in self.inner.params_mut().into_iter().zip(masks) {
            if let Some(m) = m {
                p.iter_mut().zip(m).filter(|(_, &k)| !k).for_each(|(v, _)| *v = 0.0);
            }
        }
    }

    /// `(zero weights, weights)` over the pruned tensors.
    pub fn counts(&mut self) -> (usize, usize) {
        let which = self.inner.weight_mask();
        let mut zero_total = (0, 0);
        for (i, p) in self.inner.params_mut().into_iter().enumerate() {
            if which.get(i).copied().unwrap_or(false) {
                zero_total.0 += p.iter().filter(|v| **v == 0.0).count();
                zero_total.1 += p.len();
            }
        }
        zero_total
    }
}

impl<M: Trainable> Trainable for Pruned<M> {
    fn classes(&self) -> usize {
        self.inner.classes()
    }
    fn forward(&mut self, batch: &[&[f32]]) -> Result<Vec<f32>> {
        self.apply_masks();
        self.inner.forward(batch)
    }
    fn backward(&mut self, dlogits: &[f32]) -> Result<Vec<Vec<f32>>> {
        let mut g = self.inner.backward(dlogits)?;
        for (g, m) in g.iter_mut().zip(&self.masks) {
            if let Some(m) = m {
                g.iter_mut().zip(m).filter(|(_, &k)| !k).for_each(|(v, _)| *v = 0.0);
            }
        }
        Ok(g)
    }
    fn params_mut(&mut self) -> Vec<&mut [f32]> {
        self.inner.params_mut()
    }
    fn lr_scales(&self) -> Vec<f32> {
        self.inner.lr_scales()
    }
    fn begin_epoch(&mut self, epoch: usize, epochs: usize) {
        self.prune_to(scheduled_sparsity(self.target, epoch, self.ramp_epochs));
        self.inner.begin_epoch(epoch, epochs);
    }
    fn set_training(&mut self, training: bool) {
        self.inner.set_training(training);
    }
    fn weight_mask(&self) -> Vec<bool> {
        self.inner.weight_mask()
    }
    /// Validation keeps the best epoch only among those at the final sparsity.
    fn selectable(&self) -> bool {
        self.current >= self.target && self.inner.selectable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::rng::Rng;
    use crate::train::head::LinearHead;
    use crate::train::trainer::{train, Dataset, HeadModel, TrainConfig};

    #[test]
    fn schedule_ramps_cubically_to_the_target_and_holds() {
        let s: Vec<f32> = (0..6).map(|e| scheduled_sparsity(0.5, e, 4)).collect();
        assert!(s.windows(2).all(|w| w[0] <= w[1]), "{s:?}");
        assert!((s[0] - 0.5 * (1.0 - 0.75f32.powi(3))).abs() < 1e-6);
        assert_eq!((s[3], s[5]), (0.5, 0.5));
    }

    #[test]
    fn masks_keep_the_largest_magnitudes_and_never_revive() {
        let w = [0.1, -3.0, 0.5, 2.0, -0.2, 0.0];
        let m = magnitude_mask(&w, 0.5, None);
        assert_eq!(m, vec![false, true, true, true, false, false]);
        // Entry 1 was pruned before: it stays pruned although it is now the largest.
        let prev = [true, false, true, true, true, true];
        let m = magnitude_mask(&w, 1.0 / 3.0, Some(&prev));
        assert_eq!(m.iter().filter(|k| !**k).count(), 2);
        assert!(!m[1] && !m[5]);
    }

    #[test]
    fn bad_sparsity_is_a_clear_error() {
        for s in [-0.1, 1.0, 1.5, f32::NAN] {
            let e = check_sparsity(s).unwrap_err().to_string();
            assert!(e.contains("outside [0, 1)"), "{e}");
        }
        assert!(check_sparsity(0.0).is_ok() && check_sparsity(0.9).is_ok());
    }

    /// Training a head under a 50% schedule ends with exactly half its weights zero and
    /// still separates the classes.
    #[test]
    fn trains_to_the_target_sparsity() {
        let mut rng = Rng::new(4);
        let (mut x, mut y) = (vec![], vec![]);
        for i in 0..60 {
            let c = i % 3;
            for d in 0..8 {
                x.push(if d % 3 == c { 2.0 } else { 0.0 } + rng.uniform(-0.5, 0.5));
            }
            y.push(c);
        }
        let data = Dataset { features: &x, labels: &y, dim: 8, variants: 1, classes: 3, teacher: None };
        let head = HeadModel::new(LinearHead::new(8, 3, &mut Rng::new(1)).unwrap());
        let model = Pruned::new(head, 0.5, 3).unwrap();
        let cfg = TrainConfig { epochs: 6, batch_size: 8, lr: 0.05, ..Default::default() };
        let mut r = train(model, &data, &cfg, &mut |_| true).unwrap();
        r.model.apply_masks();
        assert_eq!(r.model.counts(), (12, 24));
        let last = r.history.last().unwrap();
        assert!(last.accuracy > 0.9, "training accuracy {}", last.accuracy);
    }
}
