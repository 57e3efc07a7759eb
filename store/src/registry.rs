//! A simple directory-backed adapter registry.
//!
//! Layout: `<root>/<name>/{adapter_config.json, adapter_model.safetensors, lorad.json}`, where
//! the first two are the imported PEFT files byte for byte and `lorad.json` holds the
//! [`AdapterInfo`] computed at import. Entries appear and disappear only by `rename(2)` of a whole
//! directory, so a crash never exposes a half-imported or half-removed adapter; names starting with
//! `.` are reserved for in-flight work (`.tmp-*`, `.trash-*`) and never listed.
//!
//! This is deliberately the minimal API: a later store (content-addressed, io_uring paging from
//! NVMe) replaces the internals behind the same methods.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::adapter::{Adapter, BaseShape, TargetModule};
use crate::error::StoreError;
use crate::fsutil::{self, sync_dir, unique_suffix, write_new_synced};
use crate::peft::{CONFIG_FILE, PeftFiles, WEIGHTS_FILE, parse_peft, read_peft_dir};

const META_FILE: &str = "lorad.json";
const META_FORMAT: u32 = 1;
const MAX_NAME_LEN: usize = 128;

/// Summary of a registered adapter, cheap to read (no weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// Registry name.
    pub name: String,
    /// Largest LoRA rank over its modules (`r`, or more with `rank_pattern`).
    pub rank: usize,
    /// `lora_alpha` from its config.
    pub alpha: f64,
    /// Projections it adapts.
    pub targets: Vec<TargetModule>,
    /// Whether it uses rsLoRA scaling.
    pub use_rslora: bool,
    /// Hex SHA-256 content hash (see [`Adapter::compute_content_hash`]).
    pub content_hash: String,
    /// Size of its config and weights files in bytes.
    pub bytes: u64,
    /// Import time, Unix seconds.
    pub created: u64,
}

/// What `lorad.json` holds.
#[derive(Serialize, Deserialize)]
struct EntryMeta {
    format: u32,
    #[serde(flatten)]
    info: AdapterInfo,
}

/// Checks a registry name: 1..=128 characters of `[A-Za-z0-9._-]`, not starting with `.`.
///
/// The rules keep names safe as single path components and URL segments.
pub fn validate_adapter_name(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 128 characters"
    } else if name.starts_with('.') {
        "it starts with '.', which is reserved for the registry's temporary entries"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        "it contains characters other than A-Z, a-z, 0-9, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidName { name: name.to_owned(), reason })
}

/// Directory-backed adapter registry (see the module docs for the layout and crash safety).
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

