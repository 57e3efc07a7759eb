//! Paging adapter bytes off disk: O_DIRECT reads into 4 KiB-aligned host buffers, through
//! io_uring (batched submissions) or, where the kernel or a sandbox refuses io_uring, plain
//! `pread` (chosen once at start and reported, never silently).
//!
//! The contract other modules rely on:
//! - [`Pager::new`] picks the backend ([`IoMode`]) and never panics on hosts without io_uring;
//! - [`Pager::read`] / [`Pager::read_many`] return exactly the requested bytes (a short read is an
//!   error naming the file and offset), whatever the backend;
//! - buffers are [`AlignedBuf`]s, so an O_DIRECT file and a buffered one read the same way; they
//!   come from the pager's [`BufPool`] (page-locked once a [`HostPinner`] is installed) and go back
//!   to it when dropped.
//!
//! Both backends split every request into [`CHUNK_BYTES`] pieces. Each piece asks for the
//! *padded* length (the buffer's capacity, a multiple of [`ALIGN`]) so O_DIRECT sees aligned
//! offsets, lengths and addresses; reading past end of file inside that final padding is fine as
//! long as the `len` bytes asked for arrived. io_uring keeps up to `queue_depth` pieces in flight
//! across all requests of a [`Pager::read_many`]; `pread` reads them one after the other.

mod buf;
mod pool;
mod uring;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use buf::{ALIGN, AlignedBuf};
pub use pool::{BufPool, HostPinner, MAX_IDLE_BYTES, PoolStats};

use crate::error::StoreError;

/// Size of the pieces requests are split into (a multiple of [`ALIGN`]): large enough that
/// per-operation overhead vanishes next to NVMe transfer time, small enough that one big adapter
/// spreads over many queue slots.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Largest queue depth honoured; larger values are clamped (rings that big only cost memory).
pub const MAX_QUEUE_DEPTH: u32 = 4096;

/// How many times one piece is retried after `EINTR`/`EAGAIN` before giving up: a bound so a
/// misbehaving filesystem turns into an error instead of a hang.
const MAX_RETRIES: u32 = 1000;

/// Which read path to use (the config switch; `Pread` forces the fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring when the probe succeeds, else `pread` with a warning.
    #[default]
    Auto,
    /// io_uring or an error at start.
    IoUring,
    /// Always `pread`.
    Pread,
}

/// The read path in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    /// Batched io_uring reads.
    IoUring,
    /// One `pread` per chunk.
    Pread,
}

impl IoBackend {
    /// `"io_uring"` or `"pread"` (for logs and metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            IoBackend::IoUring => "io_uring",
            IoBackend::Pread => "pread",
        }
    }
}

/// Counters since the pager was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagerStats {
    /// Read requests served ([`Pager::read`] counts one, [`Pager::read_many`] one per request).
    pub reads: u64,
    /// Bytes delivered to callers.
    pub bytes: u64,
    /// Wall-clock nanoseconds spent inside `read`/`read_many` (failed calls included), summed
    /// over threads: `bytes / busy_ns` is the throughput callers saw.
    pub busy_ns: u64,
}

/// Reads byte ranges of files into aligned buffers.
#[derive(Debug)]
pub struct Pager {
    backend: IoBackend,
    fallback_reason: Option<String>,
    /// The io_uring rings; `None` on the `pread` backend.
    rings: Option<uring::RingPool>,
    pool: BufPool,
    reads: AtomicU64,
    bytes: AtomicU64,
    busy_ns: AtomicU64,
}

impl Pager {
    /// Creates a pager. `queue_depth` bounds in-flight io_uring requests (ignored by `pread`;
    /// clamped to `1..=`[`MAX_QUEUE_DEPTH`]).
    ///
    /// `Auto` and `IoUring` probe io_uring first (create a ring, check the kernel supports
    /// `IORING_OP_READ`, do one real read). If the probe fails, `IoUring` returns
    /// [`StoreError::IoUringUnavailable`] and `Auto` logs a warning and uses `pread`, with the
    /// reason in [`Pager::fallback_reason`].
    pub fn new(mode: IoMode, queue_depth: u32) -> Result<Pager, StoreError> {
        let depth = queue_depth.clamp(1, MAX_QUEUE_DEPTH);
        let (backend, fallback_reason, rings) = match mode {
            IoMode::Pread => (IoBackend::Pread, Some("forced by configuration".to_owned()), None),
            IoMode::Auto | IoMode::IoUring => match uring::RingPool::probe(depth) {
                Ok(pool) => (IoBackend::IoUring, None, Some(pool)),
                Err(reason) if mode == IoMode::IoUring => {
                    return Err(StoreError::IoUringUnavailable { reason });
                }
                Err(reason) => {
                    tracing::warn!(
                        %reason,
                        "io_uring is unavailable; paging adapters with pread (slower on NVMe)"
                    );
                    (IoBackend::Pread, Some(reason), None)
                }
            },
        };
        Ok(Pager {
            backend,
            fallback_reason,
            rings,
            pool: BufPool::default(),
            reads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
        })
    }

