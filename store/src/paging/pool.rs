//! A pool of aligned host buffers, page-locked when a device driver asks for it.
//!
//! Every blob the pager reads lands in a buffer from the pool, and the buffer goes back to the
//! pool when the blob is dropped (evicted from the host tier, or a failed read). Two things follow:
//! - with a [`HostPinner`] installed (the CUDA engine installs one), each buffer is page-locked
//!   once, when it is allocated, and stays locked while it is reused: NVMe DMA writes into it
//!   and host→device copies read from it without the driver staging through a bounce buffer, and
//!   the cost of locking (which touches every page) is paid per buffer, not per page-in;
//! - without one (CPU serving), reuse still skips the allocator's fresh, never-touched pages,
//!   which an O_DIRECT read would otherwise fault in one by one.
//!
//! A reused buffer holds the bytes of whatever it held before past the new length; readers only
//! ever see the bytes a read delivered (see [`AlignedBuf`]'s `Deref`), and a read that does not
//! deliver all of them is an error that drops the buffer.
//!
//! Idle buffers are capped at [`MAX_IDLE_BYTES`]; a buffer returned beyond that is unlocked and
//! freed. Buffers in use are bounded by the host tier's byte budget plus in-flight reads, so the
//! pool's footprint follows the budget the operator set.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::buf::{ALIGN, AlignedBuf, RawBuf};

/// Most bytes of idle buffers kept for reuse.
pub const MAX_IDLE_BYTES: usize = 512 << 20;

/// Allocations above this are rounded up to a multiple of it, so blobs of slightly different
/// sizes (the same targets at ranks a few apart) can share buffers.
const GRANULE: usize = 64 << 10;

/// Bytes allocated for a buffer of `need` bytes (a multiple of [`ALIGN`]).
fn alloc_size(need: usize) -> usize {
    if need > GRANULE { need.div_ceil(GRANULE) * GRANULE } else { need }
}

/// Page-locks host memory for a device's DMA engine (the CUDA engine's is `cuMemHostRegister`).
pub trait HostPinner: Send + Sync + fmt::Debug {
    /// Locks `len` bytes at `ptr`. An error leaves the memory pageable and usable; the pool logs
    /// it once, counts it, and carries on.
    ///
    /// # Safety
    /// `ptr` must be valid for `len` bytes and stay allocated until [`HostPinner::unpin`] is called
    /// with the same `ptr` and `len`.
    unsafe fn pin(&self, ptr: *mut u8, len: usize) -> Result<(), String>;

    /// Unlocks memory locked by [`HostPinner::pin`]. Called before the memory is freed.
    ///
    /// # Safety
    /// `ptr` and `len` must be those of a successful `pin` not yet undone.
    unsafe fn unpin(&self, ptr: *mut u8, len: usize);

    /// What locks the memory, for logs and metrics (for example `"cuda"`).
    fn name(&self) -> &str;
}

/// Counters of the buffer pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes currently page-locked (buffers in use and idle).
    pub pinned_bytes: u64,
    /// Buffers the pinner refused to lock (they were used pageable).
    pub pin_failures: u64,
    /// Buffers allocated.
    pub allocated: u64,
    /// Buffers handed out again instead of allocated.
    pub reused: u64,
    /// Bytes of idle buffers waiting for reuse.
    pub idle_bytes: u64,
}

/// The pool. Cheap to share: buffers keep the pool's state alive after the pool is dropped.
#[derive(Debug, Default)]
pub struct BufPool {
    shared: Arc<Shared>,
}

#[derive(Default)]
pub(super) struct Shared {
    pinner: OnceLock<Arc<dyn HostPinner>>,
    /// Idle buffers by allocation size.
    idle: Mutex<Idle>,
    pinned_bytes: AtomicU64,
    pin_failures: AtomicU64,
    allocated: AtomicU64,
    reused: AtomicU64,
    warned: AtomicBool,
}

#[derive(Default)]
struct Idle {
    by_size: BTreeMap<usize, Vec<RawBuf>>,
    bytes: usize,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("pinner", &self.pinner.get())
            .field("pinned_bytes", &self.pinned_bytes)
            .finish_non_exhaustive()
    }
}

impl BufPool {
    /// Installs the pinner. Buffers allocated from now on are page-locked; idle pageable ones are
    /// freed so that they are not handed out again. A second pinner is refused (returns it back).
    pub fn set_pinner(&self, pinner: Arc<dyn HostPinner>) -> Result<(), Arc<dyn HostPinner>> {
        self.shared.pinner.set(pinner)?;
        self.shared.free_idle();
        Ok(())
    }

