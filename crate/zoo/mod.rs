//! Architectures as code: the graphs of the networks the project builds itself, with their
//! weights loaded from the source checkpoint.

pub mod efficientnet;
pub mod mobilenet_v2;
#[cfg(test)]
pub(crate) mod testnet;
