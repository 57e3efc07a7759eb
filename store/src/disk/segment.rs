//! Segment files: `segments/NNNNNNNN.seg`, append-only containers of blobs.
//!
//! A segment starts with a 4 KiB header (magic `LORADSEG`, format version, segment id, CRC32), so
//! blobs, which are multiples of 4 KiB, all start 4 KiB-aligned. Only the highest-numbered segment
//! (the *active* one) is ever appended to, and it is never deleted by gc, so segment ids are never
//! reused: a reader holding a stale index can never read a new file under an old id.
//!
//! Writes are buffered `pwrite`s followed by `fdatasync`; reads go through the pager on a separate
//! O_DIRECT descriptor (Linux keeps the two coherent: a direct read flushes dirty cached pages of
//! the range first, and by the time a blob is indexed it has been synced anyway).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::error::StoreError;
use crate::fsutil::{sync_dir, unique_suffix};
use crate::paging::{ALIGN, open_direct};

/// Bytes before the first blob of a segment.
pub(super) const SEG_HEADER: u64 = ALIGN as u64;
const SEG_MAGIC: &[u8; 8] = b"LORADSEG";
const SEG_VERSION: u32 = 1;

/// `00000001.seg` for id 1.
pub(super) fn segment_file_name(id: u32) -> String {
    format!("{id:08}.seg")
}

fn parse_segment_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}

/// The segment files in `dir` with their lengths, by id.
pub(super) fn list_segments(dir: &Path) -> Result<BTreeMap<u32, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io("listing", dir, e))? {
        let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
        let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) else { continue };
        let len =
            entry.metadata().map_err(|e| StoreError::io("inspecting", entry.path(), e))?.len();
        out.insert(id, len);
    }
    Ok(out)
}

/// Creates segment `id` with its header, durably: written under a temporary name, fsynced, renamed
/// into place, then the directory fsynced — so a segment file either does not exist or has a
/// valid header.
pub(super) fn create_segment(dir: &Path, id: u32) -> Result<(), StoreError> {
    let mut header = vec![0u8; SEG_HEADER as usize];
    header[0..8].copy_from_slice(SEG_MAGIC);
    header[8..12].copy_from_slice(&SEG_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&header[..16]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!(".tmp-{}.seg", unique_suffix()));
    let path = dir.join(segment_file_name(id));
    let result = crate::fsutil::write_new_synced(&tmp, &header).and_then(|()| {
        crash_point(CrashStep::SegmentFileSynced);
        fs::rename(&tmp, &path).map_err(|e| StoreError::io("renaming", &tmp, e))
    });
    if result.is_err() {
        // Best effort: leftover temporaries are deleted by gc; the error matters more.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// Checks the header of a segment about to be appended to, so lorad never appends to a file
/// written by an incompatible version.
fn check_header(file: &File, path: &Path) -> Result<(), StoreError> {
    let mut h = [0u8; 20];
    file.read_exact_at(&mut h, 0).map_err(|e| StoreError::io("reading header of", path, e))?;
    let corrupt = |reason: String| StoreError::CorruptSegment { path: path.to_path_buf(), reason };
    if &h[0..8] != SEG_MAGIC {
        return Err(corrupt("bad magic: not a lorad segment".to_owned()));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != SEG_VERSION {
        return Err(corrupt(format!(
            "segment format version {version} is not supported (expected 1)"
        )));
    }
    if u32::from_le_bytes([h[16], h[17], h[18], h[19]]) != crc32fast::hash(&h[..16]) {
        return Err(corrupt("header checksum mismatch".to_owned()));
    }
    Ok(())
}

/// Writes `bytes` at `offset` of segment `path` and fdatasyncs it.
///
/// Anything past `offset` is garbage from a torn write (the caller computed `offset` as the end of
/// the last blob any index record ever referenced in this segment, under the writer lock), so the
/// file is first truncated there: garbage never sits between two committed blobs.
pub(super) fn write_blob(path: &Path, offset: u64, bytes: &[u8]) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("opening for append", path, e))?;
    check_header(&file, path)?;
    let len = file.metadata().map_err(|e| StoreError::io("inspecting", path, e))?.len();
    if len > offset {
        file.set_len(offset).map_err(|e| StoreError::io("truncating torn tail of", path, e))?;
    }
    let write = |off: u64, b: &[u8]| {
        file.write_all_at(b, off).map_err(|e| StoreError::io("writing", path, e))
    };
    if crash_enabled() {
        // Two writes so a crash can be injected with half a blob on disk.
        let half = bytes.len() / 2;
        write(offset, &bytes[..half])?;
        crash_point(CrashStep::BlobHalfWritten);
        write(offset + half as u64, &bytes[half..])?;
    } else {
        write(offset, bytes)?;
    }
    crash_point(CrashStep::BlobWritten);
    file.sync_data().map_err(|e| StoreError::io("syncing", path, e))?;
    crash_point(CrashStep::BlobSynced);
    Ok(())
}

/// Shrinks a segment to `len` bytes (gc) and syncs it.
pub(super) fn truncate_segment(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("opening for truncation", path, e))?;
    file.set_len(len).map_err(|e| StoreError::io("truncating", path, e))?;
    file.sync_all().map_err(|e| StoreError::io("syncing", path, e))
}

