//! The index: an append-only log of fixed-size records in one memory-mapped file, replayed into
//! an in-memory map of entries.
//!
//! Readers never lock: they map the file, scan the slots past the last one they applied, and stop
//! at the first slot that is not a valid record (a torn write, or a record another process is
//! writing right now). A bad slot *followed by* valid ones is ambiguous to a lock-free reader (an
//! in-flight write, or permanent damage), so the caller rescans under a shared lock, where no
//! write is in flight: the bad slot is then damage, skipped with a warning. Writers hold the
//! exclusive lock, catch up, then append at the end of the last valid record, overwriting any
//! torn tail in place.
//!
//! The file never shrinks in place — that is what makes the mapping safe (see [`map_index`]).
//! Compaction writes a new file and renames it over the old one; readers notice the new inode on
//! their next refresh and reload.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};

use super::format::{
    HEADER_SIZE, HeaderError, INDEX_VERSION, IndexHeader, Loc, PutRecord, RECORD_SIZE, Record,
    decode_header, decode_record, dtype_summary_str, dtype_summary_tag, encode_header,
    encode_record,
};
use super::segment::{CrashStep, crash_enabled, crash_point};
use super::{EntryState, StoredInfo};
use crate::error::StoreError;
use crate::fsutil::{sync_dir, unique_suffix};

/// Maps the index file read-only.
///
/// A shared file mapping is only valid while the file is at least as long as the part being
/// touched: if another process truncated the file, reading a mapped page past the new end would
/// raise SIGBUS and kill lorad. That cannot happen through lorad itself: the index is only ever
/// written by appending (a torn tail is overwritten in place, never truncated) and compaction
/// replaces the file by `rename(2)`, which leaves the mapped inode intact for as long as the
/// mapping exists. As a guard against anything else shrinking it, every scan reads the file's
/// current length first and touches no byte at or past it; a shrunken file is treated as replaced
/// and reloaded. The store root is lorad's private directory; editing the index by hand while
/// lorad runs is not supported.
fn map_index(file: &File, path: &Path) -> Result<Mmap, StoreError> {
    // SAFETY: the mapping is read-only and private to this process's view; the file is never
    // truncated in place by lorad (see the doc comment above), and callers bound every access by
    // the file's current length, so no access can fault. Concurrent appends by other processes
    // only change bytes past what we have validated, which we read as plain bytes and check by
    // CRC before trusting.
    unsafe { MmapOptions::new().map(file) }.map_err(|e| StoreError::io("mapping", path, e))
}

/// An open, mapped index file and how far it has been read.
#[derive(Debug)]
pub(super) struct IndexFile {
    path: PathBuf,
    file: File,
    map: Mmap,
    dev: u64,
    ino: u64,
    pub(super) header: IndexHeader,
    /// End of the last valid record applied (a slot boundary).
    valid_end: u64,
    last_seq: u64,
    /// Valid records applied from this file.
    pub(super) records: usize,
    /// Offsets of damaged slots skipped because valid records follow (the first of each run).
    /// What they held is unknown, so gc must not reclaim space on the strength of this view.
    pub(super) damaged: Vec<u64>,
}

