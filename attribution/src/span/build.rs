//! Building a span index: corpus assembly, suffix array construction (libsais), and an atomic,
//! durable write of the directory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use libsais::SuffixArrayConstruction;
use libsais::suffix_array::AlphabetSize;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::format::{
    DOCS_FILE, FORMAT_VERSION, HEADER_FILE, MAX_TOKENS, SA_FILE, SEPARATOR_U16, SEPARATOR_U32,
    SpanIndexHeader, TOKENS_FILE, token_width_for,
};
use super::index::SpanIndex;
use crate::{AttributionError, Result};

/// What [`SpanIndex::build`] wrote and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanIndexStats {
    /// Corpus positions: all documents' tokens plus one separator per document.
    pub num_tokens: u64,
    /// Documents.
    pub num_docs: u64,
    /// Bytes per token in `tokens.bin` (2 or 4).
    pub token_width: u32,
    /// Bytes of all four files of the index.
    pub index_bytes: u64,
    /// `index_bytes / num_tokens` (0 for an empty corpus): 6 plus the document table's share
    /// for 2-byte tokens, 8 plus it for 4-byte tokens.
    pub bytes_per_token: f64,
    /// Seconds spent in suffix array construction.
    pub suffix_array_secs: f64,
    /// Seconds of the whole build, from the first document to the rename into place.
    pub total_secs: f64,
}

/// The corpus in the form libsais sorts: `u16` text for 2-byte tokens; for 4-byte tokens an
/// `i32` text with the separator written as `vocab_size` (libsais's large-alphabet entry point
/// needs values in `0..alphabet_size`, and `vocab_size` keeps the separator above every token,
/// as `u32::MAX` is in the stored file, so the sort order is the same).
#[derive(Debug)]
enum Corpus {
    U16(Vec<u16>),
    I32(Vec<i32>),
}

impl Corpus {
    fn len(&self) -> usize {
        match self {
            Corpus::U16(t) => t.len(),
            Corpus::I32(t) => t.len(),
        }
    }
}

impl SpanIndex {
    /// Builds the span index of `docs` (one token sequence per Datanet record, in record order:
    /// the document index is the record index; slices or owned vectors, so a caller can produce
    /// them lazily) into `dir`, which must not exist yet (its parent is
    /// created).
    ///
    /// Tokens must be below `vocab_size`. Tokens are stored 2 bytes wide when
    /// `vocab_size < 65535`, else 4 bytes wide; the corpus (tokens plus one separator per
    /// document) must stay below 2^31 positions. The directory is written under a temporary
    /// name, fsynced and renamed into place, so readers and crashes see either no index or a
    /// complete one.
    pub fn build<D: AsRef<[u32]>>(
        docs: impl IntoIterator<Item = D>,
        vocab_size: usize,
        dir: &Path,
    ) -> Result<SpanIndexStats> {
        let started = Instant::now();
        if vocab_size == 0 || vocab_size as u64 >= MAX_TOKENS {
            return Err(AttributionError::InvalidInput(format!(
                "vocab_size {vocab_size} out of range 1..{MAX_TOKENS}"
            )));
        }
        if dir.symlink_metadata().is_ok() {
            return Err(AttributionError::InvalidInput(format!(
                "{} already exists; remove it to rebuild",
                dir.display()
            )));
        }
        let (mut corpus, doc_starts) = assemble(docs, vocab_size)?;
        let sa_started = Instant::now();
        let sa = suffix_array(&mut corpus, vocab_size)?;
        let suffix_array_secs = sa_started.elapsed().as_secs_f64();

        let tmp = TempDir::create(dir)?;
        let mut sha256 = std::collections::BTreeMap::new();
        let mut index_bytes = 0;
        let (hash, bytes) = write_tokens(&tmp.path.join(TOKENS_FILE), &corpus, vocab_size)?;
        sha256.insert(TOKENS_FILE.to_string(), hash);
        index_bytes += bytes;
        let (hash, bytes) = write_sa(&tmp.path.join(SA_FILE), &sa)?;
        sha256.insert(SA_FILE.to_string(), hash);
        index_bytes += bytes;
        drop(sa);
        let (hash, bytes) = write_le(&tmp.path.join(DOCS_FILE), &doc_starts, |v, buf| {
            buf.extend_from_slice(&v.to_le_bytes());
        })?;
        sha256.insert(DOCS_FILE.to_string(), hash);
        index_bytes += bytes;

        let header = SpanIndexHeader {
            format_version: FORMAT_VERSION,
            token_width: token_width_for(vocab_size),
            vocab_size: vocab_size as u64,
            num_tokens: corpus.len() as u64,
            num_docs: doc_starts.len() as u64,
            sha256,
        };
        let json = serde_json::to_vec_pretty(&header)
            .map_err(|e| AttributionError::InvalidInput(format!("encoding the header: {e}")))?;
        let hp = tmp.path.join(HEADER_FILE);
        let mut f = File::create(&hp).map_err(AttributionError::io("creating", &hp))?;
        f.write_all(&json).map_err(AttributionError::io("writing", &hp))?;
        f.sync_all().map_err(AttributionError::io("syncing", &hp))?;
        index_bytes += json.len() as u64;
        tmp.publish(dir)?;

        let stats = SpanIndexStats {
            num_tokens: header.num_tokens,
            num_docs: header.num_docs,
            token_width: header.token_width,
            index_bytes,
            bytes_per_token: if header.num_tokens == 0 {
                0.0
            } else {
                index_bytes as f64 / header.num_tokens as f64
            },
            suffix_array_secs,
            total_secs: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            dir = %dir.display(),
            tokens = stats.num_tokens,
            docs = stats.num_docs,
            bytes_per_token = stats.bytes_per_token,
            secs = stats.total_secs,
            "built span index"
        );
        Ok(stats)
    }
}