/// An open read descriptor (O_DIRECT where the filesystem allows it).
#[derive(Debug)]
pub(super) struct OpenSegment {
    pub(super) file: File,
    pub(super) path: PathBuf,
}

/// Open read descriptors by segment id, so a load costs no `open(2)`.
#[derive(Debug, Default)]
pub(super) struct SegmentCache {
    files: Mutex<HashMap<u32, Arc<OpenSegment>>>,
}

impl SegmentCache {
    /// The open segment `id` of `dir`, opening it on first use.
    pub(super) fn get(&self, dir: &Path, id: u32) -> Result<Arc<OpenSegment>, StoreError> {
        if let Some(s) = self.lock().get(&id) {
            return Ok(Arc::clone(s));
        }
        let path = dir.join(segment_file_name(id));
        let (file, _direct) = open_direct(&path)?;
        let seg = Arc::new(OpenSegment { file, path });
        Ok(Arc::clone(self.lock().entry(id).or_insert(seg)))
    }

    /// Closes the descriptors of segments no entry references any more. A deleted segment's disk
    /// space is only freed once every descriptor on it is closed, so a long-running daemon must not
    /// keep them after gc.
    pub(super) fn retain(&self, live: &HashSet<u32>) {
        self.lock().retain(|id, _| live.contains(id));
    }

    /// Forgets one descriptor (after a failed read, so the retry reopens the file).
    pub(super) fn forget(&self, id: u32) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<OpenSegment>>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The points of a mutation where the crash-injection hook can abort the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CrashStep {
    /// A new segment file is written and synced under its temporary name.
    SegmentFileSynced = 1,
    /// Half of a blob is written.
    BlobHalfWritten = 2,
    /// The whole blob is written, not yet synced.
    BlobWritten = 3,
    /// The blob is synced, no index record yet.
    BlobSynced = 4,
    /// Half of an index record is written.
    RecordHalfWritten = 5,
    /// The index record is written, not yet synced.
    RecordWritten = 6,
    /// The index record is synced (the mutation is durable, not yet acknowledged).
    RecordSynced = 7,
    /// gc: live blobs copied and synced, no relocation records yet.
    GcCopied = 8,
    /// gc: relocation records synced, index not yet rewritten.
    GcRelocated = 9,
    /// gc: compacted index written under its temporary name, not yet renamed.
    GcIndexWritten = 10,
    /// gc: compacted index renamed into place, old segments not yet deleted.
    GcIndexRenamed = 11,
}

/// Environment variable of the crash-injection hook, for the crash tests only:
/// `LORAD_STORE_CRASH_AT=<step>[@<n>]` aborts the process the `n`-th time (default: first) a
/// mutation reaches [`CrashStep`] number `step`. Unset in production, where every check is one
/// relaxed atomic load.
pub(super) const CRASH_ENV: &str = "LORAD_STORE_CRASH_AT";

fn crash_config() -> Option<(u32, u64)> {
    static CONFIG: OnceLock<Option<(u32, u64)>> = OnceLock::new();
    *CONFIG.get_or_init(|| {
        let v = std::env::var(CRASH_ENV).ok()?;
        let (step, n) = v.split_once('@').unwrap_or((&v, "1"));
        Some((step.trim().parse().ok()?, n.trim().parse().ok()?))
    })
}

pub(super) fn crash_enabled() -> bool {
    crash_config().is_some()
}

/// Aborts the process here if the crash hook asks for this step (see [`CRASH_ENV`]).
pub(super) fn crash_point(step: CrashStep) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    if let Some((want, n)) = crash_config()
        && want == step as u32
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 >= n
    {
        // SIGKILL to ourselves: exactly what `kill -9` does (no destructors, no flushes, no core
        // dump).
        // SAFETY: `getpid` and `kill` take no pointers and cannot violate memory safety.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // Unreachable in practice (SIGKILL cannot be caught); abort is the next-closest thing.
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(1), "00000001.seg");
        assert_eq!(parse_segment_name("00000012.seg"), Some(12));
        for bad in ["1.seg", "0000001x.seg", "00000001.seg.tmp", ".tmp-1-2.seg"] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn create_then_append() {
        let dir = tempfile::tempdir().unwrap();
        create_segment(dir.path(), 3).unwrap();
        let path = dir.path().join(segment_file_name(3));
        // Garbage past the append point (a torn write) is cut off first.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&[7u8; 9000], SEG_HEADER)
            .unwrap();
        write_blob(&path, SEG_HEADER, &[1u8; 4096]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SEG_HEADER + 4096);
        assert_eq!(
            list_segments(dir.path()).unwrap().into_iter().collect::<Vec<_>>(),
            vec![(3, 8192)]
        );
        std::fs::write(&path, b"not a segment at all, just bytes").unwrap();
        let err = write_blob(&path, SEG_HEADER, &[1u8; 4096]).unwrap_err().to_string();
        assert!(err.contains("00000003.seg") && err.contains("magic"), "{err}");
    }
}