impl IndexFile {
    fn open(path: &Path) -> Result<IndexFile, StoreError> {
        // Read-write so that this process can also append; a read-only copy still serves loads.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .or_else(|_| File::open(path))
            .map_err(|e| StoreError::io("opening", path, e))?;
        let meta = file.metadata().map_err(|e| StoreError::io("inspecting", path, e))?;
        let corrupt =
            |reason: String| StoreError::CorruptIndex { path: path.to_path_buf(), reason };
        if meta.len() < HEADER_SIZE as u64 {
            return Err(corrupt(format!("{} bytes, shorter than the header", meta.len())));
        }
        let map = map_index(&file, path)?;
        let header = decode_header(&map[..HEADER_SIZE]).map_err(|e| match e {
            HeaderError::Corrupt(reason) => corrupt(reason),
            HeaderError::Version(found) => StoreError::IndexVersion {
                path: path.to_path_buf(),
                found,
                supported: INDEX_VERSION,
            },
        })?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            map,
            dev: meta.dev(),
            ino: meta.ino(),
            header,
            valid_end: HEADER_SIZE as u64,
            last_seq: 0,
            records: 0,
            damaged: Vec::new(),
        })
    }

    fn len(&self) -> Result<u64, StoreError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| StoreError::io("inspecting", &self.path, e))
    }

    /// Whether the path now names another file (compaction renamed a new one over it) or the file
    /// shrank (which lorad never does: treated the same way, by reloading).
    fn replaced(&self) -> Result<bool, StoreError> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| StoreError::io("inspecting", &self.path, e))?;
        Ok(meta.dev() != self.dev || meta.ino() != self.ino || meta.len() < self.valid_end)
    }

    /// Reads the records appended since the last scan. `quiescent`: the caller holds the writer
    /// lock (shared or exclusive), so a bad slot before a valid one is damage and is skipped.
    /// Returns the new records and whether such an ambiguous bad slot stopped a lock-free scan.
    fn scan(&mut self, quiescent: bool) -> Result<(Vec<Record>, bool), StoreError> {
        let len = self.len()?;
        if len > self.map.len() as u64 && len >= self.valid_end + RECORD_SIZE as u64 {
            self.map = map_index(&self.file, &self.path)?;
        }
        // Never touch bytes past the file's current end (see `map_index`).
        let end = len.min(self.map.len() as u64);
        let mut out = Vec::new();
        let mut pos = self.valid_end;
        let mut first_bad = None;
        while pos + RECORD_SIZE as u64 <= end {
            let slot = &self.map[pos as usize..pos as usize + RECORD_SIZE];
            match decode_record(slot).filter(|(seq, _)| *seq > self.last_seq) {
                Some((seq, record)) => {
                    if let Some(bad) = first_bad.take() {
                        if !quiescent {
                            return Ok((out, true));
                        }
                        tracing::warn!(
                            index = %self.path.display(),
                            offset = bad,
                            "skipping a damaged index record followed by valid ones"
                        );
                        self.damaged.push(bad);
                    }
                    out.push(record);
                    self.last_seq = seq;
                    self.records += 1;
                    self.valid_end = pos + RECORD_SIZE as u64;
                }
                None => {
                    first_bad.get_or_insert(pos);
                }
            }
            pos += RECORD_SIZE as u64;
        }
        Ok((out, false))
    }

    /// Appends `records` durably: written at the end of the last valid record (overwriting a torn
    /// tail, and zeroing whatever of it remains so no stale bytes follow), then fdatasync.
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let mut buf = Vec::with_capacity(records.len() * RECORD_SIZE);
        for (i, r) in records.iter().enumerate() {
            buf.extend_from_slice(&encode_record(self.last_seq + 1 + i as u64, r));
        }
        let tail = self.len()?.saturating_sub(self.valid_end);
        if tail > buf.len() as u64 {
            buf.resize(tail as usize, 0);
        }
        let write = |off: u64, b: &[u8]| {
            self.file.write_all_at(b, off).map_err(|e| StoreError::io("writing", &self.path, e))
        };
        if crash_enabled() {
            // Split so that the crash tests can leave half a record behind.
            let half = RECORD_SIZE / 2;
            write(self.valid_end, &buf[..half])?;
            crash_point(CrashStep::RecordHalfWritten);
            write(self.valid_end + half as u64, &buf[half..])?;
        } else {
            write(self.valid_end, &buf)?;
        }
        crash_point(CrashStep::RecordWritten);
        self.file.sync_data().map_err(|e| StoreError::io("syncing", &self.path, e))?;
        crash_point(CrashStep::RecordSynced);
        self.valid_end += (records.len() * RECORD_SIZE) as u64;
        self.last_seq += records.len() as u64;
        self.records += records.len();
        Ok(())
    }
}

