//! The read path: one paged read per blob, checksums, decoding to f32, quarantine, verify.
//!
//! Damage is only ever concluded from a *fresh* index view: a reader's view can be stale (another
//! process removed the adapter, gc moved its blob and deleted or truncated the old segment), and a
//! stale view reads someone else's bytes or none. So a failed read refreshes first; if the entry
//! has moved or gone it retries or answers NotFound, and only if the fresh view still points at
//! the same bytes is the adapter quarantined.

use std::collections::{BTreeMap, BTreeSet};

use super::blob::{Blob, check_crcs, decode_weights, parse_manifest};
use super::format::{Loc, Record};
use super::index::Entry;
use super::{EntryState, Store, StoredInfo, VerifyReport};
use crate::adapter::{Adapter, BaseShape, LoraWeights};
use crate::config::{PeftConfig, scale_for};
use crate::error::StoreError;

/// Why a read failed.
enum ReadFailure {
    /// The bytes are wrong or missing: quarantine-worthy once confirmed against a fresh view.
    Damaged(StoreError),
    /// The read itself failed (EIO, permissions): reported, never quarantined.
    Io(StoreError),
}

impl Store {
    /// Reads adapter `name`'s blob in one paged read and checks its manifest and every tensor's
    /// CRC32. A damaged blob quarantines the adapter (and any other name sharing the blob) and
    /// returns [`StoreError::Checksum`] or [`StoreError::CorruptBlob`]; a quarantined adapter
    /// returns [`StoreError::Quarantined`].
    pub fn read_blob(&self, name: &str) -> Result<Blob, StoreError> {
        let mut entry = self.entry(name)?;
        let mut retried = false;
        loop {
            if let EntryState::Quarantined { reason } = &entry.info.state {
                return Err(StoreError::Quarantined {
                    name: name.to_owned(),
                    reason: reason.clone(),
                });
            }
            let failure = match self.read_entry(&entry) {
                Ok(blob) => return Ok(blob),
                Err(f) => f,
            };
            if !retried {
                // Once more from a fresh view and a reopened segment (a cached descriptor may be
                // of a file gc deleted): the entry may have moved, gone, or been quarantined.
                retried = true;
                self.segments.forget(entry.loc.segment);
                self.refresh()?;
                entry = self.entry(name)?;
                continue;
            }
            return Err(match failure {
                ReadFailure::Io(e) => {
                    StoreError::AdapterIo { name: name.to_owned(), source: Box::new(e) }
                }
                ReadFailure::Damaged(e) => {
                    self.quarantine(entry.loc, entry.hash, &e.to_string());
                    e
                }
            });
        }
    }

