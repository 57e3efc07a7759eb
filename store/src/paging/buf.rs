//! 4 KiB-aligned heap buffers, the unit O_DIRECT reads land in.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use super::pool::Shared;

/// Alignment (and size granularity) of every buffer: the largest logical block size of the
/// devices lorad targets, so O_DIRECT accepts it everywhere.
pub const ALIGN: usize = 4096;

/// A heap buffer whose start is [`ALIGN`]-aligned and whose capacity is `len` rounded up to
/// [`ALIGN`]. Derefs to the first `len` bytes.
///
/// A buffer from a [`super::BufPool`] may sit in a larger allocation and goes back to its pool
/// when dropped; one from [`AlignedBuf::zeroed`] is freed.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    /// Bytes allocated at `ptr` (at least `cap`).
    size: usize,
    /// Whether the pool's pinner page-locked the allocation.
    pinned: bool,
    home: Option<Arc<Shared>>,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like Vec<u8>); nothing aliases it.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]`, which is Sync.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zero-filled buffer for `len` bytes, not from any pool.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let raw = RawBuf::zeroed(len.div_ceil(ALIGN).max(1) * ALIGN);
        AlignedBuf::wrap(raw, len, None)
    }

    /// A pool's allocation serving `len` bytes (`raw.size` must be at least `len` rounded up).
    pub(super) fn from_pool(raw: RawBuf, len: usize, home: Arc<Shared>) -> AlignedBuf {
        AlignedBuf::wrap(raw, len, Some(home))
    }

    fn wrap(raw: RawBuf, len: usize, home: Option<Arc<Shared>>) -> AlignedBuf {
        let cap = len.div_ceil(ALIGN).max(1) * ALIGN;
        debug_assert!(cap <= raw.size, "a {}-byte allocation cannot serve {len} bytes", raw.size);
        AlignedBuf { ptr: raw.ptr, len, cap, size: raw.size, pinned: raw.pinned, home }
    }

    /// Bytes requested.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `len` is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity: `len` rounded up to [`ALIGN`].
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Whether the memory is page-locked for device transfers.
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// The whole padded capacity, writable (what an O_DIRECT read fills).
    pub fn padded_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is valid for `size >= cap` bytes, initialised (zeroed at allocation,
        // written only with bytes since) and uniquely borrowed through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    /// Pointer to the start, for kernel submissions that write into the buffer.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is valid and initialised for `size >= cap >= len` bytes for the buffer's
        // life.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let raw = RawBuf { ptr: self.ptr, size: self.size, pinned: self.pinned };
        match self.home.take() {
            Some(pool) => pool.give_back(raw),
            None => raw.dealloc(),
        }
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .field("pinned", &self.pinned)
            .finish()
    }
}

/// An [`ALIGN`]-aligned allocation, owned by whoever holds it. No `Drop`: the owner frees it with
/// [`RawBuf::dealloc`] (after unpinning it if `pinned`).
pub(super) struct RawBuf {
    pub(super) ptr: NonNull<u8>,
    pub(super) size: usize,
    pub(super) pinned: bool,
}

// SAFETY: a RawBuf is the sole owner of its allocation, like a Box<[u8]>.
unsafe impl Send for RawBuf {}

impl RawBuf {
    /// A zero-filled allocation of `size` bytes (a non-zero multiple of [`ALIGN`]).
    pub(super) fn zeroed(size: usize) -> RawBuf {
        // `size` is a non-zero multiple of a power of two, so the layout is valid unless it
        // overflows isize, which an allocation that large could never satisfy anyway.
        let layout = Layout::from_size_align(size, ALIGN).unwrap_or_else(|_| {
            std::alloc::handle_alloc_error(Layout::new::<u8>());
        });
        // SAFETY: `layout` has non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        RawBuf { ptr, size, pinned: false }
    }

    /// Frees the allocation.
    pub(super) fn dealloc(self) {
        // SAFETY: allocated in `zeroed` with exactly this size and alignment, freed once (this
        // consumes the only owner).
        unsafe { dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.size, ALIGN)) }
    }
}