    /// The backend chosen at start.
    pub fn backend(&self) -> IoBackend {
        self.backend
    }

    /// Why `pread` is in use, when it is.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Reads `len` bytes at `offset` (a multiple of [`ALIGN`]) of `file`. `path` only names the
    /// file in errors.
    pub fn read(
        &self,
        file: &File,
        path: &Path,
        offset: u64,
        len: usize,
    ) -> Result<AlignedBuf, StoreError> {
        let mut out = self.read_many(&[ReadRequest { file, path, offset, len }])?;
        Ok(out.pop().unwrap_or_else(|| AlignedBuf::zeroed(0)))
    }

    /// Reads several ranges, submitted together; results in request order. Fails as a whole: on
    /// error no buffer is returned (and none is still being written by the kernel).
    pub fn read_many(&self, reqs: &[ReadRequest<'_>]) -> Result<Vec<AlignedBuf>, StoreError> {
        let started = Instant::now();
        let result = self.read_many_inner(reqs);
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
        if let Ok(bufs) = &result {
            self.reads.fetch_add(reqs.len() as u64, Ordering::Relaxed);
            let bytes: u64 = bufs.iter().map(|b| b.len() as u64).sum();
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        result
    }

    fn read_many_inner(&self, reqs: &[ReadRequest<'_>]) -> Result<Vec<AlignedBuf>, StoreError> {
        let mut chunks = plan(reqs)?;
        let bufs: Vec<AlignedBuf> = reqs.iter().map(|r| self.pool.take(r.len)).collect();
        if chunks.is_empty() {
            return Ok(bufs);
        }
        let direct: Vec<bool> = reqs.iter().map(|r| is_direct(r.file)).collect();
        match &self.rings {
            Some(pool) => pool.read(reqs, &direct, &mut chunks, bufs),
            None => pread_all(reqs, &direct, &chunks, bufs),
        }
    }

    /// The pool the read buffers come from (install a [`HostPinner`] through it).
    pub fn pool(&self) -> &BufPool {
        &self.pool
    }

    /// Counters so far.
    pub fn stats(&self) -> PagerStats {
        PagerStats {
            reads: self.reads.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
        }
    }
}

/// One range to read.
#[derive(Debug, Clone, Copy)]
pub struct ReadRequest<'a> {
    /// The open file (O_DIRECT or not).
    pub file: &'a File,
    /// Its path, for errors.
    pub path: &'a Path,
    /// Byte offset, a multiple of [`ALIGN`].
    pub offset: u64,
    /// Bytes wanted.
    pub len: usize,
}

/// Opens `path` read-only with O_DIRECT when its filesystem supports it (tmpfs does not), else
/// buffered. Returns the file and whether it is direct.
pub fn open_direct(path: &Path) -> Result<(File, bool), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => std::fs::File::open(path)
            .map(|f| (f, false))
            .map_err(|e| StoreError::io("opening", path, e)),
        Err(e) => Err(StoreError::io("opening", path, e)),
    }
}

/// One piece of one request: buffer bytes `start..start + len` from file offset
/// `offset + start`.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// Index of the request (and of its buffer).
    req: usize,
    /// Offset of the piece within the request's buffer (a multiple of [`CHUNK_BYTES`]).
    start: usize,
    /// Bytes to ask for: padded to [`ALIGN`], so O_DIRECT accepts it.
    len: usize,
    /// Bytes of it the caller needs (the rest is padding past the requested `len`).
    need: usize,
    /// Bytes read so far.
    done: usize,
    /// `EINTR`/`EAGAIN` retries so far.
    retries: u32,
}

