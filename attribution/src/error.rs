//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong building, opening or querying an attribution index.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// A file could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An index file is malformed (wrong magic, version, size or content).
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Fine-tuning or computing gradients through the model failed.
    #[error(transparent)]
    Train(#[from] lorad_train::TrainError),
    /// A caller passed something unusable (an out-of-range token, an empty corpus, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Suffix array construction (libsais) failed, e.g. out of memory.
    #[error("suffix array construction failed: {0}")]
    SuffixArray(String),
}

impl AttributionError {
    /// Maps an I/O error on `path` while doing `action`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}
