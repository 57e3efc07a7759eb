//! The receipt journal: an append-only file of CRC-checked records, keyed by job id.
//!
//! One committer thread owns the write side. Appends from any number of threads queue up;
//! the committer takes everything queued, writes it with one `write`, makes it durable with
//! one `fdatasync`, and only then answers each caller (group commit). So an acknowledged
//! receipt is on disk, and a burst of appends costs one sync, not one each.
//!
//! Appends are idempotent per id: a second append of a known id is answered
//! [`Appended::Duplicate`] and writes nothing, so the node never holds (or returns) two
//! receipts for one job, which Settlement would punish as equivocation.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use futures::channel::oneshot;

use crate::ReceiptsError;
use crate::record::{self, Found, HEADER_LEN, MAX_PAYLOAD, ScanEnd};

/// Most records one group commit writes; a deeper queue is committed in several rounds.
const MAX_BATCH: usize = 8192;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The record is new and now durable.
    Stored,
    /// A record with this id was already stored (or is in the same commit); nothing was written.
    Duplicate,
}

/// What opening the journal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records.
    pub records: usize,
    /// Bytes of an unfinished last record that were cut off (0 after a clean shutdown).
    pub truncated_bytes: u64,
    /// Why they were cut off.
    pub truncated_reason: Option<String>,
    /// Where the cut bytes were kept, unless they were all zeros. A crash leaves an
    /// unacknowledged record there, but so can damage to the last acknowledged one: nothing
    /// is destroyed on a guess.
    pub saved_to: Option<PathBuf>,
    /// Records whose id an earlier record already had (kept: the first wins). Always 0 for
    /// journals this crate wrote.
    pub duplicate_ids: usize,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// Durable records only: the committer inserts after the sync.
    index: RwLock<HashMap<[u8; 32], Loc>>,
    /// Read side (positional reads need no lock on the write side).
    reader: File,
    /// Set once a write or sync failed.
    failed: Mutex<Option<String>>,
}

struct Request {
    id: [u8; 32],
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<Appended, ReceiptsError>>,
}

/// The open journal. Cheap to share (`Arc<Journal>`); dropping it commits what is queued
/// and stops the committer.
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    queue: Option<Sender<Request>>,
    committer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("len", &self.payload.len()).finish()
    }
}