/// Writes a complete index file (header + `records`) to `path` atomically and durably: temporary
/// file, fsync, rename, directory fsync. Used to create a store and by compaction (`compaction`
/// enables gc's crash-injection point).
pub(super) fn write_index(
    path: &Path,
    header: &IndexHeader,
    records: &[Record],
    compaction: bool,
) -> Result<(), StoreError> {
    let mut bytes = Vec::with_capacity(HEADER_SIZE + records.len() * RECORD_SIZE);
    bytes.extend_from_slice(&encode_header(header));
    for (i, r) in records.iter().enumerate() {
        bytes.extend_from_slice(&encode_record(i as u64 + 1, r));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".index.tmp-{}", unique_suffix()));
    let result = crate::fsutil::write_new_synced(&tmp, &bytes).and_then(|()| {
        if compaction {
            crash_point(CrashStep::GcIndexWritten);
        }
        std::fs::rename(&tmp, path).map_err(|e| StoreError::io("renaming", &tmp, e))
    });
    if result.is_err() {
        // Best effort: a leftover temporary is removed by the next gc.
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// One live (not removed) adapter.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) info: StoredInfo,
    pub(super) loc: Loc,
    pub(super) hash: [u8; 32],
}

impl Entry {
    /// The `Put` record that recreates this entry (compaction).
    pub(super) fn put_record(&self) -> PutRecord {
        PutRecord {
            name: self.info.name.clone(),
            loc: self.loc,
            dtype: dtype_summary_tag(&self.info.dtype),
            rank: self.info.rank as u32,
            alpha: self.info.alpha,
            use_rslora: self.info.use_rslora,
            targets: self.info.targets.clone(),
            pinned: self.info.pinned,
            created: self.info.created,
            content_hash: self.hash,
            base_hash: self.info.base_hash.clone(),
        }
    }
}

/// The replayed index.
#[derive(Debug)]
pub(super) struct State {
    pub(super) index: IndexFile,
    pub(super) entries: BTreeMap<String, Entry>,
    /// Per segment, the end of the last blob any record ever placed there (live or not): where
    /// the next blob goes. Bytes past it can only be torn writes.
    pub(super) high_water: BTreeMap<u32, u64>,
}

impl State {
    /// Opens and replays the index at `path`; the flag is [`IndexFile::scan`]'s ambiguity flag.
    pub(super) fn load(path: &Path, quiescent: bool) -> Result<(State, bool), StoreError> {
        let mut state = State {
            index: IndexFile::open(path)?,
            entries: BTreeMap::new(),
            high_water: BTreeMap::new(),
        };
        let anomaly = state.catch_up(quiescent)?;
        Ok((state, anomaly))
    }

    /// Applies whatever was appended (or reloads a replaced index). Returns the ambiguity flag.
    pub(super) fn catch_up(&mut self, quiescent: bool) -> Result<bool, StoreError> {
        if self.index.replaced()? {
            let path = self.index.path.clone();
            let (fresh, anomaly) = State::load(&path, quiescent)?;
            *self = fresh;
            return Ok(anomaly);
        }
        let (records, anomaly) = self.index.scan(quiescent)?;
        for r in &records {
            self.apply(r);
        }
        Ok(anomaly)
    }

    /// Makes `records` durable, then applies them. The caller holds the exclusive writer lock and
    /// has caught up, so nothing was appended in between.
    pub(super) fn commit(&mut self, records: Vec<Record>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.index.append(&records)?;
        for r in &records {
            self.apply(r);
        }
        Ok(())
    }

    /// Raises `loc.segment`'s append point past `loc`: replay does it for every record, and a
    /// writer for bytes it wrote before their record exists (gc's copies), so the next append in
    /// this process lands after them.
    pub(super) fn bump(&mut self, loc: Loc) {
        let hw = self.high_water.entry(loc.segment).or_insert(0);
        *hw = (*hw).max(loc.end());
    }