    /// Reads and checks the blob at `entry`'s location.
    fn read_entry(&self, entry: &Entry) -> Result<Blob, ReadFailure> {
        let name = &entry.info.name;
        let location = self.blob_location(entry.loc);
        let corrupt = |reason: String| {
            ReadFailure::Damaged(StoreError::CorruptBlob {
                name: name.clone(),
                path: location.path.clone(),
                offset: entry.loc.offset,
                reason,
            })
        };
        let seg = match self.segments.get(&self.segments_dir, entry.loc.segment) {
            Ok(seg) => seg,
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt("its segment file is missing".to_owned()));
            }
            Err(e) => return Err(ReadFailure::Io(e)),
        };
        // Checked before reading so that a truncated segment (or a nonsensical length) costs no
        // allocation and reads nothing.
        let file_len = match seg.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Err(ReadFailure::Io(StoreError::io("inspecting", &seg.path, e))),
        };
        if entry.loc.end() > file_len {
            return Err(corrupt(format!(
                "the segment is truncated: it is {file_len} bytes but the blob ends at byte {}",
                entry.loc.end()
            )));
        }
        let len = usize::try_from(entry.loc.len).map_err(|_| corrupt("blob too large".into()))?;
        let buf = match self.pager.read(&seg.file, &seg.path, entry.loc.offset, len) {
            Ok(buf) => buf,
            Err(e @ StoreError::ShortRead { .. }) => {
                return Err(corrupt(format!("the segment is truncated ({e})")));
            }
            Err(StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return Err(corrupt(format!("the segment is truncated ({source})")));
            }
            Err(e) => return Err(ReadFailure::Io(e)),
        };
        let manifest = parse_manifest(&buf, &entry.hash).map_err(corrupt)?;
        check_crcs(&buf, &manifest).map_err(|(tensor, expected, actual)| {
            ReadFailure::Damaged(StoreError::Checksum {
                name: name.clone(),
                tensor,
                path: location.path.clone(),
                expected,
                actual,
            })
        })?;
        Ok(Blob { info: entry.info.clone(), location, manifest, buf })
    }

    /// Decodes a blob to the f32 [`Adapter`] `name` was imported as, after checking every pair
    /// fits `base`. The first decode of a blob in this process also recomputes the content hash
    /// from the decoded weights (the CRCs guard the bytes; this guards the whole chain, encoding
    /// included); a mismatch quarantines the adapter.
    ///
    /// The config is reconstructed from what the store keeps: `r` = the largest rank,
    /// `lora_alpha`, `use_rslora`, `target_modules`, plus `rank_pattern` / `alpha_pattern` entries
    /// for pairs that differ from those defaults and `layers_to_transform` when not every layer
    /// is adapted, so the config reproduces every pair's rank and scale.
    pub fn decode(&self, blob: &Blob, base: &BaseShape) -> Result<Adapter, StoreError> {
        check_shapes(blob, base)?;
        let weights = decode_weights(&blob.buf, &blob.manifest);
        self.check_content(blob, Some(&weights), false)?;
        let info = &blob.info;
        Ok(Adapter {
            name: info.name.clone(),
            config: reconstruct_config(info, &weights, base),
            weights,
            content_hash: info.content_hash.clone(),
        })
    }

    /// What [`Store::decode`] checks, without keeping the decoded weights: every pair fits
    /// `base`, and (on the first check of this blob in this process) the content hash of its
    /// decoded weights is the recorded one. A blob that passed once is not decoded again, so a
    /// caller that uploads the stored tensors as they are ([`Blob::tensor_bytes`]) re-pages an
    /// adapter without touching its values on the host.
    pub fn check(&self, blob: &Blob, base: &BaseShape) -> Result<(), StoreError> {
        check_shapes(blob, base)?;
        self.check_content(blob, None, false)
    }

    /// [`Store::read_blob`] then [`Store::decode`].
    pub fn load(&self, name: &str, base: &BaseShape) -> Result<Adapter, StoreError> {
        let blob = self.read_blob(name)?;
        self.decode(&blob, base)
    }

    /// Recomputes the content hash of the blob's decoded weights (`weights`, or decoded here when
    /// `None`) once per blob per process unless `force`, quarantining on mismatch.
    fn check_content(
        &self,
        blob: &Blob,
        weights: Option<&[LoraWeights]>,
        force: bool,
    ) -> Result<(), StoreError> {
        let loc = Loc {
            segment: blob.location.segment,
            offset: blob.location.offset,
            len: blob.location.len,
        };
        let mut hash = [0u8; 32];
        // The index stores the raw hash, so its hex form always decodes.
        let _ = hex::decode_to_slice(&blob.info.content_hash, &mut hash);
        let key = (loc, hash);
        let lock = || self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !force && lock().contains(&key) {
            return Ok(());
        }
        let actual = match weights {
            Some(w) => crate::hash::content_hash(w),
            None => crate::hash::content_hash(&decode_weights(&blob.buf, &blob.manifest)),
        };
        if actual != blob.info.content_hash {
            let err = StoreError::CorruptBlob {
                name: blob.info.name.clone(),
                path: blob.location.path.clone(),
                offset: loc.offset,
                reason: format!(
                    "the decoded weights hash to {actual}, not the {} recorded at import",
                    blob.info.content_hash
                ),
            };
            self.quarantine(loc, hash, &err.to_string());
            return Err(err);
        }
        lock().insert(key);
        Ok(())
    }

    /// Checks every adapter: a full read (CRCs) and a content-hash recomputation each. Failures
    /// are quarantined and listed; already-quarantined adapters are listed as failed too.
    pub fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "verify: refreshing the index failed; checking the entries already known");
        }
        let names: Vec<String> = self.read_state().entries.keys().cloned().collect();
        for name in names {
            let result =
                self.read_blob(&name).and_then(|blob| self.check_content(&blob, None, true));
            match result {
                Ok(()) => report.ok += 1,
                // Removed since the listing: not a failure.
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => report.failed.push((name, e)),
            }
        }
        report
    }

    /// Persists a quarantine for every ready entry whose blob is the one at `loc` with content
    /// `hash` (they share the damaged bytes). Best effort: if the record cannot be written (a
    /// read-only store), the quarantine holds in this process only, and the error is logged.
    pub(super) fn quarantine(&self, loc: Loc, hash: [u8; 32], reason: &str) {
        let affected = |entries: &BTreeMap<String, Entry>| -> Vec<String> {
            entries
                .values()
                .filter(|e| e.loc == loc && e.hash == hash && e.info.state == EntryState::Ready)
                .map(|e| e.info.name.clone())
                .collect()
        };
        let persisted = (|| {
            let _lock = self.lock_exclusive()?;
            let mut st = self.write_state();
            st.catch_up(true)?;
            let names = affected(&st.entries);
            for n in &names {
                tracing::error!(adapter = %n, reason, "quarantining adapter");
            }
            let records = names
                .into_iter()
                .map(|name| Record::Quarantine { name, reason: reason.to_owned() })
                .collect();
            st.commit(records)
        })();
        if let Err(e) = persisted {
            tracing::error!(error = %e, reason, "could not persist a quarantine; it holds in this process only");
            let mut st = self.write_state();
            for n in affected(&st.entries) {
                if let Some(e) = st.entries.get_mut(&n) {
                    e.info.state = EntryState::Quarantined { reason: reason.to_owned() };
                }
            }
        }
    }
}

