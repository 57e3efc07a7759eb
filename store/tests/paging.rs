//! The pager: both backends (io_uring and pread) return exactly the bytes `std::fs::read` sees,
//! for O_DIRECT and buffered files, any aligned offset, sizes that are not block multiples and
//! span several chunks, and batches larger than the queue depth; and they fail the same way
//! (short read naming the file, unaligned offset rejected).
//!
//! io_uring is expected to work on the machines these tests run on, so `IoMode::Auto` must pick
//! it and `IoMode::IoUring` must succeed. On a host known to lack io_uring (seccomp, the
//! `kernel.io_uring_disabled` sysctl, a pre-5.6 kernel) set `LORAD_TEST_NO_IO_URING=1`: the
//! io_uring cases are then skipped with a loud message and the pread ones still run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use lorad_store::StoreError;
use lorad_store::paging::{
    ALIGN, CHUNK_BYTES, HostPinner, IoBackend, IoMode, Pager, ReadRequest, open_direct,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn io_uring_expected() -> bool {
    std::env::var_os("LORAD_TEST_NO_IO_URING").is_none_or(|v| v.is_empty() || v == "0")
}

/// The pagers to test: pread always, io_uring unless the host is declared not to have it.
fn pagers(depth: u32) -> Vec<Pager> {
    let mut out = vec![Pager::new(IoMode::Pread, depth).unwrap()];
    match Pager::new(IoMode::IoUring, depth) {
        Ok(p) => out.push(p),
        Err(e) if !io_uring_expected() => {
            eprintln!("!!!!! io_uring unavailable ({e}); testing only the pread backend !!!!!");
        }
        Err(e) => panic!("io_uring should work on this host: {e} (LORAD_TEST_NO_IO_URING=1 skips)"),
    }
    out
}

fn random_bytes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

/// A file of `size` random bytes in `dir`; returns its path and content.
fn make_file(dir: &Path, name: &str, size: usize, rng: &mut ChaCha8Rng) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let data = random_bytes(rng, size);
    std::fs::write(&path, &data).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    (path, data)
}

/// The same file opened both ways: via `open_direct` (O_DIRECT where supported) and buffered.
fn both_opens(path: &Path) -> Vec<(File, &'static str)> {
    let (direct, is_direct) = open_direct(path).unwrap();
    let label = if is_direct { "O_DIRECT" } else { "buffered (no O_DIRECT here)" };
    vec![(direct, label), (File::open(path).unwrap(), "buffered")]
}

/// A random aligned offset in `0..=size` (rounded down) and a random length up to the end.
fn random_range(rng: &mut ChaCha8Rng, size: usize) -> (u64, usize) {
    let blocks = size / ALIGN;
    let offset = rng.random_range(0..=blocks) * ALIGN;
    let left = size - offset;
    let len = match rng.random_range(0..4) {
        0 => left,
        1 => rng.random_range(0..=left.min(3 * ALIGN)),
        _ => rng.random_range(0..=left),
    };
    (offset as u64, len)
}

#[test]
fn auto_picks_io_uring_on_this_host() {
    let p = Pager::new(IoMode::Auto, 32).unwrap();
    if !io_uring_expected() {
        eprintln!("LORAD_TEST_NO_IO_URING set: Auto chose {}", p.backend().as_str());
        return;
    }
    assert_eq!(p.backend(), IoBackend::IoUring, "fallback reason: {:?}", p.fallback_reason());
    assert_eq!(p.fallback_reason(), None);
    let p = Pager::new(IoMode::IoUring, 32).unwrap();
    assert_eq!(p.backend(), IoBackend::IoUring);
    assert_eq!(p.backend().as_str(), "io_uring");
}

#[test]
fn forced_pread_says_why() {
    let p = Pager::new(IoMode::Pread, 32).unwrap();
    assert_eq!(p.backend(), IoBackend::Pread);
    assert_eq!(p.backend().as_str(), "pread");
    assert!(p.fallback_reason().unwrap().contains("configuration"));
}

/// Makes `io_uring_setup` fail with EPERM for the calling thread only (as Docker's default
/// seccomp profile or `kernel.io_uring_disabled=2` would). Returns false where seccomp itself is
/// unavailable.
fn block_io_uring_on_this_thread() -> bool {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let mut filter = [
        // Load the syscall number (`seccomp_data.nr`, offset 0).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // io_uring_setup → EPERM, anything else → allow.
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only and affects this thread only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return false;
    }
    // SAFETY: `prog` points at `filter`, both alive for the call (the kernel copies the program);
    // without SECCOMP_FILTER_FLAG_TSYNC the filter applies to the calling thread (and threads it
    // spawns) only, which the caller dedicates to this test.
    unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) == 0 }
}