/// Concatenates the documents, each preceded by the separator; returns the corpus and the
/// position of each document's first token.
fn assemble<D: AsRef<[u32]>>(
    docs: impl IntoIterator<Item = D>,
    vocab_size: usize,
) -> Result<(Corpus, Vec<u64>)> {
    let wide = token_width_for(vocab_size) == 4;
    let mut corpus = if wide { Corpus::I32(Vec::new()) } else { Corpus::U16(Vec::new()) };
    let mut starts = Vec::new();
    for (d, doc) in docs.into_iter().enumerate() {
        let doc = doc.as_ref();
        let len = corpus.len();
        if (len + 1 + doc.len()) as u64 > MAX_TOKENS {
            return Err(AttributionError::InvalidInput(format!(
                "the corpus exceeds {MAX_TOKENS} positions at document {d}"
            )));
        }
        if let Some((i, t)) = doc.iter().enumerate().find(|&(_, &t)| t as usize >= vocab_size) {
            return Err(AttributionError::InvalidInput(format!(
                "document {d} token {i} is {t}, not below vocab_size {vocab_size}"
            )));
        }
        // Casts below are lossless: every token is below vocab_size, which is below 65535 for
        // the u16 text and below i32::MAX for the i32 text.
        match &mut corpus {
            Corpus::U16(text) => {
                text.push(SEPARATOR_U16 as u16);
                text.extend(doc.iter().map(|&t| t as u16));
            }
            Corpus::I32(text) => {
                text.push(vocab_size as i32);
                text.extend(doc.iter().map(|&t| t as i32));
            }
        }
        starts.push(len as u64 + 1);
    }
    Ok((corpus, starts))
}

