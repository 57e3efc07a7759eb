//! Small file helpers: durable writes shared by the PEFT writer and the registry, and the
//! range check shared by the index decoder and the pager.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StoreError;

/// Distinguishes temporary names made by concurrent calls within one process (the pid alone only
/// separates processes).
static SEQ: AtomicU64 = AtomicU64::new(0);

/// `<pid>-<n>`: a suffix no other live writer uses.
pub(crate) fn unique_suffix() -> String {
    format!("{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Reads a whole file, naming it on error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, StoreError> {
    fs::read(path).map_err(|e| StoreError::io("reading", path, e))
}

/// Creates `path` (which must not exist), writes `bytes` and fsyncs it.
pub(crate) fn write_new_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = File::create_new(path).map_err(|e| StoreError::io("creating", path, e))?;
    f.write_all(bytes).map_err(|e| StoreError::io("writing", path, e))?;
    f.sync_all().map_err(|e| StoreError::io("syncing", path, e))
}

/// Replaces `path` with `bytes` atomically: readers see the old file or the whole new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", unique_suffix()));
    let result = write_new_synced(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| StoreError::io("renaming", &tmp, e)));
    if result.is_err() {
        // Best effort: the error being returned matters more than a leftover temp file.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// Fsyncs a directory so that renames and creations inside it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing directory", dir, e))
}

/// Whether `len` bytes at `offset` end at an offset `pread` and io_uring can reach (a signed
/// 64-bit `off_t`): no file holds a range past that.
pub(crate) fn reachable(offset: u64, len: u64) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= i64::MAX as u64)
}