    /// The installed pinner's name, if any.
    pub fn pinner(&self) -> Option<&str> {
        self.shared.pinner.get().map(|p| p.name())
    }

    /// A buffer for `len` bytes: an idle one at least that large (and not much larger), else a
    /// new zeroed one, page-locked if a pinner is installed.
    pub fn take(&self, len: usize) -> AlignedBuf {
        let need = len.div_ceil(ALIGN).max(1) * ALIGN;
        let reused = {
            let mut idle = self.shared.lock_idle();
            // Anything a fresh allocation would round up to, or up to a quarter more.
            let most = alloc_size(need).max(need + need / 4);
            let size = idle.by_size.range(need..=most).next().map(|(&s, _)| s);
            size.and_then(|s| {
                let list = idle.by_size.get_mut(&s)?;
                let raw = list.pop();
                if list.is_empty() {
                    idle.by_size.remove(&s);
                }
                idle.bytes -= s;
                raw
            })
        };
        let raw = match reused {
            Some(raw) => {
                self.shared.reused.fetch_add(1, Ordering::Relaxed);
                raw
            }
            None => self.shared.allocate(need),
        };
        AlignedBuf::from_pool(raw, len, Arc::clone(&self.shared))
    }

    /// Counters so far.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        PoolStats {
            pinned_bytes: s.pinned_bytes.load(Ordering::Relaxed),
            pin_failures: s.pin_failures.load(Ordering::Relaxed),
            allocated: s.allocated.load(Ordering::Relaxed),
            reused: s.reused.load(Ordering::Relaxed),
            idle_bytes: s.lock_idle().bytes as u64,
        }
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // Buffers still out come back to `Shared` and are freed when it goes; idle ones now.
        self.shared.free_idle();
    }
}

