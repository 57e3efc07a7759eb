//! 4 KiB-aligned heap buffers, the unit O_DIRECT reads land in.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;

/// Alignment (and size granularity) of every buffer: the largest logical block size of the
/// devices lorad targets, so O_DIRECT accepts it everywhere.
pub const ALIGN: usize = 4096;

/// A heap buffer whose start is [`ALIGN`]-aligned and whose capacity is `len` rounded up to
/// [`ALIGN`]. Derefs to the first `len` bytes.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like Vec<u8>); nothing aliases it.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]`, which is Sync.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zero-filled buffer for `len` bytes.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let cap = len.div_ceil(ALIGN).max(1) * ALIGN;
        // `cap` is a non-zero multiple of a power of two, so the layout is valid unless `cap`
        // overflows isize, which an allocation that large could never satisfy anyway.
        let layout = Layout::from_size_align(cap, ALIGN).unwrap_or_else(|_| {
            std::alloc::handle_alloc_error(Layout::new::<u8>());
        });
        // SAFETY: `layout` has non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len, cap }
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

    /// The whole padded capacity, writable (what an O_DIRECT read fills).
    pub fn padded_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is valid for `cap` bytes, initialised (zeroed at allocation) and uniquely
        // borrowed through `&mut self`.
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
        // SAFETY: `ptr` is valid and initialised for `cap >= len` bytes for the buffer's life.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this size and alignment.
        unsafe { dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.cap, ALIGN)) }
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).field("cap", &self.cap).finish()
    }
}
