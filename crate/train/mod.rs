//! On-device training: losses, optimizers (pure step functions), learning-rate schedules,
//! the classification head, metrics, augmentation and the trainer that ties them together.
//! Compression that trains (QAT, pruning, distillation) builds on this in [`crate::compress`].
//! Backward passes live next to their forwards in [`crate::ops`].

pub mod augment;
pub mod blocks;
pub mod finetune;
pub mod head;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod schedule;
pub mod trainer;
