//! Read-only typed views of the index's little-endian integer files.
//!
//! The files are memory-mapped and viewed in place (zero copy) when the target is little-endian
//! and the mapping is aligned for the element type, which page-aligned mappings always are; any
//! other case decodes a private copy, so the index still works, only without sharing pages.

use std::fmt::Debug;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::{AttributionError, Result};

/// The integer types index files hold: every bit pattern of their size is a valid value, which
/// is what makes viewing mapped bytes as them sound.
pub(crate) trait LeInt: Copy + Debug + Into<u64> + sealed::Sealed {
    /// Bytes per value.
    const SIZE: usize;
    /// Decodes one little-endian value from exactly [`Self::SIZE`] bytes.
    fn from_le(bytes: &[u8]) -> Self;
}

mod sealed {
    /// Only the integer types below implement [`super::LeInt`].
    pub(crate) trait Sealed {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

macro_rules! le_int {
    ($t:ty) => {
        impl LeInt for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
        }
    };
}
le_int!(u16);
le_int!(u32);
le_int!(u64);

/// A read-only array of `T` backed by a file.
#[derive(Debug)]
pub(crate) struct Mapped<T: LeInt> {
    storage: Storage<T>,
}

#[derive(Debug)]
enum Storage<T> {
    /// Viewed in place. Invariant (established by [`Mapped::open`]): the mapping's address is
    /// aligned for `T`, its length is a multiple of `size_of::<T>()`, and the target is
    /// little-endian.
    Map(Mmap),
    /// Decoded copy (big-endian target or unaligned mapping) or an empty file.
    Owned(Vec<T>),
}

impl<T: LeInt> Mapped<T> {
    /// Maps `path` read-only as exactly `expected_len` values of `T`; a file of any other size
    /// is a [`AttributionError::Format`] error naming it.
    ///
    /// SIGBUS: reading a mapped page of a file that was truncated after mapping raises SIGBUS
    /// and kills the process. Acceptable here because span index files are immutable: `build`
    /// writes them into a fresh temporary directory, fsyncs and renames it into place, and
    /// nothing in lorad ever truncates, rewrites or appends to them afterwards. A rebuild makes
    /// a new directory, so an open index keeps its (unlinked but intact) files. Only deliberate
    /// tampering outside lorad can truncate them.
    pub(crate) fn open(path: &Path, expected_len: u64) -> Result<Self> {
        let file = File::open(path).map_err(AttributionError::io("opening", path))?;
        let bytes = file.metadata().map_err(AttributionError::io("reading", path))?.len();
        let expected_bytes = expected_len.checked_mul(T::SIZE as u64);
        if expected_bytes != Some(bytes) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            return Err(AttributionError::Format {
                path: path.to_owned(),
                reason: format!(
                    "{} is {bytes} bytes, the header implies {expected_len} values of {} bytes",
                    name.unwrap_or_default(),
                    T::SIZE
                ),
            });
        }
        if bytes == 0 {
            return Ok(Self { storage: Storage::Owned(Vec::new()) });
        }
        // SAFETY: a read-only, shared mapping of a file that is never modified or truncated
        // while an index is open (see the SIGBUS note above); Rust only ever reads it through
        // `&[u8]` / `&[T]` borrowed from `self`, so the mapping outlives every view.
        let map = unsafe { Mmap::map(&file) }.map_err(AttributionError::io("mapping", path))?;
        let aligned = (map.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>());
        if cfg!(target_endian = "little") && aligned && map.len().is_multiple_of(T::SIZE) {
            return Ok(Self { storage: Storage::Map(map) });
        }
        Ok(Self { storage: Storage::Owned(map.chunks_exact(T::SIZE).map(T::from_le).collect()) })
    }

    /// The values.
    pub(crate) fn as_slice(&self) -> &[T] {
        match &self.storage {
            Storage::Map(m) => {
                // SAFETY: per the `Storage::Map` invariant the pointer is aligned for `T` and
                // `m.len() / size_of::<T>()` values lie wholly inside the mapping; `T` is a
                // plain integer (sealed `LeInt`), for which every bit pattern is valid and
                // little-endian bytes are its native representation on this target; the slice
                // borrows `self`, which owns the mapping, so it cannot outlive it; the mapping
                // is read-only, so nothing mutates it while the slice lives.
                unsafe { std::slice::from_raw_parts(m.as_ptr().cast::<T>(), m.len() / T::SIZE) }
            }
            Storage::Owned(v) => v,
        }
    }

    /// Whether the values are viewed in place in a mapping (not a decoded copy).
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Map(_))
    }
}
