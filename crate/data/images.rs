//! Image files (JPEG, PNG, BMP) decoded by the `image` crate into 8-bit RGB, and image
//! sources for calibration/evaluation: `cifar10:PATH` or a folder of image files.

use std::path::{Path, PathBuf};

use super::cifar::{CifarFile, SIDE};
use crate::base::error::{Error, Result};
use crate::base::tensor::Tensor;
use crate::model::preprocess::{preprocess, Preprocess};

/// Largest image side decoded (a 16384 x 16384 RGBA image is already 1 GiB).
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// Largest decoder allocation.
const MAX_IMAGE_ALLOC: u64 = 512 << 20;

/// Decodes an image file to `(width, height, RGB bytes)`. The size in the file's header is
/// checked before any pixel buffer is allocated, so a small file claiming a huge image is an
/// error, not an out-of-memory abort.
pub fn load_rgb(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let err = |e: String| Error::parse(path, format!("cannot decode image: {e}"));
    // The file's bytes are read once; the header is parsed twice (size check, then decode).
    let bytes = super::read_limited(path, MAX_IMAGE_ALLOC)?;
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(&bytes[..])).with_guessed_format().map_err(|e| Error::io(path, e))
    };
    let (w, h) = reader()?.into_dimensions().map_err(|e| err(e.to_string()))?;
    if w == 0 || h == 0 || w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(err(format!("the image is {w} x {h}; sides from 1 to {MAX_IMAGE_SIDE} pixels are read")));
    }
    let mut reader = reader()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| err(e.to_string()))?.to_rgb8();
    Ok((img.width() as usize, img.height() as usize, img.into_raw()))
}

/// Loads and preprocesses an image file.
pub fn load_preprocessed(path: &Path, p: &Preprocess) -> Result<Tensor> {
    let (w, h, rgb) = load_rgb(path)?;
    preprocess(&rgb, w, h, 3, p).map_err(|e| Error::parse(path, e.to_string()))
}

/// A set of images to calibrate or evaluate on.
pub enum ImageSource {
    Cifar { path: PathBuf, file: CifarFile },
    Folder { path: PathBuf, files: Vec<PathBuf> },
}

/// The JPEG, PNG and BMP files directly inside `dir`, sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png" | "bmp"))
        })
        .collect();
    files.sort();
    Ok(files)
}

impl ImageSource {
    /// Parses `cifar10:PATH` or a folder path.
    pub fn open(spec: &str) -> Result<Self> {
        if let Some(p) = spec.strip_prefix("cifar10:") {
            let path = PathBuf::from(p);
            return Ok(ImageSource::Cifar { file: CifarFile::open(&path)?, path });
        }
        let path = PathBuf::from(spec);
        let files = list_images(&path)?;
        if files.is_empty() {
            return Err(Error::invalid(
                "images",
                format!("{} has no .jpg, .png or .bmp files (or use cifar10:PATH)", path.display()),
            ));
        }
        Ok(ImageSource::Folder { path, files })
    }

    pub fn len(&self) -> usize {
        match self {
            ImageSource::Cifar { file, .. } => file.len(),
            ImageSource::Folder { files, .. } => files.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label of image `i` where the source has labels (CIFAR-10).
    pub fn label(&self, i: usize) -> Option<usize> {
        match self {
            ImageSource::Cifar { file, .. } => Some(file.label(i)),
            ImageSource::Folder { .. } => None,
        }
    }

    /// Image `i`, preprocessed.
    pub fn preprocessed(&self, i: usize, p: &Preprocess) -> Result<Tensor> {
        match self {
            ImageSource::Cifar { file, .. } => preprocess(&file.rgb(i), SIDE, SIDE, 3, p),
            ImageSource::Folder { files, .. } => load_preprocessed(&files[i], p),
        }
    }

    /// Image `i` as 8-bit RGB `(width, height, pixels)`.
    pub fn rgb(&self, i: usize) -> Result<(usize, usize, Vec<u8>)> {
        match self {
            ImageSource::Cifar { file, .. } => Ok((SIDE, SIDE, file.rgb(i))),
            ImageSource::Folder { files, .. } => load_rgb(&files[i]),
        }
    }

    /// Description for model provenance and reports.
    pub fn describe(&self) -> String {
        match self {
            ImageSource::Cifar { path, .. } => format!("CIFAR-10 file {}", path.display()),
            ImageSource::Folder { path, .. } => format!("image folder {}", path.display()),
        }
    }
}
