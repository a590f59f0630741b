//! Image preprocessing, the same on every backend:
//! 1. centre crop: a square of side `round(crop_fraction * min(w, h))` (87.5% by default, the
//!    EfficientNet evaluation crop), offset `floor((w - side) / 2)`, `floor((h - side) / 2)`;
//! 2. resize the square to `size x size`, separably (rows, then columns), with
//!    - area averaging when shrinking (`side > size`): output pixel `o` averages source
//!      `[o * r, (o + 1) * r)` with `r = side / size`, partial pixels weighted by overlap;
//!    - bilinear when enlarging: source coordinate `(o + 0.5) * r - 0.5`, clamped to the edge;
//! 3. normalize: `(v - mean) / scale` with `mean = 127`, `scale = 128` for EfficientNet-Lite;
//!    per channel `(v - mean[c]) / scale[c]` when the model says so (torchvision's ImageNet
//!    normalization is `mean = 255 * (0.485, 0.456, 0.406)`, `scale = 255 * (0.229, 0.224, 0.225)`).
//!
//! Input: interleaved 8-bit RGB or RGBA (alpha ignored), row-major. Output: f32 NHWC
//! `[1, size, size, 3]`.

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;

/// Preprocessing parameters (stored in the model file).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocess {
    pub size: usize,
    pub crop_fraction: f32,
    pub mean: f32,
    pub scale: f32,
    /// Per-channel (R, G, B) mean in pixel units, replacing `mean` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_mean: Option<[f32; 3]>,
    /// Per-channel divisor in pixel units, replacing `scale` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_scale: Option<[f32; 3]>,
}

impl Preprocess {
    /// torchvision's ImageNet normalization: `(v / 255 - m) / s` per channel.
    pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

    /// `(mean[c], scale[c])` for R, G and B in pixel units.
    pub fn normalization(&self) -> ([f32; 3], [f32; 3]) {
        (self.channel_mean.unwrap_or([self.mean; 3]), self.channel_scale.unwrap_or([self.scale; 3]))
    }

    /// Sets the normalization from mean and std in `[0, 1]` units (torchvision's
    /// convention, `(v / 255 - mean) / std`); one value means the same for every channel.
    pub fn set_unit_normalization(&mut self, mean: [f32; 3], std: [f32; 3]) -> Result<()> {
        if std.iter().chain(&mean).any(|v| !v.is_finite()) || std.iter().any(|&s| s <= 0.0) {
            return Err(Error::invalid("preprocess", format!("mean {mean:?} and std {std:?} must be finite, std > 0")));
        }
        let (m, s) = (mean.map(|v| v * 255.0), std.map(|v| v * 255.0));
        if m.iter().all(|&v| v == m[0]) && s.iter().all(|&v| v == s[0]) {
            (self.mean, self.scale, self.channel_mean, self.channel_scale) = (m[0], s[0], None, None);
        } else {
            (self.channel_mean, self.channel_scale) = (Some(m), Some(s));
        }
        Ok(())
    }

    /// The smallest and largest normalized value an 8-bit pixel can give (the input's range).
    pub fn input_range(&self) -> (f32, f32) {
        let (m, s) = self.normalization();
        let ends = (0..3).flat_map(|c| [(0.0 - m[c]) / s[c], (255.0 - m[c]) / s[c]]);
        ends.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    }

    /// The side of the square frame whose centre crop is exactly `size` pixels
    /// (`round(crop_fraction * side) = size`; 256 for 224 at 87.5%): a caller that scales
    /// its picture to this square once leaves the crop nothing to resample.
    pub fn frame_size(&self) -> usize {
        let guess = (self.size as f32 / self.crop_fraction).round() as usize;
        // The crop's own formula (`preprocess`): round(min(w, h) * crop_fraction) in f64.
        let exact = |s: usize| (s as f64 * self.crop_fraction as f64).round() as usize == self.size;
        [guess, guess + 1, guess.saturating_sub(1)].into_iter().find(|&s| s > 0 && exact(s)).unwrap_or(guess.max(1))
    }

    /// Whether the parameters can normalize anything (finite, non-zero divisors).
    pub fn is_valid(&self) -> bool {
        let (m, s) = self.normalization();
        self.size > 0
            && self.crop_fraction > 0.0
            && self.crop_fraction <= 1.0
            && m.iter().all(|v| v.is_finite())
            && s.iter().all(|v| v.is_finite() && *v != 0.0)
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            size: 224,
            crop_fraction: 0.875,
            mean: 127.0,
            scale: 128.0,
            channel_mean: None,
            channel_scale: None,
        }
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
    if !p.is_valid() {
        return Err(Error::invalid(OP, format!("{p:?}: crop fraction must be in (0, 1], scales finite and non-zero")));
    }
    let (mean, scale) = p.normalization();
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
                out[(oy * p.size + ox) * 3 + c] = (v - mean[c]) / scale[c];
            }
        }
    }
    Tensor::new(vec![1, p.size, p.size, 3], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_size_crops_to_exactly_the_input() {
        for (size, crop) in [(224, 0.875), (160, 0.875), (128, 0.875), (96, 0.875), (224, 1.0), (300, 0.9)] {
            let p = Preprocess { size, crop_fraction: crop, ..Default::default() };
            let side = p.frame_size();
            assert_eq!((side as f64 * crop as f64).round() as usize, size, "{size} at {crop}: side {side}");
        }
        assert_eq!(Preprocess::default().frame_size(), 256);
    }

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
    fn per_channel_normalization_is_torchvision_s() {
        let mut p = Preprocess { size: 4, crop_fraction: 1.0, ..Default::default() };
        p.set_unit_normalization(Preprocess::IMAGENET_MEAN, Preprocess::IMAGENET_STD).unwrap();
        let img: Vec<u8> = (0..4 * 4).flat_map(|_| [255u8, 128, 0]).collect();
        let t = preprocess(&img, 4, 4, 3, &p).unwrap();
        let want = [(1.0 - 0.485) / 0.229, (128.0 / 255.0 - 0.456) / 0.224, (0.0 - 0.406) / 0.225];
        for px in t.data().chunks_exact(3) {
            for (v, w) in px.iter().zip(want) {
                assert!((v - w).abs() < 1e-5, "{px:?} vs {want:?}");
            }
        }
        let (lo, hi) = p.input_range();
        assert!((lo - (-0.485 / 0.229)).abs() < 1e-5 && (hi - (1.0 - 0.406) / 0.225).abs() < 1e-5, "{lo} {hi}");
        // The same mean and std on every channel stays the scalar form.
        p.set_unit_normalization([0.5; 3], [0.25; 3]).unwrap();
        assert_eq!((p.mean, p.scale, p.channel_mean), (127.5, 63.75, None));
        assert!(p.set_unit_normalization([0.5; 3], [0.0, 1.0, 1.0]).is_err());
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