impl Registry {
    /// Opens the registry at `root`, creating the directory if missing.
    ///
    /// Leftover `.trash-*` directories from an interrupted [`Registry::remove`] are deleted (they
    /// were already invisible). Leftover `.tmp-*` imports are left alone, since another process may
    /// still be writing them; [`Registry::list`] ignores them.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError::io("creating", root, e))?;
        let entries = fs::read_dir(root).map_err(|e| StoreError::io("listing", root, e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".trash-") {
                // Best effort: a failure only leaves invisible garbage behind.
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(Registry { root: root.to_path_buf() })
    }

    /// Imports the PEFT adapter in `src_dir` as `name` (default: `src_dir`'s file name).
    ///
    /// The adapter is fully validated against `base` before anything is written; its files are
    /// then copied (exactly the bytes validated) into a `.tmp-*` directory, fsynced and renamed
    /// into place. Importing the same content under an existing name is a no-op returning the
    /// existing entry's info; different content is refused with [`StoreError::AdapterExists`].
    pub fn import(
        &self,
        src_dir: &Path,
        name: Option<&str>,
        base: &BaseShape,
    ) -> Result<AdapterInfo, StoreError> {
        let name = match name {
            Some(n) => n.to_owned(),
            None => src_dir.file_name().and_then(|n| n.to_str()).map(str::to_owned).ok_or_else(|| {
                StoreError::InvalidName {
                    name: src_dir.display().to_string(),
                    reason: "the source directory has no usable file name to default to; pass a name",
                }
            })?,
        };
        validate_adapter_name(&name)?;
        let files = PeftFiles::read(src_dir)?;
        let adapter = parse_peft(&name, &files, base)?;
        if let Some(existing) = self.existing(&name, &adapter.content_hash)? {
            return Ok(existing);
        }

        let tmp = self.root.join(format!(".tmp-{name}-{}", unique_suffix()));
        fs::create_dir(&tmp).map_err(|e| StoreError::io("creating", &tmp, e))?;
        let result = self.populate(&tmp, &files, &adapter).and_then(|info| {
            let dest = self.root.join(&name);
            match fs::rename(&tmp, &dest) {
                Ok(()) => Ok(info),
                // Lost a race with a concurrent import of the same name.
                Err(_) if dest.exists() => self
                    .existing(&name, &adapter.content_hash)?
                    .ok_or_else(|| self.exists_error(&name)),
                Err(e) => Err(StoreError::io("renaming", &tmp, e)),
            }
        });
        if result.is_err() || tmp.exists() {
            // Best effort: the temp dir is invisible to list(); the real error matters more.
            let _ = fs::remove_dir_all(&tmp);
        }
        let info = result?;
        sync_dir(&self.root)?;
        Ok(info)
    }

    /// Writes the entry's files into `tmp` durably and returns its info.
    fn populate(
        &self,
        tmp: &Path,
        files: &PeftFiles,
        adapter: &Adapter,
    ) -> Result<AdapterInfo, StoreError> {
        write_new_synced(&tmp.join(CONFIG_FILE), &files.config)?;
        write_new_synced(&tmp.join(WEIGHTS_FILE), &files.weights)?;
        let info = AdapterInfo {
            name: adapter.name.clone(),
            rank: adapter.max_rank(),
            alpha: adapter.config.lora_alpha,
            targets: adapter.config.target_modules.clone(),
            use_rslora: adapter.config.use_rslora,
            content_hash: adapter.content_hash.clone(),
            bytes: (files.config.len() + files.weights.len()) as u64,
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        };
        let meta_path = tmp.join(META_FILE);
        let meta =
            serde_json::to_vec_pretty(&EntryMeta { format: META_FORMAT, info: info.clone() })
                .map_err(|source| StoreError::InvalidJson { path: meta_path.clone(), source })?;
        write_new_synced(&meta_path, &meta)?;
        sync_dir(tmp)?;
        Ok(info)
    }

    /// If `name` exists: its info when the content matches `hash`, else `AdapterExists`.
    fn existing(&self, name: &str, hash: &str) -> Result<Option<AdapterInfo>, StoreError> {
        let dir = self.root.join(name);
        if !dir.exists() {
            return Ok(None);
        }
        if !dir.is_dir() {
            let reason = "a non-directory occupies the name".to_owned();
            return Err(StoreError::CorruptEntry { path: dir, reason });
        }
        let info = self.get(name)?;
        if info.content_hash == hash { Ok(Some(info)) } else { Err(self.exists_error(name)) }
    }

    fn exists_error(&self, name: &str) -> StoreError {
        StoreError::AdapterExists { name: name.to_owned(), root: self.root.clone() }
    }

    fn not_found(&self, name: &str) -> StoreError {
        StoreError::NotFound { name: name.to_owned(), root: self.root.clone() }
    }

    /// All registered adapters, sorted by name.
    ///
    /// Hidden (`.`-prefixed) in-flight entries are skipped. A damaged entry (unreadable
    /// `lorad.json`) is skipped with a warning rather than failing the whole listing; `get` on it
    /// reports the damage.
    pub fn list(&self) -> Result<Vec<AdapterInfo>, StoreError> {
        let entries =
            fs::read_dir(&self.root).map_err(|e| StoreError::io("listing", &self.root, e))?;
        let mut infos = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("listing", &self.root, e))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            match validate_adapter_name(&name).and_then(|()| self.get(&name)) {
                Ok(info) => infos.push(info),
                Err(e) => tracing::warn!(error = %e, "skipping unusable registry entry"),
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    /// The info of adapter `name`.
    pub fn get(&self, name: &str) -> Result<AdapterInfo, StoreError> {
        validate_adapter_name(name)?;
        let dir = self.root.join(name);
        if !dir.is_dir() {
            return Err(self.not_found(name));
        }
        let meta_path = dir.join(META_FILE);
        let corrupt = |reason: String| StoreError::CorruptEntry { path: meta_path.clone(), reason };
        let bytes = fs::read(&meta_path).map_err(|e| corrupt(format!("cannot read it: {e}")))?;
        let meta: EntryMeta = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("invalid metadata: {e}")))?;
        if meta.format != META_FORMAT {
            return Err(corrupt(format!("unknown metadata format {}", meta.format)));
        }
        if meta.info.name != name {
            return Err(corrupt(format!("it records the name `{}`", meta.info.name)));
        }
        Ok(meta.info)
    }

    /// Loads and validates adapter `name` against `base`, checking its content hash against the
    /// one recorded at import (so on-disk corruption is caught, not served).
    pub fn load(&self, name: &str, base: &BaseShape) -> Result<Adapter, StoreError> {
        let info = self.get(name)?;
        let dir = self.root.join(name);
        let adapter = read_peft_dir(&dir, name, base)?;
        if adapter.content_hash != info.content_hash {
            return Err(StoreError::CorruptEntry {
                path: dir,
                reason: format!(
                    "content hash {} does not match the {} recorded at import",
                    adapter.content_hash, info.content_hash
                ),
            });
        }
        Ok(adapter)
    }

    /// Removes adapter `name`: renamed out of sight first (atomic), then deleted.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        validate_adapter_name(name)?;
        let dir = self.root.join(name);
        if !dir.is_dir() {
            return Err(self.not_found(name));
        }
        let trash = self.root.join(format!(".trash-{name}-{}", unique_suffix()));
        fs::rename(&dir, &trash).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => self.not_found(name),
            _ => StoreError::io("renaming", &dir, e),
        })?;
        fsutil::sync_dir(&self.root)?;
        if let Err(e) = fs::remove_dir_all(&trash) {
            // The adapter is already gone from the registry; `open` retries the deletion.
            tracing::warn!(path = %trash.display(), error = %e, "could not delete removed adapter");
        }
        Ok(())
    }

    /// Whether adapter `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        validate_adapter_name(name).is_ok() && self.root.join(name).join(META_FILE).is_file()
    }
}