    fn apply(&mut self, record: &Record) {
        match record {
            Record::Put(p) => {
                self.bump(p.loc);
                let info = StoredInfo {
                    name: p.name.clone(),
                    rank: p.rank as usize,
                    alpha: p.alpha,
                    targets: p.targets.clone(),
                    use_rslora: p.use_rslora,
                    content_hash: hex::encode(p.content_hash),
                    base_hash: p.base_hash.clone(),
                    bytes: p.loc.len,
                    dtype: dtype_summary_str(p.dtype).to_owned(),
                    created: p.created,
                    pinned: p.pinned,
                    state: EntryState::Ready,
                };
                let entry = Entry { info, loc: p.loc, hash: p.content_hash };
                self.entries.insert(p.name.clone(), entry);
            }
            Record::Remove { name } => {
                self.entries.remove(name);
            }
            Record::Pin { name } | Record::Unpin { name } => {
                if let Some(e) = self.entries.get_mut(name) {
                    e.info.pinned = matches!(record, Record::Pin { .. });
                }
            }
            Record::Quarantine { name, reason } => {
                if let Some(e) = self.entries.get_mut(name) {
                    e.info.state = EntryState::Quarantined { reason: reason.clone() };
                }
            }
            Record::Relocate { content_hash, from, to } => {
                self.bump(*to);
                for e in self.entries.values_mut() {
                    if e.loc == *from && e.hash == *content_hash {
                        e.loc = *to;
                    }
                }
            }
        }
    }

    /// Segments some live entry references.
    pub(super) fn live_segments(&self) -> HashSet<u32> {
        self.entries.values().map(|e| e.loc.segment).collect()
    }

    /// The records that recreate the current state (compaction): one `Put` per entry, plus a
    /// `Quarantine` for each quarantined one.
    pub(super) fn compact_records(&self) -> Vec<Record> {
        let mut out: Vec<Record> =
            self.entries.values().map(|e| Record::Put(e.put_record())).collect();
        for e in self.entries.values() {
            if let EntryState::Quarantined { reason } = &e.info.state {
                out.push(Record::Quarantine { name: e.info.name.clone(), reason: reason.clone() });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(name: &str, offset: u64) -> Record {
        Record::Put(PutRecord {
            name: name.into(),
            loc: Loc { segment: 1, offset, len: 4096 },
            dtype: 2,
            rank: 8,
            alpha: 16.0,
            use_rslora: false,
            targets: vec![],
            pinned: false,
            created: 0,
            content_hash: [offset as u8; 32],
            base_hash: String::new(),
        })
    }

    fn new_index(dir: &Path) -> PathBuf {
        let path = dir.join("index");
        write_index(&path, &IndexHeader { generation: 1, created: 0 }, &[], false).unwrap();
        path
    }

    #[test]
    fn torn_tail_is_ignored_then_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_index(dir.path());
        let (mut st, _) = State::load(&path, true).unwrap();
        st.commit(vec![put("a", 4096)]).unwrap();
        // Half a record past the end, as a crash mid-append leaves it.
        let torn = encode_record(2, &put("b", 8192));
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&torn[..300], (HEADER_SIZE + RECORD_SIZE) as u64).unwrap();

        let (mut other, anomaly) = State::load(&path, false).unwrap();
        assert!(!anomaly);
        assert_eq!(other.entries.keys().collect::<Vec<_>>(), ["a"]);
        other.commit(vec![put("c", 8192)]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (HEADER_SIZE + 2 * RECORD_SIZE) as u64);
        st.catch_up(false).unwrap();
        assert_eq!(st.entries.keys().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(st.high_water[&1], 8192 + 4096);
    }

    #[test]
    fn damage_before_valid_records_needs_a_quiescent_rescan() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_index(dir.path());
        let (mut st, _) = State::load(&path, true).unwrap();
        st.commit(vec![put("a", 4096), put("b", 8192), put("c", 12288)]).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff], (HEADER_SIZE + RECORD_SIZE + 100) as u64).unwrap();
        let (lockfree, anomaly) = State::load(&path, false).unwrap();
        assert!(anomaly);
        assert_eq!(lockfree.entries.len(), 1);
        let (quiet, anomaly) = State::load(&path, true).unwrap();
        assert!(!anomaly);
        assert_eq!(quiet.entries.keys().collect::<Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn replacement_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = new_index(dir.path());
        let (mut st, _) = State::load(&path, true).unwrap();
        st.commit(vec![put("a", 4096), Record::Remove { name: "a".into() }]).unwrap();
        let header = IndexHeader { generation: 2, created: 0 };
        write_index(&path, &header, &[put("z", 4096)], false).unwrap();
        st.catch_up(false).unwrap();
        assert_eq!(st.index.header.generation, 2);
        assert_eq!(st.entries.keys().collect::<Vec<_>>(), ["z"]);
    }
}