/// A config that reproduces every pair's rank and scale (see [`Store::decode`]).
fn reconstruct_config(info: &StoredInfo, weights: &[LoraWeights], base: &BaseShape) -> PeftConfig {
    let r = weights.iter().map(|w| w.rank).max().unwrap_or(0);
    let mut config = PeftConfig {
        r,
        lora_alpha: info.alpha,
        target_modules: info.targets.clone(),
        use_rslora: info.use_rslora,
        task_type: Some("CAUSAL_LM".to_owned()),
        ..PeftConfig::default()
    };
    for w in weights {
        let path = w.module.module_path(w.layer);
        if w.rank != r {
            config.rank_pattern.insert(path.clone(), w.rank);
        }
        if scale_for(info.alpha, w.rank, info.use_rslora) != w.scale {
            let rank = w.rank as f64;
            let alpha = f64::from(w.scale) * if info.use_rslora { rank.sqrt() } else { rank };
            config.alpha_pattern.insert(path, alpha);
        }
    }
    let layers: BTreeSet<usize> = weights.iter().map(|w| w.layer).collect();
    if layers.len() < base.num_layers {
        config.layers_to_transform = Some(layers.into_iter().collect());
    }
    config
}

/// Every pair of `blob` fits the projection it adapts in `base`.
fn check_shapes(blob: &Blob, base: &BaseShape) -> Result<(), StoreError> {
    base.validate()?;
    for p in &blob.manifest {
        let (out_f, in_f) = base.shape(p.module);
        let reason = if p.layer >= base.num_layers {
            format!("it adapts layer {} but the base model has {} layers", p.layer, base.num_layers)
        } else if (p.out_features, p.in_features) != (out_f, in_f) {
            format!(
                "{} is {}x{} in the adapter but {out_f}x{in_f} in the base model",
                p.module.module_path(p.layer),
                p.out_features,
                p.in_features
            )
        } else {
            continue;
        };
        return Err(StoreError::ShapeMismatch { name: blob.info.name.clone(), reason });
    }
    Ok(())
}
