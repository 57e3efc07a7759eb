//! [`ReceiptsError`], the crate's single error type.

use std::path::PathBuf;

/// What can go wrong keeping or submitting receipts.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptsError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (another lorad) has the journal open.
    #[error("journal {path} is in use by another process")]
    Locked {
        /// The journal file.
        path: PathBuf,
    },
    /// A record in the middle of the journal is damaged. The file is left untouched: an
    /// operator decides (restore from backup, or cut it with `lorad receipts export`).
    #[error("journal {path} is corrupt at byte {offset}: {reason}; the file was not modified")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A write or fsync failed earlier; the journal refuses further appends because the
    /// file's durable state is unknown (a failed fsync cannot be retried safely).
    #[error("journal {path} stopped accepting receipts after a failed write: {reason}")]
    Failed {
        /// The journal file.
        path: PathBuf,
        /// The original failure.
        reason: String,
    },
    /// A record's payload is larger than the journal accepts.
    #[error("record of {len} bytes exceeds the journal's limit of {max}")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A stored receipt could not be parsed.
    #[error("stored receipt {id}: {source}")]
    BadReceipt {
        /// Its job id.
        id: String,
        /// The parse error.
        #[source]
        source: lorad_contracts::ContractsError,
    },
    /// The chain refused or failed a submission.
    #[error("submitting to Settlement: {source}")]
    Chain {
        /// The chain's error.
        #[source]
        source: lorad_contracts::ContractsError,
    },
    /// The chain holds a different receipt for a job id this node journaled: either
    /// another key signed for this job id, or this node signed twice (equivocation).
    #[error("job {id}: Settlement settled digest {on_chain}, the journal holds {ours}")]
    ConflictingSettlement {
        /// The job id.
        id: String,
        /// The digest on chain.
        on_chain: String,
        /// The journaled receipt's digest.
        ours: String,
    },
}
