//! The node's signing key: secp256k1, kept in a file only the service user can read.
//!
//! The file holds the 32-byte secret as hex on one line. It is created on first start
//! (`O_EXCL`, mode 0600, fsynced with its directory) and refused afterwards when anyone but
//! its owner could read it or when it belongs to another user: a key others could read is a
//! key others could sign receipts with. The secret is never printed; `Debug` shows the
//! address only.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, SolStruct};

use crate::ContractsError;
use crate::receipt::{Receipt, SignedReceipt, check_shares};

/// A node's receipt-signing key, loaded from its key file.
pub struct NodeKey {
    signer: PrivateKeySigner,
    path: PathBuf,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("address", &self.address())
            .field("path", &self.path)
            .finish()
    }
}

impl NodeKey {
    /// Loads the key at `path`, creating a new random one there when the file does not exist.
    /// Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), ContractsError> {
        match fs::symlink_metadata(path) {
            Ok(_) => Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Self::create(path)?, true)),
            Err(source) => {
                Err(ContractsError::Io { what: "inspecting", path: path.to_path_buf(), source })
            }
        }
    }

    /// Loads an existing key file, refusing one that is not a regular file, is readable by
    /// group or others, belongs to another user, or does not hold exactly one secret.
    pub fn load(path: &Path) -> Result<Self, ContractsError> {
        let bad = |reason: String| ContractsError::KeyFile { path: path.to_path_buf(), reason };
        let meta = fs::symlink_metadata(path).map_err(|source| ContractsError::Io {
            what: "inspecting",
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.file_type().is_file() {
            return Err(bad("is not a regular file (symlinks are refused)".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "has mode {mode:04o}; it must be 0600 (run: chmod 600 {})",
                path.display()
            )));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(bad(format!(
                "belongs to uid {}, but lorad runs as uid {euid}; the key must be owned by the service user",
                meta.uid()
            )));
        }
        let text = fs::read_to_string(path).map_err(|source| ContractsError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        let hex = text.trim();
        let hex = hex.strip_prefix("0x").unwrap_or(hex);
        let secret: B256 = hex
            .parse()
            .map_err(|_| bad("does not hold a 32-byte hex secret on one line".into()))?;
        let signer = PrivateKeySigner::from_bytes(&secret)
            .map_err(|_| bad("holds a value that is not a valid secp256k1 secret key".into()))?;
        Ok(Self { signer, path: path.to_path_buf() })
    }

    fn create(path: &Path) -> Result<Self, ContractsError> {
        let io = |what, source| ContractsError::Io { what, path: path.to_path_buf(), source };
        let signer = PrivateKeySigner::random();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io("creating", e))?;
        let line = format!("0x{}\n", alloy_primitives::hex::encode(signer.to_bytes()));
        file.write_all(line.as_bytes()).map_err(|e| io("writing", e))?;
        file.sync_all().map_err(|e| io("syncing", e))?;
        // The directory entry must be durable too, or a crash could lose a key whose address
        // was already registered on chain.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("syncing the directory of", e))?;
        }
        Ok(Self { signer, path: path.to_path_buf() })
    }

    /// A key from a known secret (tests, benches, deterministic dev chains).
    pub fn from_secret(secret: B256) -> Result<Self, ContractsError> {
        let signer =
            PrivateKeySigner::from_bytes(&secret).map_err(|_| ContractsError::KeyFile {
                path: PathBuf::new(),
                reason: "not a valid secp256k1 secret key".into(),
            })?;
        Ok(Self { signer, path: PathBuf::new() })
    }

    /// The node's address (what `NodeRegistry` knows it by).
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The key file it came from (empty for [`NodeKey::from_secret`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signs `receipt` for the Settlement in `domain`. Refuses a receipt that names another
    /// node or has shares Settlement would reject: signing it could only produce a receipt
    /// that never settles.
    pub fn sign_receipt(
        &self,
        receipt: Receipt,
        domain: &Eip712Domain,
    ) -> Result<SignedReceipt, ContractsError> {
        if receipt.node != self.address() {
            return Err(ContractsError::InvalidReceipt {
                reason: format!("names node {}, but this key is {}", receipt.node, self.address()),
            });
        }
        check_shares(&receipt.shares)?;
        let digest = receipt.eip712_signing_hash(domain);
        let signature = self.sign_digest(digest)?;
        Ok(SignedReceipt { receipt, signature: signature.to_vec().into() })
    }

    /// Signs a 32-byte digest: 65 bytes r ‖ s ‖ v with v 27 or 28 and low s.
    pub fn sign_digest(&self, digest: B256) -> Result<[u8; 65], ContractsError> {
        let signature = self
            .signer
            .sign_hash_sync(&digest)
            .map_err(|e| ContractsError::Signature { reason: e.to_string() })?;
        Ok(signature.as_bytes())
    }
}
