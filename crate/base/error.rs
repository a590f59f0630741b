//! The crate's one error type.
//!
//! Every fallible function in the library returns [`Result<T>`]. Messages name the
//! operation and the shapes involved so that a failure deep inside a network says
//! which layer and which tensor were wrong, e.g.
//! `conv2d: input [1, 7, 7, 3] has 3 channels but weights [8, 3, 3, 4] expect 4`.
//! Library code never calls `unwrap()`; at the wasm boundary these errors become
//! `JsError`s, in the CLI they are printed and the process exits non-zero.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in edgetune.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tensor shapes or lengths do not fit an operation.
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },

    /// An argument value is outside what the operation accepts (scale <= 0, stride 0, ...).
    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument { op: &'static str, msg: String },

    /// A valid request for something this build does not implement (an ONNX op,
    /// an attribute value, a data type). The ONNX conformance runner counts these as skips.
    #[error("unsupported: {what}")]
    Unsupported { what: String },

    /// A file could not be parsed: names the file and what is wrong with it.
    #[error("{}: {msg}", path.display())]
    Parse { path: PathBuf, msg: String },

    /// An I/O error on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The GPU could not be reached or failed (no adapter, device lost, ...).
    #[error("gpu: {0}")]
    Gpu(String),
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument { op, msg: msg.into() }
    }
    /// Shorthand for [`Error::Unsupported`].
    pub fn unsupported(what: impl Into<String>) -> Self {
        Error::Unsupported { what: what.into() }
    }
    /// Shorthand for [`Error::Parse`].
    pub fn parse(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Parse { path: path.into(), msg: msg.into() }
    }
    /// Wraps an I/O error with the file it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
