//! `tokens.bin`: every record's token ids, concatenated, u32 little-endian, viewed in place.
//!
//! A Datanet may hold 100M tokens (400 MB); trainers and attribution index into it record by
//! record, so it is memory-mapped and viewed as `&[u32]` without copying on little-endian targets.
//! Big-endian targets (or an unaligned map, which page-aligned mmaps never are) decode it once
//! into memory instead.

use std::fmt;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::DatanetError;

/// The token ids of an opened Datanet.
pub(crate) enum Tokens {
    /// The file's bytes, mapped; valid as `u32`s (checked at construction).
    Mapped(Mmap),
    /// Decoded copy (empty file, big-endian target, or unaligned map).
    Owned(Vec<u32>),
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Mapped(_) => "mapped",
            Self::Owned(_) => "owned",
        };
        write!(f, "Tokens({kind}, {} tokens)", self.as_slice().len())
    }
}

impl Tokens {
    /// Maps `path`, which must hold exactly `expected` tokens.
    pub(crate) fn open(path: &Path, expected: u64) -> Result<Self, DatanetError> {
        let file = File::open(path).map_err(DatanetError::io("opening", path))?;
        let want = expected.checked_mul(4).ok_or_else(|| {
            DatanetError::corrupt(path, format!("token count {expected} is impossibly large"))
        })?;
        let len = file.metadata().map_err(DatanetError::io("reading metadata of", path))?.len();
        let mismatch = |len: u64| {
            DatanetError::corrupt(
                path,
                format!(
                    "{len} bytes, but the manifest's {expected} tokens need {want} \
                     (4 bytes each); the file is truncated or does not belong to this manifest"
                ),
            )
        };
        if len != want {
            return Err(mismatch(len));
        }
        if len == 0 {
            // Mapping an empty file is an error on some systems, and there is nothing to map.
            return Ok(Self::Owned(Vec::new()));
        }
        // SAFETY: `Mmap::map` is unsafe because the mapping aliases a file that other processes
        // could modify or truncate while we hold it: a modification would change the `&[u32]`s
        // handed out under our feet, and a truncation would make reading the lost pages raise
        // SIGBUS. Datanet directories are immutable once renamed into place (builds write a fresh
        // temporary directory and rename it in; `force` renames the old one aside and removes it,
        // which unlinks but does not truncate, so existing maps stay valid), and nothing in lorad
        // writes to a `tokens.bin` after that. The remaining risk is an outside actor truncating
        // the file by hand, which is the same class of failure as a disk going away; it is
        // accepted in exchange for zero-copy access to corpora far larger than we want to copy.
        let map = unsafe { Mmap::map(&file) }.map_err(DatanetError::io("mapping", path))?;
        // The length is checked again on the map itself: the file could have changed in between.
        if map.len() as u64 != want {
            return Err(mismatch(map.len() as u64));
        }
        if cfg!(target_endian = "little") && map.as_ptr().align_offset(align_of::<u32>()) == 0 {
            return Ok(Self::Mapped(map));
        }
        let decoded =
            map.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Self::Owned(decoded))
    }

    /// All token ids.
    pub(crate) fn as_slice(&self) -> &[u32] {
        match self {
            Self::Mapped(map) => {
                // SAFETY: `open` only builds `Mapped` on little-endian targets with a map whose
                // start is aligned for u32 and whose length is a multiple of 4 (it equals
                // 4 * tokens), so the pointer and `len / 4` elements describe memory inside the
                // mapping, properly aligned; every bit pattern is a valid u32, and little-endian
                // bytes read as native u32s give the stored values. The slice borrows `self`,
                // which owns the map, so it cannot outlive the mapping. The mapping is read-only
                // and Datanet files are immutable once published (see the SAFETY note in `open`).
                unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<u32>(), map.len() / 4) }
            }
            Self::Owned(v) => v,
        }
    }
}
