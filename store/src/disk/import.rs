//! The write path: validating, deduplicating and durably appending adapters.
//!
//! Order of an import (each step durable before the next starts, so a crash at any point leaves
//! either nothing visible or the whole adapter):
//! 1. validate and encode the blob (no lock held: the expensive CPU part);
//! 2. take the writer lock and catch up with the index;
//! 3. if a ready entry already holds this content, skip to 5 with its location (dedup);
//! 4. append the blob to the active segment and fdatasync it (a new segment is created under a
//!    temporary name, synced, renamed, and the `segments/` directory fsynced first);
//! 5. append the `Put` record to the index and fdatasync the index.
//!
//! Only step 5 makes the adapter visible. A crash before it leaves bytes past the segment's high
//! water mark, which the next import truncates and overwrites, or gc reclaims.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::blob::encode_blob;
use super::format::{Loc, MAX_STR, PutRecord, Record};
use super::segment::{SEG_HEADER, create_segment, list_segments, segment_file_name, write_blob};
use super::{EntryState, Store, StoredInfo, now_secs};
use crate::adapter::{Adapter, BaseShape};
use crate::error::StoreError;
use crate::name::validate_adapter_name;
use crate::peft::{CONFIG_FILE, PeftFiles, WEIGHTS_FILE, parse_peft};

impl Store {
    /// Imports the PEFT adapter in `src_dir` as `name` (default: the directory's file name),
    /// validated against `base` exactly as PEFT directories are. `base_hash`
    /// identifies the base model (normally 64 hex characters); it is stored, not interpreted.
    ///
    /// Importing content that is already stored under this name returns the existing entry;
    /// different content under an existing name is [`StoreError::AdapterExists`].
    pub fn import_dir(
        &self,
        src_dir: &Path,
        name: Option<&str>,
        base: &BaseShape,
        base_hash: &str,
    ) -> Result<StoredInfo, StoreError> {
        let name = match name {
            Some(n) => n.to_owned(),
            None => src_dir.file_name().and_then(|n| n.to_str()).map(str::to_owned).ok_or_else(
                || StoreError::InvalidName {
                    name: src_dir.display().to_string(),
                    reason: "the source directory has no usable file name to default to; pass a name",
                },
            )?,
        };
        validate_adapter_name(&name)?;
        check_base_hash(base_hash)?;
        let files = PeftFiles::read(src_dir)?;
        let adapter = parse_peft(&name, &files, base)?;
        self.import_checked(&name, &adapter, base_hash)
    }

    /// Imports an adapter from the bytes of its two files (an HTTP upload), with the same
    /// validation as [`Store::import_dir`]. Errors name the files as `<upload NAME>/...`.
    pub fn import_files(
        &self,
        name: &str,
        config_json: &[u8],
        safetensors: &[u8],
        base: &BaseShape,
        base_hash: &str,
    ) -> Result<StoredInfo, StoreError> {
        validate_adapter_name(name)?;
        check_base_hash(base_hash)?;
        let dir = PathBuf::from(format!("<upload {name}>"));
        let files = PeftFiles {
            config_path: dir.join(CONFIG_FILE),
            config: config_json.to_vec(),
            weights_path: dir.join(WEIGHTS_FILE),
            weights: safetensors.to_vec(),
        };
        let adapter = parse_peft(name, &files, base)?;
        self.import_checked(name, &adapter, base_hash)
    }

    /// Imports an already-parsed adapter as `name` (its own `name` field is ignored). Its weights
    /// are checked for consistency and its `content_hash` recomputed; a stale hash is refused.
    /// There is no base shape to check against here: [`Store::decode`] checks it at load.
    pub fn import_adapter(
        &self,
        name: &str,
        adapter: &Adapter,
        base_hash: &str,
    ) -> Result<StoredInfo, StoreError> {
        validate_adapter_name(name)?;
        check_base_hash(base_hash)?;
        check_weights(name, adapter)?;
        let actual = adapter.compute_content_hash();
        if actual != adapter.content_hash {
            return Err(StoreError::InvalidAdapter {
                name: name.to_owned(),
                reason: format!(
                    "its content_hash {} does not match its weights ({actual})",
                    adapter.content_hash
                ),
            });
        }
        self.import_checked(name, adapter, base_hash)
    }

    /// Steps 1-5 of the module docs for a validated adapter.
    fn import_checked(
        &self,
        name: &str,
        adapter: &Adapter,
        base_hash: &str,
    ) -> Result<StoredInfo, StoreError> {
        check_weights(name, adapter)?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&adapter.content_hash, &mut hash).map_err(|_| {
            StoreError::InvalidAdapter {
                name: name.to_owned(),
                reason: format!("content_hash {:?} is not 64 hex digits", adapter.content_hash),
            }
        })?;
        let blob = encode_blob(&adapter.weights, &hash);

