//! The io_uring backend: a small pool of rings, each used by one `read_many` at a time.
//!
//! The one rule everything here serves: **the kernel may write into a buffer from the moment its
//! read is submitted until its completion is reaped**, so no buffer is freed (or handed to the
//! caller) while a read into it is in flight. [`Batch`] owns the buffers while reads are in
//! flight and, when dropped early (an error, a panic), first waits for every outstanding
//! completion; if even that fails (the ring itself broke) it leaks the buffers and retires the
//! ring rather than free memory the kernel could still write to.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::sync::{Condvar, Mutex, MutexGuard};

use io_uring::{IoUring, Probe, opcode, types};

use super::{ALIGN, AlignedBuf, Chunk, MAX_RETRIES, ReadRequest, Step, retryable, short_read};
use crate::error::StoreError;

/// Most rings one pager creates: concurrent `read_many` calls beyond this wait for a free ring.
/// Each ring already keeps `queue_depth` reads in flight, so more rings add little but memory.
const MAX_RINGS: usize = 4;

/// How many consecutive `EINTR`/`EAGAIN`/`EBUSY` from `io_uring_enter` are tolerated before the
/// ring is considered broken.
const MAX_ENTER_RETRIES: u32 = 10_000;

/// Rings not in use, and how many exist.
pub(super) struct RingPool {
    /// Ring size (a power of two ≥ `depth`).
    entries: u32,
    /// Reads kept in flight per `read_many`.
    depth: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<IoUring>,
    /// Rings existing (idle or lent out).
    total: usize,
    /// Rings we may create; lowered when creating one fails (e.g. `RLIMIT_MEMLOCK`).
    limit: usize,
}

impl std::fmt::Debug for RingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("RingPool")
            .field("entries", &self.entries)
            .field("depth", &self.depth)
            .field("rings", &s.total)
            .field("idle", &s.idle.len())
            .finish()
    }
}