impl Shared {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn allocate(&self, need: usize) -> RawBuf {
        let size = alloc_size(need);
        let mut raw = RawBuf::zeroed(size);
        self.allocated.fetch_add(1, Ordering::Relaxed);
        if let Some(pinner) = self.pinner.get() {
            // SAFETY: `raw` owns `size` bytes at `ptr` and is only freed through `Shared::free`,
            // which unpins first.
            match unsafe { pinner.pin(raw.ptr.as_ptr(), raw.size) } {
                Ok(()) => {
                    raw.pinned = true;
                    self.pinned_bytes.fetch_add(raw.size as u64, Ordering::Relaxed);
                }
                Err(reason) => {
                    self.pin_failures.fetch_add(1, Ordering::Relaxed);
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            pinner = pinner.name(),
                            %reason,
                            "cannot page-lock adapter buffers; paging through pageable memory \
                             (slower host-to-device copies; check LimitMEMLOCK)"
                        );
                    }
                }
            }
        }
        raw
    }

    /// Takes a buffer back from an [`AlignedBuf`] being dropped.
    pub(super) fn give_back(&self, raw: RawBuf) {
        let mut idle = self.lock_idle();
        if idle.bytes + raw.size <= MAX_IDLE_BYTES {
            idle.bytes += raw.size;
            idle.by_size.entry(raw.size).or_default().push(raw);
            return;
        }
        drop(idle);
        self.free(raw);
    }

    /// Frees every idle buffer.
    fn free_idle(&self) {
        let drained = std::mem::take(&mut *self.lock_idle());
        for raw in drained.by_size.into_values().flatten() {
            self.free(raw);
        }
    }

    fn free(&self, raw: RawBuf) {
        if raw.pinned
            && let Some(pinner) = self.pinner.get()
        {
            // SAFETY: `raw` was pinned by this pinner with this pointer and size (only pinned
            // buffers have `pinned` set) and is freed right after.
            unsafe { pinner.unpin(raw.ptr.as_ptr(), raw.size) };
            self.pinned_bytes.fetch_sub(raw.size as u64, Ordering::Relaxed);
        }
        raw.dealloc();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.free_idle();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Records live pins (address → length); refuses everything when `refuse` is set.
    #[derive(Debug, Default)]
    struct Recorder {
        live: Mutex<HashMap<usize, usize>>,
        pins: AtomicU64,
        refuse: bool,
    }

    impl HostPinner for Recorder {
        unsafe fn pin(&self, ptr: *mut u8, len: usize) -> Result<(), String> {
            if self.refuse {
                return Err("RLIMIT_MEMLOCK exceeded".into());
            }
            self.pins.fetch_add(1, Ordering::Relaxed);
            let old = self.live.lock().unwrap().insert(ptr as usize, len);
            assert!(old.is_none(), "pinned twice");
            Ok(())
        }
        unsafe fn unpin(&self, ptr: *mut u8, len: usize) {
            assert_eq!(self.live.lock().unwrap().remove(&(ptr as usize)), Some(len));
        }
        fn name(&self) -> &str {
            "recorder"
        }
    }

    fn addr(b: &mut AlignedBuf) -> usize {
        b.as_mut_ptr() as usize
    }

    #[test]
    fn buffers_are_reused_when_close_in_size() {
        let pool = BufPool::default();
        let mut a = pool.take(10_000);
        assert_eq!((a.len(), a.capacity()), (10_000, 3 * ALIGN));
        assert!(a.iter().all(|&b| b == 0));
        a.padded_mut().fill(7);
        let at = addr(&mut a);
        drop(a);
        // Slightly smaller: same allocation; its stale bytes past `len` are not visible.
        let mut b = pool.take(9_000);
        assert_eq!((addr(&mut b), b.len(), b.capacity()), (at, 9_000, 3 * ALIGN));
        drop(b);
        // Much smaller (the allocation would waste over a quarter): a new one.
        let mut c = pool.take(100);
        assert_ne!(addr(&mut c), at);
        let s = pool.stats();
        assert_eq!((s.allocated, s.reused, s.idle_bytes), (2, 1, 3 * ALIGN as u64));
        assert_eq!(s.pinned_bytes, 0);
    }

    #[test]
    fn pinned_once_per_allocation_and_unpinned_before_free() {
        let rec = Arc::new(Recorder::default());
        {
            let pool = BufPool::default();
            let idle = pool.take(ALIGN);
            drop(idle);
            pool.set_pinner(rec.clone()).unwrap();
            assert_eq!(pool.stats().idle_bytes, 0, "pageable idle buffers are dropped");
            assert!(pool.set_pinner(rec.clone()).is_err(), "a second pinner is refused");
            assert_eq!(pool.pinner(), Some("recorder"));
            let big = GRANULE * 3 + 1;
            let bufs: Vec<AlignedBuf> = (0..4).map(|_| pool.take(big)).collect();
            assert!(bufs.iter().all(AlignedBuf::is_pinned));
            let size = 4 * GRANULE as u64;
            assert_eq!(pool.stats().pinned_bytes, 4 * size);
            drop(bufs);
            for _ in 0..10 {
                assert!(pool.take(big).is_pinned());
            }
            assert_eq!(rec.pins.load(Ordering::Relaxed), 4, "reuse pins nothing again");
            assert_eq!(rec.live.lock().unwrap().len(), 4);
            // A buffer outliving its pool is still unpinned when it goes.
            let survivor = pool.take(big);
            drop(pool);
            assert_eq!(rec.live.lock().unwrap().len(), 1);
            drop(survivor);
        }
        assert!(rec.live.lock().unwrap().is_empty(), "every pin undone");
    }

    #[test]
    fn a_refused_pin_leaves_a_working_pageable_buffer() {
        let pool = BufPool::default();
        pool.set_pinner(Arc::new(Recorder { refuse: true, ..Recorder::default() })).unwrap();
        let mut a = pool.take(5);
        let mut b = pool.take(5);
        a.padded_mut()[..5].copy_from_slice(b"hello");
        assert_eq!(&a[..], b"hello");
        assert!(!a.is_pinned() && !b.is_pinned());
        assert_ne!(addr(&mut a), addr(&mut b));
        let s = pool.stats();
        assert_eq!((s.pin_failures, s.pinned_bytes), (2, 0));
    }

    #[test]
    fn idle_buffers_beyond_the_cap_are_freed() {
        let rec = Arc::new(Recorder::default());
        let pool = BufPool::default();
        pool.set_pinner(rec.clone()).unwrap();
        // Zeroed allocations this large are untouched mappings: cheap to make here.
        let half = MAX_IDLE_BYTES / 2 + GRANULE;
        let bufs: Vec<AlignedBuf> = (0..2).map(|_| pool.take(half)).collect();
        drop(bufs);
        let s = pool.stats();
        assert_eq!(s.idle_bytes, half as u64);
        assert_eq!(s.pinned_bytes, half as u64);
        assert_eq!(rec.live.lock().unwrap().len(), 1);
    }
}
