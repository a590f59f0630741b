//! Image preprocessing, the same on every backend:
//! 1. centre crop: a square of side `round(crop_fraction * min(w, h))` (87.5% by default, the
//!    EfficientNet evaluation crop), offset `floor((w - side) / 2)`, `floor((h - side) / 2)`;
//! 2. resize the square to `size x size`, separably (rows, then columns), with
//!    - area averaging when shrinking (`side > size`): output pixel `o` averages source
//!      `[o * r, (o + 1) * r)` with `r = side / size`, partial pixels weighted by overlap;
//!    - bilinear when enlarging: source coordinate `(o + 0.5) * r - 0.5`, clamped to the edge;
//! 3. normalize: `(v - mean) / scale` with `mean = 127`, `scale = 128` for EfficientNet-Lite.
//!
//! Input: interleaved 8-bit RGB or RGBA (alpha ignored), row-major. Output: f32 NHWC
//! `[1, size, size, 3]`.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Preprocessing parameters (stored in the model file).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocess {
    pub size: usize,
    pub crop_fraction: f32,
    pub mean: f32,
    pub scale: f32,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess { size: 224, crop_fraction: 0.875, mean: 127.0, scale: 128.0 }
    }
}

/// Source taps `(index, weight)` of each output pixel along one axis.
fn axis_taps(src: usize, dst: usize) -> Vec<Vec<(usize, f32)>> {
    let r = src as f64 / dst as f64;
    (0..dst)
        .map(|o| {
            if src > dst {
                let (a, b) = (o as f64 * r, (o + 1) as f64 * r);
                let mut taps = vec![];
                let mut i = a.floor() as usize;
                while (i as f64) < b && i < src {
                    let overlap = (b.min(i as f64 + 1.0) - a.max(i as f64)) / r;
                    if overlap > 0.0 {
                        taps.push((i, overlap as f32));
                    }
                    i += 1;
                }
                taps
            } else {
                let c = ((o as f64 + 0.5) * r - 0.5).clamp(0.0, (src - 1) as f64);
                let i0 = c.floor() as usize;
                let f = (c - i0 as f64) as f32;
                let i1 = (i0 + 1).min(src - 1);
                if f == 0.0 || i1 == i0 {
                    vec![(i0, 1.0)]
                } else {
                    vec![(i0, 1.0 - f), (i1, f)]
                }
            }
        })
        .collect()
}

/// Preprocesses an 8-bit RGB(A) image of `width x height` (`channels` 3 or 4).
pub fn preprocess(pixels: &[u8], width: usize, height: usize, channels: usize, p: &Preprocess) -> Result<Tensor> {
    const OP: &str = "preprocess";
    if channels != 3 && channels != 4 {
        return Err(Error::invalid(OP, format!("expected 3 (RGB) or 4 (RGBA) channels, got {channels}")));
    }
    if width == 0 || height == 0 || p.size == 0 {
        return Err(Error::invalid(OP, format!("empty image ({width}x{height}) or output size {}", p.size)));
    }
    let need = width.checked_mul(height).and_then(|v| v.checked_mul(channels));
    if need != Some(pixels.len()) {
        return Err(Error::shape(
            OP,
            format!("{width}x{height}x{channels} image needs {need:?} bytes, got {}", pixels.len()),
        ));
    }
    if !(p.crop_fraction > 0.0 && p.crop_fraction <= 1.0 && p.scale.is_finite() && p.scale != 0.0) {
        return Err(Error::invalid(OP, format!("crop fraction {} must be in (0, 1], scale non-zero", p.crop_fraction)));
    }
    let side = ((width.min(height) as f64 * p.crop_fraction as f64).round() as usize).max(1);
    let (x0, y0) = ((width - side) / 2, (height - side) / 2);
    let taps = axis_taps(side, p.size);
    // Horizontal pass over the crop's rows: [side rows][size cols][3].
    let mut rows = vec![0f32; side * p.size * 3];
    for y in 0..side {
        let src = &pixels[((y0 + y) * width) * channels..];
        for (ox, t) in taps.iter().enumerate() {
            for c in 0..3 {
                rows[(y * p.size + ox) * 3 + c] = t.iter().map(|&(i, w)| src[(x0 + i) * channels + c] as f32 * w).sum();
            }
        }
    }
    // Vertical pass, then normalization.
    let mut out = vec![0f32; p.size * p.size * 3];
    for (oy, t) in taps.iter().enumerate() {
        for ox in 0..p.size {
            for c in 0..3 {
                let v: f32 = t.iter().map(|&(i, w)| rows[(i * p.size + ox) * 3 + c] * w).sum();
                out[(oy * p.size + ox) * 3 + c] = (v - p.mean) / p.scale;
            }
        }
    }
    Tensor::new(vec![1, p.size, p.size, 3], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_stays_constant_and_normalizes() {
        let img = vec![200u8; 50 * 30 * 4];
        let t = preprocess(&img, 50, 30, 4, &Preprocess { size: 16, ..Default::default() }).unwrap();
        for &v in t.data() {
            assert!((v - (200.0 - 127.0) / 128.0).abs() < 1e-5, "{v}");
        }
        let t = preprocess(&img[..8 * 8 * 3], 8, 8, 3, &Preprocess::default()).unwrap();
        assert_eq!(t.shape(), &[1, 224, 224, 3]);
    }

    #[test]
    fn area_taps_cover_each_output_with_unit_weight() {
        for (src, dst) in [(196, 224), (448, 224), (300, 224), (28, 224), (224, 224)] {
            for t in axis_taps(src, dst) {
                let w: f32 = t.iter().map(|x| x.1).sum();
                assert!((w - 1.0).abs() < 1e-5, "{src}->{dst}: {t:?}");
            }
        }
    }

    #[test]
    fn bad_images_are_errors() {
        assert!(preprocess(&[0; 10], 2, 2, 3, &Preprocess::default()).is_err());
        assert!(preprocess(&[], 0, 0, 3, &Preprocess::default()).is_err());
        assert!(preprocess(&[0; 8], 2, 2, 2, &Preprocess::default()).is_err());
    }
}