impl RingPool {
    /// Creates the first ring and proves it works, or says why not.
    pub(super) fn probe(depth: u32) -> Result<RingPool, String> {
        let entries = depth.next_power_of_two();
        let mut ring =
            IoUring::new(entries).map_err(|e| format!("creating an io_uring failed: {e}"))?;
        let mut probe = Probe::new();
        // IORING_REGISTER_PROBE and IORING_OP_READ both arrived in Linux 5.6.
        ring.submitter().register_probe(&mut probe).map_err(|e| {
            format!("the kernel cannot list io_uring operations ({e}); Linux 5.6+ is needed")
        })?;
        if !probe.is_supported(opcode::Read::CODE) {
            return Err("the kernel does not support IORING_OP_READ (Linux 5.6+ is needed)".into());
        }
        // Some sandboxes allow creating a ring but not using it: do one real read.
        probe_read(&mut ring)?;
        Ok(RingPool {
            entries,
            depth: depth as usize,
            state: Mutex::new(PoolState { idle: vec![ring], total: 1, limit: MAX_RINGS }),
            freed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is a few counters updated without panicking: a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an idle ring, creates one, or waits for one to come back.
    fn take(&self) -> Result<IoUring, StoreError> {
        let mut s = self.lock();
        loop {
            if let Some(ring) = s.idle.pop() {
                return Ok(ring);
            }
            if s.total < s.limit {
                s.total += 1;
                drop(s);
                let made = IoUring::new(self.entries);
                s = self.lock();
                match made {
                    Ok(ring) => return Ok(ring),
                    Err(e) => {
                        s.total -= 1;
                        s.limit = s.total;
                        if s.total == 0 {
                            // Every ring was retired and no new one can be made.
                            s.limit = MAX_RINGS;
                            let reason = format!("creating an io_uring failed: {e}");
                            return Err(StoreError::IoUringUnavailable { reason });
                        }
                        tracing::debug!(error = %e, rings = s.total, "not growing the ring pool");
                    }
                }
                continue;
            }
            s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Reads every piece of `chunks` into `bufs` (one buffer per request).
    pub(super) fn read(
        &self,
        reqs: &[ReadRequest<'_>],
        direct: &[bool],
        chunks: &mut [Chunk],
        bufs: Vec<AlignedBuf>,
    ) -> Result<Vec<AlignedBuf>, StoreError> {
        let mut lease = Lease { pool: self, ring: ManuallyDrop::new(self.take()?), broken: false };
        let mut batch = Batch { lease: &mut lease, in_flight: 0, bufs };
        batch.run(reqs, direct, chunks, self.depth)?;
        Ok(std::mem::take(&mut batch.bufs))
    }
}

/// A ring lent out of the pool; goes back on drop (or is retired when `broken`).
struct Lease<'p> {
    pool: &'p RingPool,
    /// Moved out only in `Drop` (back to the pool or closed).
    ring: ManuallyDrop<IoUring>,
    /// Completions of earlier reads may still arrive: never reuse.
    broken: bool,
}

impl Lease<'_> {
    fn ring(&mut self) -> &mut IoUring {
        &mut self.ring
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // SAFETY: `ring` is initialised from construction until here and never used after:
        // this is the only place it is taken, and `drop` runs once.
        let ring = unsafe { ManuallyDrop::take(&mut self.ring) };
        let mut s = self.pool.lock();
        if self.broken {
            s.total -= 1;
            drop(s);
            // Dropping the ring closes it; the kernel cancels or finishes what is left.
            drop(ring);
        } else {
            s.idle.push(ring);
            drop(s);
        }
        self.pool.freed.notify_one();
    }
}

/// Reads in flight on a leased ring, and the buffers they land in.
struct Batch<'l, 'p> {
    lease: &'l mut Lease<'p>,
    /// Reads pushed to the submission queue whose completion has not been reaped.
    in_flight: usize,
    bufs: Vec<AlignedBuf>,
}

impl Batch<'_, '_> {
    /// Keeps up to `depth` pieces in flight until all are read; on the first error stops
    /// submitting, reaps what is in flight, then returns the error.
    fn run(
        &mut self,
        reqs: &[ReadRequest<'_>],
        direct: &[bool],
        chunks: &mut [Chunk],
        depth: usize,
    ) -> Result<(), StoreError> {
        let mut pending: VecDeque<usize> = (0..chunks.len()).collect();
        let mut failed: Option<StoreError> = None;
        let mut enter_retries = 0;
        let mut completions: Vec<(u64, i32)> = Vec::with_capacity(depth);
        while self.in_flight > 0 || (failed.is_none() && !pending.is_empty()) {
            if failed.is_none() {
                self.submit_pending(reqs, chunks, &mut pending, depth);
            }
            match self.lease.ring().submit_and_wait(1) {
                Ok(_) => enter_retries = 0,
                Err(e) if enter_retryable(&e) && enter_retries < MAX_ENTER_RETRIES => {
                    // Interrupted, or the kernel is short of resources / has completions to
                    // flush: reap what is there and go again.
                    enter_retries += 1;
                    if enter_retries > 100 {
                        std::thread::yield_now();
                    }
                }
                Err(e) => {
                    // The ring itself failed. `Drop` reaps what it can or leaks the buffers.
                    let at = pending.front().map_or(0, |&ci| chunks[ci].req);
                    return Err(StoreError::io("reading", reqs[at].path, e));
                }
            }
            completions.clear();
            completions.extend(self.lease.ring().completion().map(|c| (c.user_data(), c.result())));
            for &(user_data, res) in &completions {
                self.in_flight -= 1;
                let ci = user_data as usize;
                let c = &mut chunks[ci];
                let r = &reqs[c.req];
                let step = if res < 0 {
                    let errno = -res;
                    if retryable(errno) && c.retries < MAX_RETRIES {
                        c.retries += 1;
                        Step::Again
                    } else {
                        let err = io::Error::from_raw_os_error(errno);
                        failed.get_or_insert(StoreError::io("reading", r.path, err));
                        continue;
                    }
                } else {
                    c.advance(res as usize, direct[c.req])
                };
                match step {
                    Step::Done => {}
                    Step::Again => pending.push_back(ci),
                    Step::Eof => {
                        failed.get_or_insert_with(|| short_read(r, c.start + c.done));
                    }
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Pushes pending pieces until `depth` are in flight or the submission queue is full.
    fn submit_pending(
        &mut self,
        reqs: &[ReadRequest<'_>],
        chunks: &[Chunk],
        pending: &mut VecDeque<usize>,
        depth: usize,
    ) {
        let ring = self.lease.ring();
        let mut sq = ring.submission();
        while self.in_flight < depth && !sq.is_full() {
            let Some(ci) = pending.pop_front() else { break };
            let c = &chunks[ci];
            let r = &reqs[c.req];
            let at = c.start + c.done;
            // In bounds: `start + len <= capacity` (see `plan`), and `done < len`.
            let dst = self.bufs[c.req].as_mut_ptr().wrapping_add(at);
            let len = (c.len - c.done) as u32;
            let entry = opcode::Read::new(fd(r.file), dst, len)
                .offset(c.file_offset(r))
                .build()
                .user_data(ci as u64);
            // SAFETY: `dst..dst + len` lies inside `self.bufs[c.req]`'s allocation (see above),
            // which nothing else reads or writes until this read's completion is reaped. The
            // buffer outlives the operation: `self.bufs` is only handed out by `RingPool::read`
            // after `run` returned Ok, i.e. with `in_flight == 0`, and `Batch::drop` reaps every
            // outstanding completion before the buffers are freed, or leaks them if it cannot.
            // The file descriptor is borrowed from the caller for the whole call, and the kernel
            // holds its own reference to the file once the read is submitted.
            if unsafe { sq.push(&entry) }.is_err() {
                // Full after all (cannot happen: checked above); retry on the next round.
                pending.push_front(ci);
                break;
            }
            self.in_flight += 1;
        }
        // Dropping `sq` publishes the new entries; `submit_and_wait` hands them to the kernel.
    }
}

impl Drop for Batch<'_, '_> {
    fn drop(&mut self) {
        let mut retries = 0;
        while self.in_flight > 0 {
            let ring = self.lease.ring();
            match ring.submit_and_wait(1) {
                Ok(_) => retries = 0,
                Err(e) if enter_retryable(&e) && retries < MAX_ENTER_RETRIES => retries += 1,
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        in_flight = self.in_flight,
                        "io_uring broke with reads in flight; leaking their buffers and the ring"
                    );
                    // The kernel may still write into these buffers: never free them.
                    for buf in self.bufs.drain(..) {
                        std::mem::forget(buf);
                    }
                    self.lease.broken = true;
                    return;
                }
            }
            self.in_flight -= ring.completion().count();
        }
    }
}

fn fd(file: &File) -> types::Fd {
    types::Fd(file.as_raw_fd())
}

fn enter_retryable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY))
}

/// One real read through `ring`: from `/dev/zero` (present on any Linux host), checking the bytes
/// arrive; or, where `/dev/zero` cannot be opened, from an empty memfd (0 bytes expected).
fn probe_read(ring: &mut IoUring) -> Result<(), String> {
    let (file, expect) = match File::open("/dev/zero") {
        Ok(f) => (f, ALIGN),
        Err(_) => (memfd().map_err(|e| format!("no file to test io_uring with: {e}"))?, 0),
    };
    let mut buf = AlignedBuf::zeroed(ALIGN);
    buf.padded_mut().fill(0xA5);
    let entry =
        opcode::Read::new(fd(&file), buf.as_mut_ptr(), ALIGN as u32).build().user_data(0x1065);
    // SAFETY: `buf` holds ALIGN writable bytes. If the read is not seen to complete below, `buf`
    // is leaked (never freed), so the kernel can never write into freed memory.
    let pushed = unsafe { ring.submission().push(&entry) };
    if pushed.is_err() {
        return Err("the new io_uring's submission queue is full".into());
    }
    let mut result = None;
    let mut retries = 0;
    while result.is_none() {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if enter_retryable(&e) && retries < MAX_ENTER_RETRIES => retries += 1,
            Err(e) => {
                std::mem::forget(buf);
                return Err(format!("submitting a test read failed: {e}"));
            }
        }
        result = ring.completion().next().map(|c| c.result());
    }
    match result {
        Some(n) if n >= 0 && n as usize == expect && buf.iter().take(expect).all(|&b| b == 0) => {
            Ok(())
        }
        Some(n) if n < 0 => {
            Err(format!("a test read failed: {}", io::Error::from_raw_os_error(-n)))
        }
        other => Err(format!("a test read returned {other:?}, expected {expect} zero bytes")),
    }
}

fn memfd() -> io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: the name is a NUL-terminated string literal; memfd_create reads nothing else.
    let raw = unsafe { libc::memfd_create(c"lorad-io-uring-probe".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(raw) })
}