#[test]
fn auto_falls_back_to_pread_when_io_uring_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (path, data) = make_file(dir.path(), "f", CHUNK_BYTES + 3, &mut rng);
    std::thread::spawn(move || {
        if !block_io_uring_on_this_thread() {
            eprintln!("!!!!! seccomp unavailable: fallback test skipped !!!!!");
            return;
        }
        let p = Pager::new(IoMode::Auto, 8).unwrap();
        assert_eq!(p.backend(), IoBackend::Pread);
        let reason = p.fallback_reason().unwrap();
        assert!(reason.contains("Operation not permitted"), "{reason}");
        let f = File::open(&path).unwrap();
        assert!(p.read(&f, &path, 0, data.len()).unwrap()[..] == data[..]);
        match Pager::new(IoMode::IoUring, 8) {
            Err(StoreError::IoUringUnavailable { reason }) => {
                assert!(reason.contains("Operation not permitted"), "{reason}")
            }
            other => panic!("expected IoUringUnavailable, got {other:?}"),
        }
    })
    .join()
    .unwrap();
}

#[test]
fn queue_depth_zero_is_clamped_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (path, data) = make_file(dir.path(), "f", 3 * ALIGN + 1, &mut rng);
    for p in pagers(0) {
        let f = File::open(&path).unwrap();
        assert_eq!(&p.read(&f, &path, 0, data.len()).unwrap()[..], &data[..]);
    }
}

/// Files of awkward sizes, random aligned ranges, every backend × both ways of opening.
#[test]
fn random_reads_match_std_fs_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0x10AD);
    let mut sizes = vec![
        0,
        1,
        ALIGN - 1,
        ALIGN,
        ALIGN + 1,
        CHUNK_BYTES - 1,
        CHUNK_BYTES,
        CHUNK_BYTES + ALIGN + 17,
        3 * CHUNK_BYTES + 5,
    ];
    sizes.extend((0..4).map(|_| rng.random_range(0..5 * CHUNK_BYTES)));
    let files: Vec<(PathBuf, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| make_file(dir.path(), &format!("f{i}"), s, &mut rng))
        .collect();
    for depth in [1, 3, 64] {
        for pager in pagers(depth) {
            let backend = pager.backend().as_str();
            for (path, data) in &files {
                for (file, how) in both_opens(path) {
                    // Whole file, then random ranges one at a time and as one batch.
                    let whole = pager.read(&file, path, 0, data.len()).unwrap();
                    assert_eq!(whole.len(), data.len());
                    assert!(whole.capacity() >= data.len() && whole.capacity() % ALIGN == 0);
                    assert!(whole[..] == data[..], "{backend} {how} whole {}", data.len());
                    let ranges: Vec<(u64, usize)> =
                        (0..12).map(|_| random_range(&mut rng, data.len())).collect();
                    for &(off, len) in &ranges {
                        let got = pager.read(&file, path, off, len).unwrap();
                        let want = &data[off as usize..off as usize + len];
                        assert!(
                            &got[..] == want,
                            "{backend} {how} size {} @{off}+{len}",
                            data.len()
                        );
                    }
                    let reqs: Vec<ReadRequest<'_>> = ranges
                        .iter()
                        .map(|&(offset, len)| ReadRequest { file: &file, path, offset, len })
                        .collect();
                    let got = pager.read_many(&reqs).unwrap();
                    assert_eq!(got.len(), reqs.len());
                    for (buf, &(off, len)) in got.iter().zip(&ranges) {
                        assert!(buf[..] == data[off as usize..off as usize + len]);
                    }
                }
            }
        }
    }
}

