//! Reading inputs: image files (via the `image` crate, native only), the CIFAR-10 binary
//! format. Label lists are part of the model format ([`crate::model::labels`]). Sources for calibration and evaluation are named
//! `cifar10:PATH` (a CIFAR-10 `.bin` file) or a folder of images.

pub mod cifar;
#[cfg(not(target_arch = "wasm32"))]
pub mod images;

pub use crate::base::io::read_limited;
