//! The content-addressed on-disk adapter store ([`Store`]), which replaced the directory-backed
//! registry of lorad 0.1.
//!
//! Layout under the root (byte-level details in `docs/store-format.md`):
//! - `index`: an append-only log of 512-byte records (`Put`, `Remove`, `Pin`, `Unpin`,
//!   `Quarantine`, `Relocate`), memory-mapped and replayed into the in-memory entry map
//!   (modules `index`, `format`);
//! - `segments/NNNNNNNN.seg`: append-only files of adapter blobs, every blob and every tensor
//!   4 KiB-aligned so reads can be O_DIRECT (modules `segment`, `blob`);
//! - `lock`: the advisory lock writers hold for the duration of a mutation.
//!
//! Module map: `import` (the write path and its fsync order), `read` (paged reads, checksums,
//! decoding, quarantine, verify), `gc` (compaction).
//!
//! Blobs are addressed by the adapter's content hash: importing the same content twice (under
//! two names, or the same name again) stores it once. A mutation becomes visible only once its
//! data and its index record are both durable; readers never lock and pick up other processes'
//! writes with [`Store::refresh`].

mod blob;
mod format;
mod gc;
mod import;
mod index;
mod read;
mod segment;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use blob::{Blob, BlobLocation, ManifestPair, StoredDtype, TensorExtent};
use format::{IndexHeader, Loc};
use index::{Entry, State};
use segment::{SegmentCache, segment_file_name};

use crate::adapter::TargetModule;
use crate::error::StoreError;
use crate::fsutil::sync_dir;
use crate::name::validate_adapter_name;
use crate::paging::{HostPinner, IoBackend, IoMode, Pager, PagerStats, PoolStats};

const INDEX_FILE: &str = "index";
const LOCK_FILE: &str = "lock";
const SEGMENTS_DIR: &str = "segments";
/// Segments roll over past this size (a blob larger than it gets a segment of its own).
const DEFAULT_MAX_SEGMENT_BYTES: u64 = 256 << 20;

/// How the store reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Read path: io_uring, `pread`, or auto-detect.
    pub io_mode: IoMode,
    /// In-flight io_uring requests.
    pub queue_depth: u32,
}

impl Default for StoreConfig {
    /// Auto-detected read path, queue depth 32.
    fn default() -> Self {
        StoreConfig { io_mode: IoMode::Auto, queue_depth: 32 }
    }
}

/// Whether an adapter can be served.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Imported and, as far as anyone has checked, intact.
    Ready,
    /// Failed an integrity check; loads are refused until it is removed or re-imported.
    Quarantined {
        /// What failed.
        reason: String,
    },
}

/// Summary of a stored adapter, from the index alone (no disk read).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredInfo {
    /// Adapter name.
    pub name: String,
    /// Largest LoRA rank over its pairs.
    pub rank: usize,
    /// `lora_alpha` from its config.
    pub alpha: f64,
    /// Projections it adapts.
    pub targets: Vec<TargetModule>,
    /// Whether it uses rsLoRA scaling.
    pub use_rslora: bool,
    /// Hex SHA-256 content hash (see [`crate::Adapter::compute_content_hash`]); also the blob's
    /// address.
    pub content_hash: String,
    /// The base model it was imported for, as given to the import.
    pub base_hash: String,
    /// Bytes its blob occupies on disk (shared with every other name of the same content).
    pub bytes: u64,
    /// `"bf16"`, `"f16"`, `"f32"`, or `"mixed"` when its tensors differ.
    pub dtype: String,
    /// Import time, Unix seconds.
    pub created: u64,
    /// Pinned (kept resident by the serving side).
    pub pinned: bool,
    /// Ready or quarantined.
    pub state: EntryState,
}

/// What [`Store::verify`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Adapters that passed every check.
    pub ok: usize,
    /// Adapters that failed (now quarantined), with the error.
    pub failed: Vec<(String, StoreError)>,
}

/// What [`Store::gc`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Segment bytes freed.
    pub bytes_reclaimed: u64,
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Live blobs copied out of mostly-dead segments.
    pub blobs_moved: usize,
    /// Index records before compaction.
    pub index_records_before: usize,
    /// Index records after compaction.
    pub index_records_after: usize,
}

