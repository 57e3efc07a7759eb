//! Garbage collection: reclaiming the space of removed adapters and torn imports.
//!
//! Under the exclusive writer lock, in this order (each step durable before the next, so a crash
//! anywhere leaves a consistent store whose garbage the next gc reclaims):
//! 1. evacuate: live blobs of mostly-dead segments (live bytes under half the segment) are copied
//!    to a fresh segment, their CRCs checked on the way, and synced;
//! 2. `Relocate` records for them are appended and synced (from here on readers use the copies);
//! 3. the index is rewritten compactly (one `Put` per entry, plus `Quarantine` records): temporary
//!    file, fsync, rename over `index`, fsync of the root. Readers detect the new inode on refresh;
//! 4. segments no live entry references are deleted (except the newest, so ids are never reused,
//!    which is truncated to its header instead), and every kept segment is truncated after its
//!    last live blob; then `segments/` is fsynced.
//!
//! Deleting or truncating only after the index no longer references the bytes is what makes it
//! safe; readers with a stale view that hit a missing file or a short read refresh and retry.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;

use super::blob::{check_crcs, parse_manifest};
use super::format::{IndexHeader, Loc, Record};
use super::index::{State, write_index};
use super::segment::{
    CrashStep, SEG_HEADER, crash_point, list_segments, segment_file_name, truncate_segment,
};
use super::{GcReport, Store, now_secs};
use crate::error::StoreError;

