//! Activation calibration for post-training quantization.
//!
//! Two passes over the calibration images: the first records each value's min and max, the
//! second fills a 2048-bin histogram over that range. A method then picks the real range
//! `[lo, hi]` that int8 covers:
//! - `minmax`: the observed range;
//! - `percentile`: the 0.01% and 99.99% quantiles (clips rare outliers);
//! - `mse`: shrinks the observed range by a factor `a` (0.30..=1.00, step 0.01), keeping its
//!   asymmetry, and picks the `a` with the least expected squared error (clipping plus rounding)
//!   over the histogram, each bin's mass placed at its centre.
//!
//! The range always includes 0 (so zero padding and ReLU outputs are exact), and becomes
//! `scale = (hi - lo) / 255`, `zero_point = clamp(round(-128 - lo / scale), -128, 127)`.

use crate::base::error::{Error, Result};

/// Calibration method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    MinMax,
    Percentile,
    Mse,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "minmax" => Ok(Method::MinMax),
            "percentile" => Ok(Method::Percentile),
            "mse" => Ok(Method::Mse),
            other => Err(Error::invalid("calibrate", format!("unknown method '{other}' (minmax, percentile, mse)"))),
        }
    }
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Percentile => "percentile",
            Method::Mse => "mse",
        }
    }
}

const BINS: usize = 2048;
const PERCENTILE: f64 = 0.9999;

/// Running range of one value (pass 1).
#[derive(Clone, Copy, Debug)]
pub struct MinMax {
    pub min: f32,
    pub max: f32,
}

impl Default for MinMax {
    fn default() -> Self {
        MinMax { min: f32::INFINITY, max: f32::NEG_INFINITY }
    }
}

impl MinMax {
    pub fn observe(&mut self, data: &[f32]) {
        for &v in data {
            if v.is_finite() {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
            }
        }
    }
    /// The range, widened to include 0.
    pub fn range(&self) -> (f32, f32) {
        if self.min > self.max {
            return (0.0, 0.0);
        }
        (self.min.min(0.0), self.max.max(0.0))
    }
}

/// Histogram of one value over its pass-1 range (pass 2).
#[derive(Clone, Debug)]
pub struct Histogram {
    pub lo: f32,
    pub hi: f32,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(range: (f32, f32)) -> Self {
        Histogram { lo: range.0, hi: range.1, counts: vec![0; BINS] }
    }
    pub fn observe(&mut self, data: &[f32]) {
        let w = (self.hi - self.lo) as f64;
        if w <= 0.0 {
            return;
        }
        for &v in data {
            if v.is_finite() {
                let b = (((v - self.lo) as f64 / w) * BINS as f64) as isize;
                self.counts[b.clamp(0, BINS as isize - 1) as usize] += 1;
            }
        }
    }
    fn centre(&self, b: usize) -> f64 {
        self.lo as f64 + (b as f64 + 0.5) * (self.hi - self.lo) as f64 / BINS as f64
    }
    /// Value below which `q` of the mass lies.
    fn quantile(&self, q: f64) -> f32 {
        let total: u64 = self.counts.iter().sum();
        let target = (q * total as f64).ceil() as u64;
        let mut acc = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target.max(1) {
                return self.centre(b) as f32;
            }
        }
        self.hi
    }
    /// Expected squared error of quantizing this distribution to int8 over `[lo, hi]`.
    fn quant_mse(&self, lo: f32, hi: f32) -> f64 {
        let (scale, zp) = params_from_range(lo, hi);
        let (scale, zp) = (scale as f64, zp as f64);
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| {
                let x = self.centre(b);
                let q = ((x / scale).round() + zp).clamp(-128.0, 127.0);
                let e = (q - zp) * scale - x;
                e * e * c as f64
            })
            .sum()
    }
}

/// int8 `(scale, zero_point)` covering `[lo, hi]` (which must contain 0).
pub fn params_from_range(lo: f32, hi: f32) -> (f32, i32) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi as f64 - lo as f64) / 255.0) as f32;
    if !(scale.is_finite() && scale > 0.0) {
        return (1.0, 0); // an all-zero value: any scale represents it exactly
    }
    let zp = (-128.0 - lo as f64 / scale as f64).round().clamp(-128.0, 127.0) as i32;
    (scale, zp)
}

