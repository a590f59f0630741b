//! Compression transforms: post-training quantization ([`ptq`], and on camera frames
//! [`frames`]), channel pruning ([`channel_prune`]), magnitude pruning masks ([`prune`]),
//! and the retraining drivers for QAT, pruning and distillation ([`retrain`]) built on
//! [`crate::train`].

pub mod channel_prune;
pub mod frames;
pub mod prune;
pub mod ptq;
pub mod retrain;
