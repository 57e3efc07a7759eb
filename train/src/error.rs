//! The crate's one error type.

/// Everything that can go wrong building the differentiable model, training or taking gradients.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed (shape mismatch, out of memory, backend error).
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The base model's weights are incomplete or misshapen.
    #[error("base model weights: {0}")]
    Weights(String),
    /// A training or LoRA setting is unusable (rank 0, no targets, learning rate not positive, ...).
    #[error("invalid setting: {0}")]
    Config(String),
    /// An example cannot be used (empty, a token outside the vocabulary, longer than the context).
    #[error("example {index}: {reason}")]
    Example {
        /// Position of the example in the caller's list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Training diverged: the loss became NaN or infinite.
    #[error("training diverged at step {step}: loss {loss}")]
    Diverged {
        /// 1-based optimizer step.
        step: usize,
        /// The loss value seen.
        loss: f32,
    },
    /// An adapter does not fit the base model.
    #[error("adapter does not fit the base model: {0}")]
    AdapterShape(String),
}
