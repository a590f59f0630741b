//! PyTorch checkpoints in the legacy (pre-1.6, non-zip) format, read without torch: the
//! pickle machine ([`pickle`]) and the tensors it references ([`checkpoint`]).

pub mod checkpoint;
pub mod pickle;