/// Many requests over several files, far more pieces than the queue depth, results in order.
#[test]
fn read_many_beyond_queue_depth_keeps_request_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let files: Vec<(PathBuf, Vec<u8>)> = (0..5)
        .map(|i| {
            let size = rng.random_range(ALIGN..3 * CHUNK_BYTES);
            make_file(dir.path(), &format!("m{i}"), size, &mut rng)
        })
        .collect();
    for pager in pagers(4) {
        let opened: Vec<(File, &Path, &[u8])> = files
            .iter()
            .enumerate()
            .map(|(i, (p, d))| {
                // Alternate O_DIRECT and buffered files within one batch.
                let f = if i % 2 == 0 { open_direct(p).unwrap().0 } else { File::open(p).unwrap() };
                (f, p.as_path(), d.as_slice())
            })
            .collect();
        let mut expected = Vec::new();
        let mut reqs = Vec::new();
        for _ in 0..300 {
            let (f, path, data) = &opened[rng.random_range(0..opened.len())];
            let (offset, len) = random_range(&mut rng, data.len());
            reqs.push(ReadRequest { file: f, path, offset, len });
            expected.push(&data[offset as usize..offset as usize + len]);
        }
        let before = pager.stats();
        let got = pager.read_many(&reqs).unwrap();
        assert_eq!(got.len(), 300);
        for (i, (buf, want)) in got.iter().zip(&expected).enumerate() {
            assert!(&buf[..] == *want, "{} request {i}", pager.backend().as_str());
        }
        let after = pager.stats();
        assert_eq!(after.reads - before.reads, 300);
        let total: usize = expected.iter().map(|e| e.len()).sum();
        assert_eq!(after.bytes - before.bytes, total as u64);
        assert!(after.busy_ns > before.busy_ns);
    }
}

fn assert_short_read(err: StoreError, path: &Path, offset: u64, expected: usize, got: usize) {
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    match err {
        StoreError::ShortRead { path: p, offset: o, expected: e, got: g } => {
            assert_eq!((p.as_path(), o, e, g), (path, offset, expected, got), "{msg}");
        }
        other => panic!("expected ShortRead, got {other:?}"),
    }
}

#[test]
fn reading_past_end_of_file_is_a_short_read_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let size = 3 * CHUNK_BYTES + 100;
    let (path, data) = make_file(dir.path(), "short.bin", size, &mut rng);
    for pager in pagers(8) {
        for (file, how) in both_opens(&path) {
            let ctx = format!("{} {how}", pager.backend().as_str());
            // Ends inside the last block, inside the last chunk, and far beyond the file.
            let e = pager.read(&file, &path, 3 * CHUNK_BYTES as u64, 101).unwrap_err();
            assert_short_read(e, &path, 3 * CHUNK_BYTES as u64, 101, 100);
            let e = pager.read(&file, &path, 0, 5 * CHUNK_BYTES).unwrap_err();
            assert_short_read(e, &path, 0, 5 * CHUNK_BYTES, size);
            let off = (size / ALIGN * ALIGN + 8 * ALIGN) as u64;
            let e = pager.read(&file, &path, off, 10).unwrap_err();
            assert_short_read(e, &path, off, 10, 0);
            // One bad request fails the batch; the good one next to it does not hide it.
            let reqs = [
                ReadRequest { file: &file, path: &path, offset: 0, len: size },
                ReadRequest { file: &file, path: &path, offset: ALIGN as u64, len: size },
            ];
            let e = pager.read_many(&reqs).unwrap_err();
            assert_short_read(e, &path, ALIGN as u64, size, size - ALIGN);
            // Exactly to the end is fine, even though the padded read goes past it.
            let ok = pager.read(&file, &path, ALIGN as u64, size - ALIGN).unwrap();
            assert!(ok[..] == data[ALIGN..], "{ctx}");
        }
    }
}

/// An OS error on one piece fails the batch with that file's name; the pager (and its ring, whose
/// other reads were reaped before returning) keeps working afterwards.
#[test]
fn os_errors_name_the_file_and_leave_the_pager_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (path, data) = make_file(dir.path(), "good.bin", 4 * CHUNK_BYTES, &mut rng);
    let not_a_file = dir.path().join("subdir");
    std::fs::create_dir(&not_a_file).unwrap();
    let bad = File::open(&not_a_file).unwrap();
    for pager in pagers(2) {
        let (good, _) = open_direct(&path).unwrap();
        let whole = ReadRequest { file: &good, path: &path, offset: 0, len: data.len() };
        let broken = ReadRequest { file: &bad, path: &not_a_file, offset: 0, len: CHUNK_BYTES };
        let err = pager.read_many(&[whole, broken, whole]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("subdir"), "{msg}");
        match err {
            StoreError::Io { source, .. } => {
                assert_eq!(source.raw_os_error(), Some(libc::EISDIR), "{msg}")
            }
            other => panic!("expected Io, got {other:?}"),
        }
        for _ in 0..3 {
            let got = pager.read_many(&[whole, whole]).unwrap();
            assert!(got.iter().all(|b| b[..] == data[..]), "{}", pager.backend().as_str());
        }
    }
}

