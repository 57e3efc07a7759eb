//! Small durable-write helpers: a Datanet directory is only renamed into place once every byte in
//! it is on disk.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::DatanetError;

/// Distinguishes temporary names made by concurrent builds within one process (the pid alone only
/// separates processes).
static SEQ: AtomicU64 = AtomicU64::new(0);

/// `<pid>-<n>`: a suffix no other live builder uses.
pub(crate) fn unique_suffix() -> String {
    format!("{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Creates `path` (which must not exist), lets `fill` write it through a buffer, and fsyncs it.
pub(crate) fn write_new_synced(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), DatanetError> {
    let f = File::create_new(path).map_err(DatanetError::io("creating", path))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    fill(&mut w).map_err(DatanetError::io("writing", path))?;
    let f = w.into_inner().map_err(|e| DatanetError::Io {
        action: "writing",
        path: path.to_owned(),
        source: e.into_error(),
    })?;
    f.sync_all().map_err(DatanetError::io("syncing", path))
}

/// Fsyncs a directory so that creations and renames inside it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), DatanetError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(DatanetError::io("syncing directory", dir))
}

/// Reads a whole file, naming it on error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, DatanetError> {
    fs::read(path).map_err(DatanetError::io("reading", path))
}

/// Writes `bytes` followed by a newline.
pub(crate) fn write_line(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes)?;
    w.write_all(b"\n")
}