/// The content-addressed adapter store. `Send + Sync`; every method takes `&self`.
///
/// Lock order, everywhere: `writer` mutex, then the `lock` file, then `state`. The mutex keeps
/// two threads of this process from sharing one file lock (flock locks belong to the open file,
/// so a second `lock()` by the same process would succeed, not wait).
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    index_path: PathBuf,
    segments_dir: PathBuf,
    lock_file: File,
    writer: Mutex<()>,
    state: RwLock<State>,
    segments: SegmentCache,
    pager: Pager,
    /// Blobs (by location and content) whose content hash this process has recomputed.
    verified: Mutex<HashSet<(Loc, [u8; 32])>>,
    max_segment_bytes: AtomicU64,
}

/// Holds the writer mutex and the file lock; releases both on drop.
struct LockGuard<'a> {
    _mutex: MutexGuard<'a, ()>,
    file: &'a File,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an unlock error leaves nothing to do.
        let _ = self.file.unlock();
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Store {
    /// Opens the store at `root`, creating it (directories, lock file, empty index) if missing.
    ///
    /// Errors: an index from another format version ([`StoreError::IndexVersion`]), a damaged
    /// index header ([`StoreError::CorruptIndex`]), io_uring required but unavailable, I/O.
    /// Torn writes from a crash need no repair here: they are invisible and reclaimed by
    /// [`Store::gc`].
    pub fn open(root: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let segments_dir = root.join(SEGMENTS_DIR);
        fs::create_dir_all(&segments_dir)
            .map_err(|e| StoreError::io("creating", &segments_dir, e))?;
        let lock_path = root.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .or_else(|_| File::open(&lock_path))
            .map_err(|e| StoreError::io("opening", &lock_path, e))?;
        let index_path = root.join(INDEX_FILE);
        if !index_path.exists() {
            lock_file.lock().map_err(|e| StoreError::io("locking", &lock_path, e))?;
            let created = if index_path.exists() {
                Ok(())
            } else {
                let header = IndexHeader { generation: 1, created: now_secs() };
                index::write_index(&index_path, &header, &[], false)
            };
            let _ = lock_file.unlock();
            created?;
        }
        let pager = Pager::new(config.io_mode, config.queue_depth)?;
        let state = match State::load(&index_path, false)? {
            (state, false) => state,
            (_, true) => {
                lock_file.lock_shared().map_err(|e| StoreError::io("locking", &lock_path, e))?;
                let loaded = State::load(&index_path, true);
                let _ = lock_file.unlock();
                loaded?.0
            }
        };
        Ok(Store {
            root: root.to_path_buf(),
            index_path,
            segments_dir,
            lock_file,
            writer: Mutex::new(()),
            state: RwLock::new(state),
            segments: SegmentCache::default(),
            pager,
            verified: Mutex::new(HashSet::new()),
            max_segment_bytes: AtomicU64::new(DEFAULT_MAX_SEGMENT_BYTES),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Caps segment files at `bytes` before a new one is started (default 256 MiB; tests use
    /// small values to exercise roll-over and gc). Not persisted.
    pub fn set_max_segment_bytes(&self, bytes: u64) {
        self.max_segment_bytes.store(bytes.max(1), Ordering::Relaxed);
    }

    /// All live (not removed) adapters, quarantined ones included, sorted by name. Reflects this
    /// process's view; call [`Store::refresh`] first to include other processes' latest writes.
    pub fn list(&self) -> Vec<StoredInfo> {
        self.read_state().entries.values().map(|e| e.info.clone()).collect()
    }

    /// The entry of adapter `name` (refreshing once if this process has not seen it).
    pub fn get(&self, name: &str) -> Result<StoredInfo, StoreError> {
        self.entry(name).map(|e| e.info)
    }

    /// Whether adapter `name` is stored (refreshing once if this process has not seen it).
    pub fn contains(&self, name: &str) -> bool {
        self.entry(name).is_ok()
    }

    /// Where adapter `name`'s blob lives on disk.
    pub fn location(&self, name: &str) -> Result<BlobLocation, StoreError> {
        let e = self.entry(name)?;
        Ok(self.blob_location(e.loc))
    }

    /// Removes adapter `name`. Its blob stays on disk while another name shares it, and until
    /// [`Store::gc`] otherwise.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        validate_adapter_name(name)?;
        let _lock = self.lock_exclusive()?;
        let mut st = self.write_state();
        st.catch_up(true)?;
        if !st.entries.contains_key(name) {
            return Err(self.not_found(name));
        }
        st.commit(vec![format::Record::Remove { name: name.to_owned() }])?;
        let live = st.live_segments();
        drop(st);
        self.segments.retain(&live);
        Ok(())
    }

    /// Pins or unpins adapter `name` (persisted; a no-op if it already is).
    pub fn set_pinned(&self, name: &str, pinned: bool) -> Result<(), StoreError> {
        validate_adapter_name(name)?;
        let _lock = self.lock_exclusive()?;
        let mut st = self.write_state();
        st.catch_up(true)?;
        let entry = st.entries.get(name).ok_or_else(|| self.not_found(name))?;
        if entry.info.pinned == pinned {
            return Ok(());
        }
        let name = name.to_owned();
        let record =
            if pinned { format::Record::Pin { name } } else { format::Record::Unpin { name } };
        st.commit(vec![record])
    }

    /// Picks up what other processes appended to the index (or a compacted index gc renamed into
    /// place), and closes descriptors of segments nothing references any more.
    pub fn refresh(&self) -> Result<(), StoreError> {
        let ambiguous = self.write_state().catch_up(false)?;
        if ambiguous {
            // A bad record followed by good ones: in flight or damaged? Under the shared lock no
            // write is in flight, so the rescan can tell.
            let _lock = self.lock_shared()?;
            self.write_state().catch_up(true)?;
        }
        let live = self.read_state().live_segments();
        self.segments.retain(&live);
        Ok(())
    }

    /// The read path in use.
    pub fn io_backend(&self) -> IoBackend {
        self.pager.backend()
    }

    /// Why `pread` is in use, when it is.
    pub fn io_fallback_reason(&self) -> Option<String> {
        self.pager.fallback_reason().map(str::to_owned)
    }

    /// The pager's read counters.
    pub fn pager_stats(&self) -> PagerStats {
        self.pager.stats()
    }

    /// Page-locks the buffers blobs are read into from now on (the CUDA engine's pinner, so
    /// host-to-device copies of adapters run at DMA speed). Refused once one is installed.
    pub fn set_host_pinner(&self, pinner: Arc<dyn HostPinner>) -> Result<(), StoreError> {
        let name = pinner.name().to_owned();
        self.pager.pool().set_pinner(pinner).map_err(|old| StoreError::Pinner {
            reason: format!(
                "{} already page-locks this store's buffers; cannot add {name}",
                old.name()
            ),
        })
    }

    /// The buffer pool's counters and the installed pinner's name.
    pub fn buffer_stats(&self) -> (PoolStats, Option<String>) {
        let pool = self.pager.pool();
        (pool.stats(), pool.pinner().map(str::to_owned))
    }

    /// Total bytes of all segment files (0 if the directory cannot be listed).
    pub fn disk_bytes(&self) -> u64 {
        segment::list_segments(&self.segments_dir).map_or(0, |s| s.values().sum())
    }

    // ---- internals shared by the submodules ----

    fn entry(&self, name: &str) -> Result<Entry, StoreError> {
        validate_adapter_name(name)?;
        if let Some(e) = self.read_state().entries.get(name) {
            return Ok(e.clone());
        }
        self.refresh()?;
        self.read_state().entries.get(name).cloned().ok_or_else(|| self.not_found(name))
    }

    fn not_found(&self, name: &str) -> StoreError {
        StoreError::NotFound { name: name.to_owned(), root: self.root.clone() }
    }

    fn blob_location(&self, loc: Loc) -> BlobLocation {
        BlobLocation {
            segment: loc.segment,
            path: self.segments_dir.join(segment_file_name(loc.segment)),
            offset: loc.offset,
            len: loc.len,
        }
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive writer lock: this process's writer mutex, then `flock(LOCK_EX)` on `lock`.
    fn lock_exclusive(&self) -> Result<LockGuard<'_>, StoreError> {
        let mutex = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.lock_file
            .lock()
            .map_err(|e| StoreError::io("locking", self.root.join(LOCK_FILE), e))?;
        Ok(LockGuard { _mutex: mutex, file: &self.lock_file })
    }

    /// Shared lock: excludes writers of every process, for an unambiguous index scan.
    fn lock_shared(&self) -> Result<LockGuard<'_>, StoreError> {
        let mutex = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.lock_file
            .lock_shared()
            .map_err(|e| StoreError::io("locking", self.root.join(LOCK_FILE), e))?;
        Ok(LockGuard { _mutex: mutex, file: &self.lock_file })
    }

    fn sync_segments_dir(&self) -> Result<(), StoreError> {
        sync_dir(&self.segments_dir)
    }
}