impl Store {
    /// Compacts the store (see the module docs for the steps). Returns what it did.
    ///
    /// Refused with [`StoreError::DamagedIndex`] while the index holds damaged records: what
    /// they held is unknown (an adapter's `Put`, say), and compaction would drop them and
    /// reclaim the bytes they referenced for good. [`Store::gc_discarding_damaged`] goes ahead.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        self.gc_inner(false)
    }

    /// [`Store::gc`] even when the index holds damaged records: they are dropped, and the
    /// blobs only they referenced are reclaimed. For an operator who has backed the store up.
    pub fn gc_discarding_damaged(&self) -> Result<GcReport, StoreError> {
        self.gc_inner(true)
    }

    fn gc_inner(&self, discard_damaged: bool) -> Result<GcReport, StoreError> {
        let _lock = self.lock_exclusive()?;
        self.write_state().catch_up(true)?;
        let damaged = self.read_state().index.damaged.clone();
        if !damaged.is_empty() {
            if !discard_damaged {
                return Err(StoreError::DamagedIndex {
                    path: self.index_path.clone(),
                    offsets: damaged,
                });
            }
            tracing::warn!(records = damaged.len(), "gc: discarding damaged index records");
        }
        let bytes_before = self.disk_bytes();
        let index_records_before = self.read_state().index.records;
        self.remove_temporaries();
        let blobs_moved = self.evacuate()?;
        let index_records_after = self.compact_index()?;
        let segments_deleted = self.reclaim()?;
        let live = self.read_state().live_segments();
        self.segments.retain(&live);
        Ok(GcReport {
            bytes_reclaimed: bytes_before.saturating_sub(self.disk_bytes()),
            segments_deleted,
            blobs_moved,
            index_records_before,
            index_records_after,
        })
    }

    /// Leftovers of interrupted segment creations and compactions. Safe under the exclusive
    /// lock: every writer of such a file holds it.
    fn remove_temporaries(&self) {
        for (dir, prefix) in [(&self.segments_dir, ".tmp-"), (&self.root, ".index.tmp-")] {
            let Ok(entries) = fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(prefix) {
                    // Best effort: a leftover is retried by the next gc.
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    /// Live blobs by segment: location → content hash (one entry per blob, however many names).
    fn live_blobs(&self) -> BTreeMap<u32, BTreeMap<Loc, [u8; 32]>> {
        let mut out: BTreeMap<u32, BTreeMap<Loc, [u8; 32]>> = BTreeMap::new();
        for e in self.read_state().entries.values() {
            out.entry(e.loc.segment).or_default().insert(e.loc, e.hash);
        }
        out
    }

    /// Steps 1-2: copies live blobs out of mostly-dead segments. Returns how many moved.
    fn evacuate(&self) -> Result<usize, StoreError> {
        let files = list_segments(&self.segments_dir)?;
        let live = self.live_blobs();
        let mut to_move = Vec::new();
        for (id, len) in &files {
            let Some(blobs) = live.get(id) else { continue };
            // Saturating: a damaged index record can claim any length.
            let live_bytes = blobs.keys().fold(0u64, |sum, l| sum.saturating_add(l.len));
            if live_bytes.saturating_mul(2) < len.saturating_sub(SEG_HEADER) {
                to_move.extend(blobs.iter().map(|(l, h)| (*l, *h)));
            }
        }
        let mut relocations = Vec::new();
        for (from, hash) in to_move {
            let bytes = match self.read_for_move(from, &hash) {
                Ok(b) => b,
                Err(reason) => {
                    // Left in place; the next load of it finds and quarantines the damage.
                    tracing::warn!(segment = from.segment, offset = from.offset, %reason, "gc: not moving a damaged blob");
                    continue;
                }
            };
            // The first copy opens a fresh segment, so every source (the active one included)
            // ends up with no live blob and can be deleted.
            let to = self.append_blob(&bytes, relocations.is_empty())?;
            relocations.push(Record::Relocate { content_hash: hash, from, to });
        }
        if relocations.is_empty() {
            return Ok(0);
        }
        crash_point(CrashStep::GcCopied);
        let moved = relocations.len();
        self.write_state().commit(relocations)?;
        crash_point(CrashStep::GcRelocated);
        Ok(moved)
    }

    /// Reads a blob with plain I/O (not counted in the pager's stats) and checks it fully.
    fn read_for_move(&self, loc: Loc, hash: &[u8; 32]) -> Result<Vec<u8>, String> {
        let path = self.segments_dir.join(segment_file_name(loc.segment));
        let file = File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let mut bytes = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut bytes, loc.offset)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let manifest = parse_manifest(&bytes, hash)?;
        check_crcs(&bytes, &manifest)
            .map_err(|(tensor, _, _)| format!("tensor `{tensor}` fails its checksum"))?;
        Ok(bytes)
    }

    /// Step 3: rewrites the index from the current state. Returns its record count.
    fn compact_index(&self) -> Result<usize, StoreError> {
        let (header, records) = {
            let st = self.read_state();
            let header =
                IndexHeader { generation: st.index.header.generation + 1, created: now_secs() };
            (header, st.compact_records())
        };
        write_index(&self.index_path, &header, &records, true)?;
        crash_point(CrashStep::GcIndexRenamed);
        let (fresh, _) = State::load(&self.index_path, true)?;
        *self.write_state() = fresh;
        Ok(records.len())
    }

    /// Step 4: deletes unreferenced segments and truncates dead tails. Returns how many segments
    /// were deleted.
    fn reclaim(&self) -> Result<usize, StoreError> {
        let files = list_segments(&self.segments_dir)?;
        let newest = files.keys().next_back().copied();
        let mut live_end: BTreeMap<u32, u64> = BTreeMap::new();
        for e in self.read_state().entries.values() {
            let end = live_end.entry(e.loc.segment).or_insert(0);
            *end = (*end).max(e.loc.end());
        }
        let mut deleted = 0;
        for (id, len) in files {
            let path = self.segments_dir.join(segment_file_name(id));
            match live_end.get(&id) {
                None if Some(id) != newest => {
                    fs::remove_file(&path).map_err(|e| StoreError::io("deleting", &path, e))?;
                    deleted += 1;
                }
                end => {
                    let keep = end.copied().unwrap_or(0).max(SEG_HEADER);
                    if len > keep {
                        truncate_segment(&path, keep)?;
                    }
                }
            }
        }
        self.sync_segments_dir()?;
        Ok(deleted)
    }
}
