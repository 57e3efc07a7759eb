//! lorad's Model Factory: the base model as a differentiable function of LoRA parameters.
//!
//! The serving engine runs a hand-fused forward with a paged KV cache and no autograd; training
//! and gradient attribution need the same math with backpropagation, so this crate re-states the
//! llama forward on plain candle ops (each of which has a backward rule) and keeps the base
//! weights frozen:
//! - [`DiffLlama`]: the differentiable forward over a padded batch, LoRA on any projection, and
//!   the per-example loss of the completion tokens.
//! - [`LoraSet`]: LoRA parameters, PEFT-initialised for training or loaded from an adapter, and
//!   exported back to a PEFT [`lorad_store::Adapter`].
//! - [`finetune`]: AdamW training with warm-up, cosine decay and gradient clipping.
//! - [`Probes`]: LoGra-style projected per-example gradients of the LoRA parameters, taken by
//!   zero-valued side branches so autograd never materialises a full gradient.

mod batch;
mod error;
mod finetune;
mod lora;
mod model;
mod probe;

pub use batch::{Batch, Example, LossNorm};
pub use error::TrainError;
pub use finetune::{FinetuneConfig, FinetuneReport, StepLog, finetune, mean_loss};
pub use lora::{LoraPair, LoraSet, LoraSpec};
pub use model::DiffLlama;
pub use probe::{ProbeBatch, ProbeSpec, Probes, projected_gradients};

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