/// The suffix array of `corpus` (libsais, single-threaded: the build is one of several jobs on
/// the machine and the crate is built without OpenMP).
fn suffix_array(corpus: &mut Corpus, vocab_size: usize) -> Result<Vec<i32>> {
    let failed = |e: libsais::LibsaisError| AttributionError::SuffixArray(e.to_string());
    let n = corpus.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let sa = match corpus {
        Corpus::U16(text) => SuffixArrayConstruction::for_text(text.as_slice())
            .in_owned_buffer32()
            .single_threaded()
            .run()
            .map_err(failed)?
            .into_vec(),
        Corpus::I32(text) => {
            let construction = SuffixArrayConstruction::for_text_mut(text.as_mut_slice())
                .in_owned_buffer32()
                .single_threaded();
            // `vocab_size < i32::MAX` (checked by `build`), so this is lossless and positive.
            let alphabet = AlphabetSize::new(vocab_size as i32 + 1);
            // SAFETY: `assemble` wrote only tokens checked to be below `vocab_size` and the
            // separator `vocab_size`, so every value of the text is in `0..vocab_size + 1`.
            let construction = unsafe { construction.with_alphabet_size(alphabet) };
            construction.run().map_err(failed)?.into_vec()
        }
    };
    if sa.len() != n {
        return Err(AttributionError::SuffixArray(format!(
            "{} entries for a text of {n}",
            sa.len()
        )));
    }
    Ok(sa)
}

/// Writes the corpus as stored: little-endian, the separator as `0xFFFF` / `u32::MAX`.
fn write_tokens(path: &Path, corpus: &Corpus, vocab_size: usize) -> Result<(String, u64)> {
    match corpus {
        Corpus::U16(text) => write_le(path, text, |v, buf| buf.extend_from_slice(&v.to_le_bytes())),
        Corpus::I32(text) => {
            // `vocab_size < i32::MAX` (checked by `build`): the separator's i32 encoding.
            let sep = vocab_size as i32;
            write_le(path, text, |&v, buf| {
                let stored = if v == sep { SEPARATOR_U32 } else { v as u32 };
                buf.extend_from_slice(&stored.to_le_bytes());
            })
        }
    }
}

/// Writes the suffix array as little-endian `u32`.
fn write_sa(path: &Path, sa: &[i32]) -> Result<(String, u64)> {
    if let Some(bad) = sa.iter().find(|&&p| p < 0) {
        return Err(AttributionError::SuffixArray(format!("negative entry {bad}")));
    }
    write_le(path, sa, |&p, buf| buf.extend_from_slice(&(p as u32).to_le_bytes()))
}

/// Writes `values` encoded by `encode` to a new file, fsyncs it; returns its hex SHA-256 and
/// length.
fn write_le<T>(
    path: &Path,
    values: &[T],
    encode: impl Fn(&T, &mut Vec<u8>),
) -> Result<(String, u64)> {
    let file = File::create(path).map_err(AttributionError::io("creating", path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hash = Sha256::new();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut bytes = 0u64;
    for chunk in values.chunks(1 << 16) {
        buf.clear();
        for v in chunk {
            encode(v, &mut buf);
        }
        hash.update(&buf);
        out.write_all(&buf).map_err(AttributionError::io("writing", path))?;
        bytes += buf.len() as u64;
    }
    let file = out.into_inner().map_err(|e| AttributionError::Io {
        action: "writing",
        path: path.to_owned(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(AttributionError::io("syncing", path))?;
    Ok((hex::encode(hash.finalize()), bytes))
}

/// The directory being written, next to its final place; removed on drop unless published.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
    published: bool,
}

impl TempDir {
    /// Creates a fresh temporary sibling of `dir` (creating `dir`'s parent).
    fn create(dir: &Path) -> Result<TempDir> {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(AttributionError::io("creating", parent))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!(".tmp-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).map_err(AttributionError::io("creating", &path))?;
        Ok(TempDir { path, published: false })
    }

    /// Renames the complete directory to `dir` and makes the rename durable.
    fn publish(mut self, dir: &Path) -> Result<()> {
        if let Ok(d) = File::open(&self.path) {
            // Best effort: some filesystems refuse fsync on directories; the files themselves
            // are already synced.
            let _ = d.sync_all();
        }
        // rename(2) refuses a non-empty target, so a racing builder cannot be overwritten.
        std::fs::rename(&self.path, dir)
            .map_err(AttributionError::io("renaming into place", dir))?;
        self.published = true;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = File::open(parent)
        {
            // Best effort, as above: makes the rename itself survive a crash.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.published {
            // A failed build leaves nothing behind; a leftover `.tmp-*` would be harmless.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