#[test]
fn unaligned_offsets_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (path, _) = make_file(dir.path(), "unaligned.bin", 4 * ALIGN, &mut rng);
    for pager in pagers(8) {
        for (file, _) in both_opens(&path) {
            for off in [1, 512, ALIGN as u64 + 100] {
                let err = pager.read(&file, &path, off, 16).unwrap_err();
                let msg = err.to_string();
                assert!(msg.contains("aligned") && msg.contains("unaligned.bin"), "{msg}");
                match err {
                    StoreError::Io { source, .. } => {
                        assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput)
                    }
                    other => panic!("expected Io, got {other:?}"),
                }
            }
        }
        // Nothing was counted for rejected reads.
        assert_eq!(pager.stats().reads, 0);
    }
}

#[test]
fn ranges_no_file_can_hold_are_rejected() {
    // usize::MAX - 1 has no 4 KiB-padded size (it used to wrap to 0 and plan pieces forever).
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (path, _) = make_file(dir.path(), "huge.bin", 4 * ALIGN, &mut rng);
    for pager in pagers(8) {
        for (file, _) in both_opens(&path) {
            for (off, len) in [(0, usize::MAX - 1), (ALIGN as u64, usize::MAX), (1 << 63, 16)] {
                let err = pager.read(&file, &path, off, len).unwrap_err();
                let msg = err.to_string();
                assert!(msg.contains("overflows") && msg.contains("huge.bin"), "{msg}");
            }
        }
        assert_eq!(pager.stats().reads, 0);
    }
}

#[test]
fn zero_length_reads_need_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (empty, _) = make_file(dir.path(), "empty", 0, &mut rng);
    let (small, _) = make_file(dir.path(), "small", 10, &mut rng);
    for pager in pagers(8) {
        for path in [&empty, &small] {
            for (file, _) in both_opens(path) {
                assert!(pager.read(&file, path, 0, 0).unwrap().is_empty());
                assert!(pager.read(&file, path, 64 * ALIGN as u64, 0).unwrap().is_empty());
            }
        }
        assert!(pager.read_many(&[]).unwrap().is_empty());
    }
}

/// Counts page-locked bytes, as a device driver would hold them.
#[derive(Debug, Default)]
struct CountingPinner {
    pins: AtomicU64,
    live_bytes: AtomicI64,
}

impl HostPinner for CountingPinner {
    unsafe fn pin(&self, _ptr: *mut u8, len: usize) -> Result<(), String> {
        self.pins.fetch_add(1, Ordering::Relaxed);
        self.live_bytes.fetch_add(len as i64, Ordering::Relaxed);
        Ok(())
    }
    unsafe fn unpin(&self, _ptr: *mut u8, len: usize) {
        self.live_bytes.fetch_sub(len as i64, Ordering::Relaxed);
    }
    fn name(&self) -> &str {
        "counting"
    }
}

/// Eight threads share a pager whose buffers are page-locked: every read returns the file's
/// bytes (reused buffers leak nothing of what they held), buffers are pinned once and reused,
/// and dropping the pager unpins everything.
#[test]
fn pager_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pager>();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (path, data) = make_file(dir.path(), "shared", 2 * CHUNK_BYTES + 333, &mut rng);
    let data = Arc::new(data);
    for pager in pagers(16) {
        let pinner = Arc::new(CountingPinner::default());
        pager.pool().set_pinner(pinner.clone()).unwrap();
        let pager = Arc::new(pager);
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (pager, path, data) = (pager.clone(), path.clone(), data.clone());
                std::thread::spawn(move || {
                    let mut rng = ChaCha8Rng::seed_from_u64(100 + t);
                    let (file, _) = open_direct(&path).unwrap();
                    for _ in 0..20 {
                        let ranges: Vec<(u64, usize)> =
                            (0..4).map(|_| random_range(&mut rng, data.len())).collect();
                        let reqs: Vec<ReadRequest<'_>> = ranges
                            .iter()
                            .map(|&(offset, len)| ReadRequest {
                                file: &file,
                                path: &path,
                                offset,
                                len,
                            })
                            .collect();
                        for (buf, &(o, l)) in pager.read_many(&reqs).unwrap().iter().zip(&ranges) {
                            assert!(buf[..] == data[o as usize..o as usize + l]);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(pager.stats().reads, 8 * 20 * 4);
        let pool = pager.pool().stats();
        assert_eq!(pool.pinned_bytes as i64, pinner.live_bytes.load(Ordering::Relaxed));
        assert_eq!(pool.allocated, pinner.pins.load(Ordering::Relaxed));
        assert!(pool.reused > pool.allocated, "buffers are reused: {pool:?}");
        drop(pager);
        assert_eq!(pinner.live_bytes.load(Ordering::Relaxed), 0, "every pin undone");
    }
}
