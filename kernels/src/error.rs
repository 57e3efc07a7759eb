//! The crate's error type.

/// Errors from kernel calls. Shapes are checked before any arithmetic runs.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A tensor operation failed inside candle.
    #[error("tensor op failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// An argument has the wrong shape for the operation.
    #[error("{op}: {what} has shape {got:?}, expected {expected}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// Which argument.
        what: &'static str,
        /// Its actual dims.
        got: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// A scalar argument is out of its domain.
    #[error("{op}: {what} must be {expected}, got {got}")]
    Value {
        /// The operation.
        op: &'static str,
        /// Which argument.
        what: &'static str,
        /// The offending value, printed.
        got: String,
        /// What was expected, in words.
        expected: &'static str,
    },
    /// The fused CPU path was asked for a tensor it cannot read directly.
    #[error(
        "{op}: fused CPU path needs contiguous f32 (or, for weights, bf16) CPU tensors ({what})"
    )]
    NotCpuF32 {
        /// The operation.
        op: &'static str,
        /// Which argument.
        what: &'static str,
    },
    /// An index (row, slot, block) is outside its tensor.
    #[error("{op}: {what} index {index} out of range (limit {limit})")]
    OutOfRange {
        /// The operation.
        op: &'static str,
        /// Which index.
        what: &'static str,
        /// The offending value.
        index: usize,
        /// The exclusive bound.
        limit: usize,
    },
}