        let _lock = self.lock_exclusive()?;
        self.write_state().catch_up(true)?;
        let (reuse, pinned) = {
            let st = self.read_state();
            match st.entries.get(name) {
                Some(e) if e.hash != hash => {
                    return Err(StoreError::AdapterExists {
                        name: name.to_owned(),
                        root: self.root.clone(),
                    });
                }
                Some(e) if e.info.state == EntryState::Ready => return Ok(e.info.clone()),
                // Same content, quarantined: re-importing repairs it with a fresh blob.
                Some(e) => (None, e.info.pinned),
                None => {
                    let ready = st
                        .entries
                        .values()
                        .find(|e| e.hash == hash && e.info.state == EntryState::Ready);
                    (ready.map(|e| e.loc), false)
                }
            }
        };
        let loc = match reuse {
            Some(loc) => loc,
            None => self.append_blob(&blob.bytes, false)?,
        };
        let targets: BTreeSet<_> = adapter.weights.iter().map(|w| w.module).collect();
        let put = PutRecord {
            name: name.to_owned(),
            loc,
            dtype: blob.dtype,
            rank: adapter.max_rank() as u32,
            alpha: adapter.config.lora_alpha,
            use_rslora: adapter.config.use_rslora,
            targets: targets.into_iter().collect(),
            pinned,
            created: now_secs(),
            content_hash: hash,
            base_hash: base_hash.to_owned(),
        };
        let mut st = self.write_state();
        st.commit(vec![Record::Put(put)])?;
        st.entries.get(name).map(|e| e.info.clone()).ok_or_else(|| self.not_found(name))
    }

    /// Appends a blob to the active segment (rolling over to a new one when it would pass the
    /// size cap, or when `fresh_segment` asks for one) and syncs it. The caller holds the
    /// exclusive lock and has caught up.
    pub(super) fn append_blob(&self, bytes: &[u8], fresh_segment: bool) -> Result<Loc, StoreError> {
        let len = bytes.len() as u64;
        let files = list_segments(&self.segments_dir)?;
        let active = files.keys().next_back().copied();
        let (highest_hw, active_hw) = {
            let st = self.read_state();
            let highest = st.high_water.keys().next_back().copied();
            (highest, active.and_then(|id| st.high_water.get(&id).copied()))
        };
        let max = self.max_segment_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let mut target = active.map(|id| (id, active_hw.unwrap_or(0).max(SEG_HEADER)));
        // Never append below an id the index references beyond the newest file (a file deleted
        // behind lorad's back): its id must not be reused.
        if let (Some((id, _)), Some(h)) = (target, highest_hw)
            && h > id
        {
            target = None;
        }
        if let Some((_, offset)) = target
            && (fresh_segment || (offset > SEG_HEADER && offset + len > max))
        {
            target = None;
        }
        let (id, offset) = match target {
            Some(t) => t,
            None => {
                let id = active.max(highest_hw).unwrap_or(0) + 1;
                create_segment(&self.segments_dir, id)?;
                (id, SEG_HEADER)
            }
        };
        write_blob(&self.segments_dir.join(segment_file_name(id)), offset, bytes)?;
        let loc = Loc { segment: id, offset, len };
        self.write_state().bump(loc);
        Ok(loc)
    }
}

/// Refuses base hashes that cannot be stored (the index reserves 128 bytes) or would garble
/// listings.
fn check_base_hash(base_hash: &str) -> Result<(), StoreError> {
    let reason = if base_hash.len() > MAX_STR {
        "it is longer than 128 bytes"
    } else if !base_hash.bytes().all(|b| b.is_ascii_graphic()) {
        "it contains characters other than printable ASCII"
    } else {
        return Ok(());
    };
    let value = super::format::truncate_utf8(base_hash, 80).to_owned();
    Err(StoreError::InvalidBaseHash { value, reason })
}

/// Checks what the blob layout and decoding rely on: at least one pair, pairs in `(layer,
/// module)` order without duplicates (the canonical order the content hash and decode use), ranks
/// dividing the matrix lengths, dimensions that fit the manifest's u32 fields, finite values.
fn check_weights(name: &str, adapter: &Adapter) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::InvalidAdapter { name: name.to_owned(), reason };
    if adapter.weights.is_empty() {
        return Err(bad("it has no weights".into()));
    }
    let mut prev = None;
    for w in &adapter.weights {
        let what = w.module.module_path(w.layer);
        let key = (w.layer, w.module.index());
        if prev.is_some_and(|p| p >= key) {
            return Err(bad(format!("{what} is out of (layer, module) order or duplicated")));
        }
        prev = Some(key);
        let fits = |v: usize| u32::try_from(v).is_ok();
        if w.rank == 0
            || w.a.is_empty()
            || w.b.is_empty()
            || w.a.len() % w.rank != 0
            || w.b.len() % w.rank != 0
            || !fits(w.layer)
            || !fits(w.rank)
            || !fits(w.a.len() / w.rank)
            || !fits(w.b.len() / w.rank)
        {
            return Err(bad(format!(
                "{what}: rank {} does not fit a.len()={} and b.len()={}",
                w.rank,
                w.a.len(),
                w.b.len()
            )));
        }
        if !w.scale.is_finite() {
            return Err(bad(format!("{what}: scale {} is not finite", w.scale)));
        }
        for (ab, values) in [("lora_A", &w.a), ("lora_B", &w.b)] {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!("{what}.{ab}: non-finite value at element {i}")));
            }
        }
    }
    Ok(())
}
