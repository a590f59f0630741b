//! Fake quantization for quantization-aware training (QAT).
//!
//! The float forward pass rounds what the int8 engine rounds, so training sees the int8
//! network's errors:
//! - weights per output channel, symmetric, exactly as the exporter quantizes them
//!   (`s_c = max |w_c| / 127`, `w~ = round(w / s_c) s_c`, see
//!   [`quantize_weights_per_channel`]);
//! - activations per tensor with the engine's asymmetric grid: `(s, z)` from the range
//!   `[lo, hi]` ([`params_from_range`]), `x~ = (clamp(round(x / s) + z, -128, 127) - z) s`.
//!
//! Gradients use the straight-through estimator: `d x~ / d x = 1` where `x` lies on the grid's
//! span and 0 where it was clipped; weight gradients are computed at `w~` and applied to the
//! float `w`. Activation ranges are tracked while training by an exponential moving average of
//! each batch's min and max ([`RANGE_MOMENTUM`]), starting from the post-training
//! calibration's ranges; evaluation passes use them without moving them.

use crate::base::error::Result;
use crate::quant::calibrate::{params_from_range, quantize_weights_per_channel};
use crate::quant::requant::{dequantize, quantize_value};

/// Weight of the old range in each update: `lo <- m lo + (1 - m) min(batch)`.
pub const RANGE_MOMENTUM: f32 = 0.99;

/// Per-channel fake-quantized weights `[cout, ...]` (rows of `w.len() / cout` values).
pub fn fake_quant_weights(w: &[f32], cout: usize) -> Result<Vec<f32>> {
    let (q, s) = quantize_weights_per_channel(w, cout, None)?;
    let per = w.len() / cout.max(1);
    Ok(q.iter().enumerate().map(|(i, &v)| v as f32 * s[i / per.max(1)]).collect())
}

/// The grid's span `[(-128 - z) s, (127 - z) s]` for a range.
pub fn grid_span(lo: f32, hi: f32) -> (f32, f32) {
    let (s, z) = params_from_range(lo, hi);
    ((-128 - z) as f32 * s, (127 - z) as f32 * s)
}

/// Fake-quantizes `x` in place on the grid of `[lo, hi]`; returns the STE mask (true where
/// the value was inside the grid's span, so its gradient passes).
pub fn fake_quant_values(x: &mut [f32], lo: f32, hi: f32) -> Vec<bool> {
    let (s, z) = params_from_range(lo, hi);
    let (a, b) = grid_span(lo, hi);
    x.iter_mut()
        .map(|v| {
            let inside = *v >= a && *v <= b;
            *v = dequantize(quantize_value(*v, s, z, -128, 127), s, z);
            inside
        })
        .collect()
}

/// Moves a tracked range toward a batch's min and max.
pub fn track_range(range: &mut (f32, f32), batch: &[f32]) {
    let (mn, mx) = batch.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if mn.is_finite() && mx.is_finite() {
        let m = RANGE_MOMENTUM;
        range.0 = m * range.0 + (1.0 - m) * mn;
        range.1 = m * range.1 + (1.0 - m) * mx;
    }
}

/// Fake-quantization state of a trained block suffix ([`crate::train::blocks::SuffixModel`]).
#[derive(Clone, Debug, Default)]
pub struct FakeQuant {
    /// Per local value (0 = the cut value, `j + 1` = node j's output): its range, or `None`
    /// for values the engine keeps in float (the embedding).
    pub ranges: Vec<Option<(f32, f32)>>,
    /// Whether forward passes move the ranges (training batches only).
    pub training: bool,
    /// From the last forward: per value, the STE mask.
    pub(crate) masks: Vec<Option<Vec<bool>>>,
}

impl FakeQuant {
    /// Fake-quantizes local value `v` (tracking its range first when training; never the
    /// cut value, which the frozen int8 prefix produces on a fixed grid).
    pub(crate) fn apply(&mut self, v: usize, x: &mut [f32]) {
        if self.masks.len() <= v {
            self.masks.resize(v + 1, None);
        }
        let Some(Some(range)) = self.ranges.get_mut(v) else {
            self.masks[v] = None;
            return;
        };
        if self.training && v > 0 {
            track_range(range, x);
        }
        let (lo, hi) = *range;
        self.masks[v] = Some(fake_quant_values(x, lo, hi));
    }

    /// Zeroes the gradient of clipped elements of value `v`.
    pub(crate) fn mask_gradient(&self, v: usize, dy: &mut [f32]) {
        if let Some(Some(m)) = self.masks.get(v) {
            dy.iter_mut().zip(m).filter(|(_, &keep)| !keep).for_each(|(d, _)| *d = 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_on_the_engine_grid_and_clipped_ones_stop_the_gradient() {
        let (lo, hi) = (0.0, 6.0);
        let (s, z) = params_from_range(lo, hi);
        let mut x = vec![-1.0, 0.0, 0.013, 2.5, 5.99, 9.0];
        let m = fake_quant_values(&mut x, lo, hi);
        for v in &x {
            let k = (v / s).round() + z as f32;
            assert!(((k - z as f32) * s - v).abs() < 1e-6 && (-128.0..=127.0).contains(&k), "{v} is off the grid");
        }
        assert_eq!(m, vec![false, true, true, true, true, false]);
        assert_eq!(x[0], 0.0);
        assert!((x[5] - grid_span(lo, hi).1).abs() < 1e-6, "9 clips to the top of the grid");
        let mut d = vec![1.0; 6];
        let fq = FakeQuant { ranges: vec![Some((lo, hi))], training: false, masks: vec![Some(m)] };
        fq.mask_gradient(0, &mut d);
        assert_eq!(d, vec![0.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn weights_match_the_exporters_per_channel_rounding() {
        let w = [0.5, -0.25, 0.1, 2.0, 1.0, -0.7];
        let fq = fake_quant_weights(&w, 2).unwrap();
        let (q, s) = quantize_weights_per_channel(&w, 2, None).unwrap();
        for i in 0..6 {
            assert_eq!(fq[i], q[i] as f32 * s[i / 3]);
        }
        assert!((fq[0] - 0.5).abs() < 1e-6 && (fq[3] - 2.0).abs() < 1e-6, "each channel's max is exact");
    }

    #[test]
    fn tracked_ranges_follow_the_batches_and_only_when_training() {
        let mut fq = FakeQuant { ranges: vec![Some((0.0, 1.0)), Some((0.0, 1.0))], ..Default::default() };
        fq.training = true;
        for _ in 0..1000 {
            fq.apply(1, &mut [0.0, 4.0]);
            fq.apply(0, &mut [0.0, 4.0]);
        }
        let r = fq.ranges[1].unwrap();
        assert!((r.1 - 4.0).abs() < 1e-3 && r.0.abs() < 1e-6, "{r:?}");
        assert_eq!(fq.ranges[0], Some((0.0, 1.0)), "the cut value's grid is fixed");
        fq.training = false;
        fq.apply(1, &mut [0.0, 100.0]);
        assert_eq!(fq.ranges[1], Some(r));
    }
}