/// The range a method chooses from the pass-1 range and the pass-2 histogram.
pub fn choose_range(method: Method, mm: &MinMax, hist: &Histogram) -> (f32, f32) {
    let (lo, hi) = mm.range();
    match method {
        Method::MinMax => (lo, hi),
        Method::Percentile => (hist.quantile(1.0 - PERCENTILE).min(0.0), hist.quantile(PERCENTILE).max(0.0)),
        Method::Mse => {
            let mut best = (f64::INFINITY, (lo, hi));
            for step in 30..=100 {
                let a = step as f32 / 100.0;
                let err = hist.quant_mse(lo * a, hi * a);
                if err < best.0 {
                    best = (err, (lo * a, hi * a));
                }
            }
            best.1
        }
    }
}

/// Symmetric per-output-channel int8 weights (`[-127, 127]`, zero point 0) of a `[Cout, ...]`
/// tensor: `scale[c] = max(max|w[c]| / 127, min_scale[c])`.
///
/// `min_scale` keeps the channel's int32 bias in range: the bias is stored as
/// `b / (s_in * s_w[c])`, and a nearly dead channel (BN-folded weights ~1e-10 next to a bias of
/// several units, which EfficientNet-Lite0's stem has) would overflow i32 and silently lose its
/// bias. Raising that channel's scale only rounds its negligible weights to zero.
pub fn quantize_weights_per_channel(w: &[f32], cout: usize, min_scale: Option<&[f32]>) -> Result<(Vec<i8>, Vec<f32>)> {
    if cout == 0 || !w.len().is_multiple_of(cout) || min_scale.is_some_and(|m| m.len() != cout) {
        return Err(Error::shape("quantize weights", format!("{} values for {cout} channels", w.len())));
    }
    let per = w.len() / cout;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(cout);
    for (c, row) in w.chunks_exact(per.max(1)).enumerate() {
        let m = row.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let floor = min_scale.map_or(0.0, |ms| ms[c]);
        let s = if m > 0.0 && m.is_finite() { (m / 127.0).max(floor) } else { floor.max(1.0) };
        scales.push(s);
        q.extend(row.iter().map(|&v| super::quantize_value(v, s, 0, -127, 127) as i8));
    }
    Ok((q, scales))
}

/// Largest |int32 bias| a quantized layer may carry, leaving the other half of the i32 range
/// to the accumulated products (at most 32,000 * 255 * 255 < 2^31).
pub const MAX_BIAS_Q: f64 = (1u64 << 30) as f64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_cover_range_and_zero() {
        let (s, z) = params_from_range(0.0, 6.0);
        assert_eq!(z, -128);
        assert!((s - 6.0 / 255.0).abs() < 1e-7);
        let (s, z) = params_from_range(-1.0, 1.0);
        assert!((-1.0 / s - (-128 - z) as f32).abs() < 1.0);
    }

    #[test]
    fn percentile_and_mse_clip_outliers() {
        let mut data: Vec<f32> = (0..100_000).map(|i| ((i % 1000) as f32 / 1000.0) * 2.0 - 1.0).collect();
        data.push(50.0);
        let mut mm = MinMax::default();
        mm.observe(&data);
        let mut h = Histogram::new(mm.range());
        h.observe(&data);
        let (_, hi_mm) = choose_range(Method::MinMax, &mm, &h);
        let (_, hi_p) = choose_range(Method::Percentile, &mm, &h);
        let (_, hi_mse) = choose_range(Method::Mse, &mm, &h);
        assert_eq!(hi_mm, 50.0);
        assert!(hi_p < 2.0, "{hi_p}");
        assert!(hi_mse < 50.0, "{hi_mse}");
    }

    #[test]
    fn weights_are_symmetric_per_channel() {
        let (q, s) = quantize_weights_per_channel(&[0.5, -1.0, 0.25, 2.0, 0.0, -0.5], 2, None).unwrap();
        assert_eq!(q, vec![64, -127, 32, 127, 0, -32]);
        assert!((s[0] - 1.0 / 127.0).abs() < 1e-9 && (s[1] - 2.0 / 127.0).abs() < 1e-9);
        // A nearly dead channel gets the floor scale and rounds to zero.
        let (q, s) = quantize_weights_per_channel(&[1e-10, -1e-10, 1.0, 0.5], 2, Some(&[1e-3, 0.0])).unwrap();
        assert_eq!((q, s[0]), (vec![0, 0, 127, 64], 1e-3));
    }
}
