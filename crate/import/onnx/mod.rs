//! ONNX: protobuf messages ([`proto`], decoded with prost), typed values ([`value`]), a
//! graph interpreter over the reference kernels ([`graph`]), and the runner for the ONNX
//! backend node tests ([`conformance`]) that checks the kernels against ONNX's own
//! expected outputs.

mod attr;
pub mod conformance;
pub mod export;
pub mod fold;
pub mod graph;
pub mod import;
mod ops;
pub mod proto;
mod qops;
pub mod value;

pub use value::{Data, Value};
