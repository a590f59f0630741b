//! [`QParams`]: scales and zero points of a quantized tensor, per tensor or per axis.

use crate::base::error::{Error, Result};

/// Quantization parameters. Per-tensor when `axis` is `None` (one scale, one zero point);
/// per-axis when `axis = Some(a)`, with one scale and zero point per index along `a`
/// (`real[.., i, ..] = (q - zero_points[i]) * scales[i]`).
#[derive(Clone, Debug, PartialEq)]
pub struct QParams {
    scales: Vec<f32>,
    zero_points: Vec<i32>,
    axis: Option<usize>,
}

fn check_scale(op: &'static str, s: f32) -> Result<()> {
    if s.is_finite() && s > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(op, format!("scale must be finite and > 0, got {s}")))
    }
}

impl QParams {
    /// One scale and zero point for the whole tensor.
    pub fn per_tensor(scale: f32, zero_point: i32) -> Result<Self> {
        check_scale("qparams", scale)?;
        Ok(QParams { scales: vec![scale], zero_points: vec![zero_point], axis: None })
    }

    /// One scale and zero point per index along `axis`.
    pub fn per_axis(axis: usize, scales: Vec<f32>, zero_points: Vec<i32>) -> Result<Self> {
        if scales.len() != zero_points.len() || scales.is_empty() {
            return Err(Error::invalid(
                "qparams",
                format!("{} scales but {} zero points", scales.len(), zero_points.len()),
            ));
        }
        for &s in &scales {
            check_scale("qparams", s)?;
        }
        Ok(QParams { scales, zero_points, axis: Some(axis) })
    }

    pub fn axis(&self) -> Option<usize> {
        self.axis
    }
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    pub fn zero_points(&self) -> &[i32] {
        &self.zero_points
    }
    /// Number of (scale, zero point) pairs.
    pub fn len(&self) -> usize {
        self.scales.len()
    }
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Scale of channel `i` (per-tensor params return their only scale for every `i`).
    pub fn scale(&self, i: usize) -> f32 {
        if self.scales.len() == 1 {
            self.scales[0]
        } else {
            self.scales[i]
        }
    }

    /// Zero point of channel `i` (see [`QParams::scale`]).
    pub fn zero_point(&self, i: usize) -> i32 {
        if self.zero_points.len() == 1 {
            self.zero_points[0]
        } else {
            self.zero_points[i]
        }
    }

    /// The single per-tensor (scale, zero point), or an error naming `op`.
    pub fn per_tensor_pair(&self, op: &'static str) -> Result<(f32, i32)> {
        match self.axis {
            None => Ok((self.scales[0], self.zero_points[0])),
            Some(a) => Err(Error::invalid(op, format!("expected per-tensor quantization, got per-axis (axis {a})"))),
        }
    }

    /// Checks these params can describe a tensor of `shape`: per-axis params need
    /// `axis < rank` and one pair per index along it.
    pub fn check_for_shape(&self, op: &'static str, shape: &[usize]) -> Result<()> {
        if let Some(a) = self.axis {
            if a >= shape.len() || shape[a] != self.len() {
                return Err(Error::shape(
                    op,
                    format!("{} per-axis params on axis {a} do not fit shape {shape:?}", self.len()),
                ));
            }
        }
        Ok(())
    }
}
