//! [`ContractsError`], the crate's single error type.

use std::path::PathBuf;

use alloy_primitives::Bytes;

/// Everything that can go wrong deploying, calling or signing against the contracts.
#[derive(Debug, thiserror::Error)]
pub enum ContractsError {
    /// The node key file exists but must not be used (permissions, owner, contents).
    #[error("node key {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it, and how to fix it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done ("creating", "reading", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A transaction or call reverted; `decoded` names the contract error when it is one of
    /// ours (for example `Settlement.AlreadySettled { index: 0, jobId: 0x… }`).
    #[error("{call} reverted: {decoded}")]
    Reverted {
        /// The function that was called.
        call: String,
        /// The revert data as returned by the EVM.
        data: Bytes,
        /// The revert data decoded against every lorad contract's errors.
        decoded: String,
    },
    /// The EVM could not execute the transaction at all (bad nonce, out of gas, halt).
    #[error("EVM: {reason}")]
    Evm {
        /// What the EVM reported.
        reason: String,
    },
    /// Bytes that should hold an ABI value (a return value, a stored receipt) do not.
    #[error("decoding {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A receipt's signature is malformed or was made by a key other than the receipt's node.
    #[error("receipt signature: {reason}")]
    Signature {
        /// What is wrong.
        reason: String,
    },
    /// A receipt breaks a rule Settlement enforces (checked before signing).
    #[error("receipt: {reason}")]
    InvalidReceipt {
        /// The rule it breaks.
        reason: String,
    },
}

impl ContractsError {
    /// The revert data, when this is a revert.
    pub fn revert_data(&self) -> Option<&Bytes> {
        match self {
            Self::Reverted { data, .. } => Some(data),
            _ => None,
        }
    }
}