impl Journal {
    /// Opens (creating if absent) the journal at `path`, locks it against other processes,
    /// recovers it after a crash (cutting an unfinished last record) and starts the committer.
    /// Damage in the middle of the file is an error and nothing is changed.
    pub fn open(path: &Path) -> Result<(Self, Recovery), ReceiptsError> {
        let io = |what, source| ReceiptsError::Io { what, path: path.to_path_buf(), source };
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| io("opening", e))?;
        // SAFETY: flock on a descriptor we own; it does not touch memory. The lock lives as
        // long as this open file description (the committer's `file`).
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            return Err(if err.kind() == std::io::ErrorKind::WouldBlock {
                ReceiptsError::Locked { path: path.to_path_buf() }
            } else {
                io("locking", err)
            });
        }
        if !existed {
            sync_parent(path)?;
        }
        let reader = File::open(path).map_err(|e| io("opening", e))?;
        let len = file.metadata().map_err(|e| io("inspecting", e))?.len();

        let mut index = HashMap::new();
        let mut recovery = Recovery {
            records: 0,
            truncated_bytes: 0,
            truncated_reason: None,
            saved_to: None,
            duplicate_ids: 0,
        };
        let end = record::scan(&reader, len, |f: Found| {
            recovery.records += 1;
            let loc = Loc { offset: f.offset, len: f.payload.len() as u32 };
            if index.insert(f.id, loc).is_some() {
                recovery.duplicate_ids += 1;
            }
        })
        .map_err(|e| io("reading", e))?;
        let mut end_offset = len;
        match end {
            ScanEnd::Clean => {}
            ScanEnd::Corrupt { offset, reason } => {
                return Err(ReceiptsError::Corrupt { path: path.to_path_buf(), offset, reason });
            }
            ScanEnd::TornTail { offset, reason } => {
                recovery.saved_to = save_tail(&reader, path, offset, len)?;
                file.set_len(offset).map_err(|e| io("truncating the torn tail of", e))?;
                file.sync_all().map_err(|e| io("syncing", e))?;
                recovery.truncated_bytes = len - offset;
                recovery.truncated_reason = Some(reason);
                end_offset = offset;
            }
        }
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            index: RwLock::new(index),
            reader,
            failed: Mutex::new(None),
        });
        let (queue, requests) = mpsc::channel();
        let committer_shared = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("receipt-journal".into())
            .spawn(move || commit_loop(file, end_offset, &committer_shared, requests))
            .map_err(|e| io("starting the committer for", e))?;
        Ok((Self { shared, queue: Some(queue), committer: Some(committer) }, recovery))
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Number of durable records.
    pub fn len(&self) -> usize {
        self.shared.index.read().map(|i| i.len()).unwrap_or_default()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a durable record has this id.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.shared.index.read().map(|i| i.contains_key(id)).unwrap_or_default()
    }

    /// The durable record with this id.
    pub fn get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, ReceiptsError> {
        let loc = match self.shared.index.read() {
            Ok(index) => index.get(id).copied(),
            Err(_) => None,
        };
        let Some(loc) = loc else { return Ok(None) };
        let mut payload = vec![0u8; loc.len as usize];
        self.shared.reader.read_exact_at(&mut payload, loc.offset + HEADER_LEN as u64).map_err(
            |source| ReceiptsError::Io { what: "reading", path: self.shared.path.clone(), source },
        )?;
        Ok(Some(payload))
    }

    /// Queues a record and returns a future that resolves once it is durable (or known).
    pub fn append_async(
        &self,
        id: [u8; 32],
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Appended, ReceiptsError>> + Send + 'static {
        let path = self.shared.path.clone();
        let (reply, answer) = oneshot::channel();
        let queued = if payload.len() > MAX_PAYLOAD {
            Err(ReceiptsError::TooLarge { len: payload.len(), max: MAX_PAYLOAD })
        } else {
            match &self.queue {
                Some(q) => q.send(Request { id, payload, reply }).map_err(|_| stopped(&path)),
                None => Err(stopped(&path)),
            }
        };
        async move {
            queued?;
            answer.await.map_err(|_| stopped(&path))?
        }
    }

    /// Appends a record and blocks until it is durable.
    pub fn append(&self, id: [u8; 32], payload: Vec<u8>) -> Result<Appended, ReceiptsError> {
        futures::executor::block_on(self.append_async(id, payload))
    }

    /// Calls `each` for every durable record in file order.
    pub fn for_each(&self, each: impl FnMut(Found)) -> Result<(), ReceiptsError> {
        read_records(&self.shared.path, each).map(|_| ())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Closing the queue lets the committer finish what is queued and return.
        self.queue.take();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

fn stopped(path: &Path) -> ReceiptsError {
    ReceiptsError::Failed {
        path: path.to_path_buf(),
        reason: "the journal's committer has stopped".into(),
    }
}

/// Reads a journal without opening it for writing (no lock, no truncation): for export
/// while lorad runs. Stops quietly at an unfinished last record; corruption is an error.
pub fn read_records(path: &Path, each: impl FnMut(Found)) -> Result<ScanEnd, ReceiptsError> {
    let file = File::open(path).map_err(|source| ReceiptsError::Io {
        what: "opening",
        path: path.to_path_buf(),
        source,
    })?;
    let len = file
        .metadata()
        .map_err(|source| ReceiptsError::Io {
            what: "inspecting",
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let end = record::scan(&file, len, each).map_err(|source| ReceiptsError::Io {
        what: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    if let ScanEnd::Corrupt { offset, reason } = end {
        return Err(ReceiptsError::Corrupt { path: path.to_path_buf(), offset, reason });
    }
    Ok(end)
}

/// Copies bytes `offset..len` of the journal to `<path>.torn-<offset>` (`.1`, `.2`, ... after
/// it if taken), durably, before they are cut, unless they are all zeros (what a crash leaves
/// where the filesystem extended the file). Returns where they went.
fn save_tail(
    reader: &File,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<Option<PathBuf>, ReceiptsError> {
    let io = |what, p: &Path, source| ReceiptsError::Io { what, path: p.to_path_buf(), source };
    let mut tail = vec![0u8; usize::try_from(len - offset).unwrap_or(usize::MAX)];
    reader.read_exact_at(&mut tail, offset).map_err(|e| io("reading the torn tail of", path, e))?;
    if tail.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    // A fresh name each time: a second crash at the same offset must not overwrite the first
    // one's bytes.
    let mut n = 0u32;
    let (saved, mut f) = loop {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".torn-{offset}"));
        if n > 0 {
            name.push(format!(".{n}"));
        }
        let saved = PathBuf::from(name);
        match OpenOptions::new().write(true).create_new(true).mode(0o640).open(&saved) {
            Ok(f) => break (saved, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(io("creating", &saved, e)),
        }
    };
    f.write_all(&tail).and_then(|()| f.sync_all()).map_err(|e| io("writing", &saved, e))?;
    sync_parent(&saved)?;
    Ok(Some(saved))
}

fn sync_parent(path: &Path) -> Result<(), ReceiptsError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| ReceiptsError::Io {
        what: "syncing the directory of",
        path: path.to_path_buf(),
        source,
    })
}

fn commit_loop(mut file: File, mut end: u64, shared: &Shared, requests: Receiver<Request>) {
    let mut buf = Vec::with_capacity(1 << 20);
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        batch.extend(requests.try_iter().take(MAX_BATCH - 1));

        let failed = shared.failed.lock().ok().and_then(|f| f.clone());
        if let Some(reason) = failed {
            for r in batch {
                let _ = r.reply.send(Err(ReceiptsError::Failed {
                    path: shared.path.clone(),
                    reason: reason.clone(),
                }));
            }
            continue;
        }
        buf.clear();
        let mut new: HashMap<[u8; 32], Loc> = HashMap::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let index = shared.index.read().ok();
            for r in &batch {
                let known = index.as_ref().is_some_and(|i| i.contains_key(&r.id))
                    || new.contains_key(&r.id);
                if known {
                    outcomes.push(Appended::Duplicate);
                    continue;
                }
                let offset = end + buf.len() as u64;
                record::encode(&r.id, &r.payload, &mut buf);
                new.insert(r.id, Loc { offset, len: r.payload.len() as u32 });
                outcomes.push(Appended::Stored);
            }
        }
        let written = if buf.is_empty() {
            Ok(())
        } else {
            file.write_all(&buf).and_then(|()| file.sync_data())
        };
        match written {
            Ok(()) => {
                end += buf.len() as u64;
                if let Ok(mut index) = shared.index.write() {
                    index.extend(new);
                }
                for (r, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = r.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                // The file's durable state is unknown now (and a failed fsync may have dropped
                // the dirty pages): refuse everything from here on instead of guessing.
                let reason = e.to_string();
                if let Ok(mut f) = shared.failed.lock() {
                    *f = Some(reason.clone());
                }
                for r in batch {
                    let _ = r.reply.send(Err(ReceiptsError::Failed {
                        path: shared.path.clone(),
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }
}
