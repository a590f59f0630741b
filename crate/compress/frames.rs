//! Quantizing a float model on frames the user's camera saw, as the page does it.
//!
//! The frames arrive as the page holds them: `count` RGBA images of `width x height`, packed
//! one after another (`[count, height, width, 4]` u8, row-major). Each goes through the
//! model's own preprocessing (the same as at inference), the model is post-training quantized
//! on them ([`crate::compress::ptq`], empirical bias correction), and the result is judged on
//! other frames by top-1 agreement with the float model: the figure the page shows before
//! the user keeps the int8 model.

use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::compress::ptq::{quantize_model, BiasCorrection, Calibration};
use crate::exec::Classifier;
use crate::model::etm::ModelFile;
use crate::model::preprocess::preprocess;
use crate::quant::calibrate::Method;

/// `count` same-size RGBA frames, packed.
pub struct RgbaFrames<'a> {
    data: &'a [u8],
    count: usize,
    width: usize,
    height: usize,
}

impl<'a> RgbaFrames<'a> {
    /// Checks that `data` holds exactly `count` frames of `width x height` RGBA.
    pub fn new(data: &'a [u8], count: usize, width: usize, height: usize) -> Result<Self> {
        let per = width.checked_mul(height).and_then(|v| v.checked_mul(4));
        match per.and_then(|p| p.checked_mul(count)) {
            Some(n) if n == data.len() && n > 0 => Ok(RgbaFrames { data, count, width, height }),
            _ => Err(Error::invalid(
                "frames",
                format!("{} bytes are not {count} RGBA frames of {width}x{height}", data.len()),
            )),
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frame `i` preprocessed for `model` (`[1, H, W, 3]`).
    pub fn preprocessed(&self, i: usize, model: &ModelFile) -> Result<Tensor> {
        let per = self.width * self.height * 4;
        let px =
            self.data.get(i * per..(i + 1) * per).ok_or_else(|| Error::invalid("frames", format!("no frame {i}")))?;
        preprocess(px, self.width, self.height, 4, &model.header.preprocess)
    }
}

/// `model` quantized to int8 on `frames` with calibration `method` ("minmax", "percentile",
/// "mse"); `progress(pass, done, total)` as in [`Calibration`].
pub fn quantize_on_frames(
    model: &ModelFile,
    frames: &RgbaFrames,
    method: &str,
    progress: &dyn Fn(usize, usize, usize),
) -> Result<ModelFile> {
    let method: Method = method.parse()?;
    let sample = |i: usize| frames.preprocessed(i, model);
    quantize_model(
        model,
        &Calibration {
            method,
            samples: frames.len(),
            source: format!("{} camera frames ({}x{}) in the page", frames.len(), frames.width, frames.height),
            sample: &sample,
            progress,
            bias_correction: BiasCorrection::Empirical,
        },
    )
}

/// On how many of `frames` models `a` and `b` have the same top-1 class.
pub fn top1_agreement(a: &ModelFile, b: &ModelFile, frames: &RgbaFrames) -> Result<usize> {
    let (ca, cb) = (Classifier::new(a.clone())?, Classifier::new(b.clone())?);
    let mut same = 0;
    for i in 0..frames.len() {
        let top = |c: &Classifier, m: &ModelFile| -> Result<Option<usize>> {
            let logits = c.logits(frames.preprocessed(i, m)?)?;
            Ok(crate::exec::top_k(logits.data(), 1).first().map(|t| t.0))
        };
        if top(&ca, a)? == top(&cb, b)? {
            same += 1;
        }
    }
    Ok(same)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_must_fill_the_buffer_exactly() {
        assert!(RgbaFrames::new(&[0; 32], 2, 2, 2).is_ok());
        assert!(RgbaFrames::new(&[0; 31], 2, 2, 2).is_err());
        assert!(RgbaFrames::new(&[], 0, 2, 2).is_err());
        assert!(RgbaFrames::new(&[0; 16], usize::MAX, 2, 2).is_err());
        assert!(RgbaFrames::new(&[0; 16], 1, usize::MAX, 2).is_err());
    }
}
