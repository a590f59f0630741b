//! Augmentation of camera samples, on 8-bit RGB images before preprocessing:
//! 1. random resized crop: a rectangle covering a uniform `[min_area, 1]` fraction of the
//!    image with aspect ratio log-uniform in `[3/4, 4/3]`, placed uniformly (the result is
//!    resized by the normal preprocessing afterwards);
//! 2. horizontal flip with probability 1/2;
//! 3. brightness and contrast jitter: `v' = (v - mean) * c + mean + b * 255`, `c` uniform in
//!    `[1 - contrast, 1 + contrast]`, `b` in `[-brightness, brightness]`, `mean` the image's mean
//!    intensity, clamped to `[0, 255]`.

use crate::base::error::{Error, Result};

use crate::base::rng::Rng;

/// Augmentation strengths.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    pub min_area: f32,
    pub flip: bool,
    pub brightness: f32,
    pub contrast: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Augment { min_area: 0.5, flip: true, brightness: 0.15, contrast: 0.2 }
    }
}

/// An 8-bit interleaved RGB image.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 || width.checked_mul(height).and_then(|v| v.checked_mul(3)) != Some(pixels.len()) {
            return Err(Error::shape(
                "image",
                format!("{width}x{height} RGB needs {} bytes, got {}", width * height * 3, pixels.len()),
            ));
        }
        Ok(RgbImage { width, height, pixels })
    }
}

impl Augment {
    /// One random augmented copy of `img`.
    pub fn apply(&self, img: &RgbImage, rng: &mut Rng) -> RgbImage {
        let (w, h) = (img.width as f32, img.height as f32);
        let area = rng.uniform(self.min_area.clamp(0.05, 1.0), 1.0) * w * h;
        let ratio = rng.uniform((3f32 / 4.0).ln(), (4f32 / 3.0).ln()).exp();
        let cw = ((area * ratio).sqrt().round() as usize).clamp(1, img.width);
        let ch = ((area / ratio).sqrt().round() as usize).clamp(1, img.height);
        let x0 = rng.below(img.width - cw + 1);
        let y0 = rng.below(img.height - ch + 1);
        let flip = self.flip && rng.unit() < 0.5;
        let c = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast);
        let b = rng.uniform(-self.brightness, self.brightness) * 255.0;
        let mut out = Vec::with_capacity(cw * ch * 3);
        for y in 0..ch {
            for x in 0..cw {
                let sx = if flip { x0 + cw - 1 - x } else { x0 + x };
                let o = ((y0 + y) * img.width + sx) * 3;
                out.extend_from_slice(&img.pixels[o..o + 3]);
            }
        }
        let mean = out.iter().map(|&v| v as f32).sum::<f32>() / out.len().max(1) as f32;
        for v in out.iter_mut() {
            *v = ((*v as f32 - mean) * c + mean + b).round().clamp(0.0, 255.0) as u8;
        }
        RgbImage { width: cw, height: ch, pixels: out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_stay_inside_and_are_deterministic() {
        let img = RgbImage::new(40, 30, (0..40 * 30 * 3).map(|i| (i % 251) as u8).collect()).unwrap();
        let a = Augment::default();
        let (mut r1, mut r2) = (Rng::new(7), Rng::new(7));
        for _ in 0..50 {
            let x = a.apply(&img, &mut r1);
            assert!(
                x.width <= 40 && x.height <= 30 && x.width * x.height * 10 >= 40 * 30 * 4,
                "{}x{}",
                x.width,
                x.height
            );
            assert_eq!(x, a.apply(&img, &mut r2));
        }
        // No jitter, full area, no flip: the identity.
        let id = Augment { min_area: 1.0, flip: false, brightness: 0.0, contrast: 0.0 };
        let mut r = Rng::new(1);
        let y = id.apply(&RgbImage::new(4, 4, vec![9; 48]).unwrap(), &mut r);
        assert_eq!(y.pixels, vec![9; 48]);
        assert!(RgbImage::new(2, 2, vec![0; 11]).is_err());
    }
}