impl Chunk {
    /// File offset of the next byte to read.
    fn file_offset(&self, req: &ReadRequest<'_>) -> u64 {
        req.offset + (self.start + self.done) as u64
    }
}

/// What a piece needs after a read returned `n` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// All needed bytes arrived.
    Done,
    /// Short read: read the remainder.
    Again,
    /// End of file before the needed bytes.
    Eof,
}

impl Chunk {
    fn advance(&mut self, n: usize, direct: bool) -> Step {
        self.done += n;
        if self.done >= self.need {
            Step::Done
        } else if n == 0 {
            Step::Eof
        } else if direct && !(self.start + self.done).is_multiple_of(ALIGN) {
            // O_DIRECT transfers whole blocks except at end of file, and the remainder could not
            // be asked for anyway (unaligned offset and address): this is end of file.
            Step::Eof
        } else {
            Step::Again
        }
    }
}

/// Validates `reqs` and splits them into pieces (none for zero-length requests).
fn plan(reqs: &[ReadRequest<'_>]) -> Result<Vec<Chunk>, StoreError> {
    let mut chunks = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        if !r.offset.is_multiple_of(ALIGN as u64) {
            return Err(invalid(
                r.path,
                format!("offset {} is not {ALIGN}-byte aligned", r.offset),
            ));
        }
        // The padded range must be one pread can reach; a length within ALIGN of usize::MAX
        // has no padded size at all.
        let padded = r
            .len
            .checked_next_multiple_of(ALIGN)
            .filter(|&p| crate::fsutil::reachable(r.offset, p as u64));
        let Some(padded) = padded else {
            let msg = format!("range of {} bytes at offset {} overflows", r.len, r.offset);
            return Err(invalid(r.path, msg));
        };
        let mut start = 0;
        while start < r.len {
            let len = CHUNK_BYTES.min(padded - start);
            let need = len.min(r.len - start);
            chunks.push(Chunk { req: i, start, len, need, done: 0, retries: 0 });
            start += len;
        }
    }
    Ok(chunks)
}

fn invalid(path: &Path, msg: String) -> StoreError {
    StoreError::io("reading", path, std::io::Error::new(std::io::ErrorKind::InvalidInput, msg))
}

/// Whether `file` was opened with O_DIRECT (decides how a short read is treated).
fn is_direct(file: &File) -> bool {
    // SAFETY: F_GETFL on a descriptor borrowed from a live `File` reads no memory of ours.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && flags & libc::O_DIRECT != 0
}

/// The error for a request whose file ended `eof_at` bytes into it.
fn short_read(r: &ReadRequest<'_>, eof_at: usize) -> StoreError {
    // With several pieces in flight, the piece that saw end of file first may not be the one
    // containing it: the file's size says exactly how many bytes there were.
    let left = r.file.metadata().map(|m| m.len().saturating_sub(r.offset)).unwrap_or(u64::MAX);
    let got = (eof_at as u64).min(left).min(r.len as u64) as usize;
    StoreError::ShortRead { path: r.path.to_path_buf(), offset: r.offset, expected: r.len, got }
}

/// Whether an error from a read is worth retrying as is.
fn retryable(errno: i32) -> bool {
    errno == libc::EINTR || errno == libc::EAGAIN
}

/// The `pread` backend: the pieces one after the other.
fn pread_all(
    reqs: &[ReadRequest<'_>],
    direct: &[bool],
    chunks: &[Chunk],
    mut bufs: Vec<AlignedBuf>,
) -> Result<Vec<AlignedBuf>, StoreError> {
    for &c in chunks {
        let mut c = c;
        let r = &reqs[c.req];
        loop {
            let off = c.file_offset(r);
            let dst = &mut bufs[c.req].padded_mut()[c.start + c.done..c.start + c.len];
            let n = match r.file.read_at(dst, off) {
                Ok(n) => n,
                Err(e) if e.raw_os_error().is_some_and(retryable) && c.retries < MAX_RETRIES => {
                    c.retries += 1;
                    continue;
                }
                Err(e) => return Err(StoreError::io("reading", r.path, e)),
            };
            match c.advance(n, direct[c.req]) {
                Step::Done => break,
                Step::Again => {}
                Step::Eof => return Err(short_read(r, c.start + c.done)),
            }
        }
    }
    Ok(bufs)
}
