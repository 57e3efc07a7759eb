//! An open span index: the mapped files and the queries over them.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::format::{DATA_FILES, DOCS_FILE, SA_FILE, SpanIndexHeader, TOKENS_FILE};
use super::mapped::{LeInt, Mapped};
use super::search::{Searcher, Token};
use crate::{AttributionError, Result};

/// A suffix-array index over a Datanet's tokens (infini-gram style): exact-match counts and
/// positions of token sequences, and OLMoTrace-style span attribution
/// ([`SpanIndex::attribute`]).
///
/// Opening maps the files; queries read them in place and allocate only their results. Safe to
/// share between threads.
#[derive(Debug)]
pub struct SpanIndex {
    dir: PathBuf,
    header: SpanIndexHeader,
    pub(crate) tokens: Tokens,
    sa: Mapped<u32>,
    docs: Mapped<u64>,
}

/// `tokens.bin` at its stored width.
#[derive(Debug)]
pub(crate) enum Tokens {
    U16(Mapped<u16>),
    U32(Mapped<u32>),
}

/// Runs `$body` with `$s` bound to the index's [`Searcher`] at its token width.
macro_rules! with_searcher {
    ($index:expr, $s:ident => $body:expr) => {
        match &$index.tokens {
            Tokens::U16(t) => {
                let $s = $index.searcher(t.as_slice());
                $body
            }
            Tokens::U32(t) => {
                let $s = $index.searcher(t.as_slice());
                $body
            }
        }
    };
}
pub(crate) use with_searcher;

impl SpanIndex {
    /// Opens the index in `dir`: reads the header and maps the data files, checking each file's
    /// size against the header and the document table's order (a [`AttributionError::Format`]
    /// error naming the file otherwise). Contents are not hashed here (that reads every byte);
    /// [`SpanIndex::verify`] does.
    pub fn open(dir: &Path) -> Result<SpanIndex> {
        let header = SpanIndexHeader::read(dir)?;
        let tokens_path = dir.join(TOKENS_FILE);
        let tokens = if header.token_width == 2 {
            Tokens::U16(Mapped::open(&tokens_path, header.num_tokens)?)
        } else {
            Tokens::U32(Mapped::open(&tokens_path, header.num_tokens)?)
        };
        let sa = Mapped::open(&dir.join(SA_FILE), header.num_tokens)?;
        let docs_path = dir.join(DOCS_FILE);
        let docs: Mapped<u64> = Mapped::open(&docs_path, header.num_docs)?;
        // Each document starts after its separator, at least one position after the previous
        // document's start (empty documents are just their separator); `doc_of` relies on this
        // order for its binary search.
        let mut prev = 0u64;
        for (d, &start) in docs.as_slice().iter().enumerate() {
            if start < prev + 1 || start > header.num_tokens {
                return Err(AttributionError::Format {
                    path: docs_path,
                    reason: format!(
                        "document {d} starts at {start}, not in {}..={}",
                        prev + 1,
                        header.num_tokens
                    ),
                });
            }
            prev = start;
        }
        Ok(SpanIndex { dir: dir.to_owned(), header, tokens, sa, docs })
    }

    /// Checks every byte: each data file's SHA-256 against the header, every token below
    /// `vocab_size` or the separator, a separator right before each document and nowhere else,
    /// every suffix array entry a corpus position. Reads the whole index.
    pub fn verify(&self) -> Result<()> {
        let n = self.num_tokens();
        let sep = self.header.separator();
        let tokens_path = self.dir.join(TOKENS_FILE);
        let format = |path: &Path, reason: String| AttributionError::Format {
            path: path.to_owned(),
            reason,
        };
        let starts = self.docs.as_slice();
        let mut next_doc = 0usize;
        let mut scan = |text: &mut dyn Iterator<Item = u32>| -> Result<()> {
            for (pos, t) in text.enumerate() {
                let is_sep_pos = starts.get(next_doc).is_some_and(|&s| s == pos as u64 + 1);
                if is_sep_pos {
                    next_doc += 1;
                }
                if is_sep_pos != (t == sep) {
                    return Err(format(
                        &tokens_path,
                        format!("position {pos}: token {t}, separator expected: {is_sep_pos}"),
                    ));
                }
                if t != sep && u64::from(t) >= self.header.vocab_size {
                    return Err(format(
                        &tokens_path,
                        format!(
                            "position {pos}: token {t} >= vocab_size {}",
                            self.header.vocab_size
                        ),
                    ));
                }
            }
            Ok(())
        };
        match &self.tokens {
            Tokens::U16(t) => scan(&mut t.as_slice().iter().map(|&v| v.get()))?,
            Tokens::U32(t) => scan(&mut t.as_slice().iter().copied())?,
        }
        if let Some((rank, p)) =
            self.sa.as_slice().iter().enumerate().find(|(_, p)| **p as usize >= n)
        {
            return Err(format(
                &self.dir.join(SA_FILE),
                format!("rank {rank} holds position {p}, past the corpus end {n}"),
            ));
        }
        for name in DATA_FILES {
            let path = self.dir.join(name);
            let actual = sha256_file(&path)?;
            if self.header.sha256.get(name) != Some(&actual) {
                return Err(format(&path, format!("sha256 {actual} differs from the header's")));
            }
        }
        Ok(())
    }

    /// The header.
    pub fn header(&self) -> &SpanIndexHeader {
        &self.header
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Corpus positions (tokens plus one separator per document).
    pub fn num_tokens(&self) -> usize {
        self.sa.as_slice().len()
    }

    /// Documents.
    pub fn num_docs(&self) -> usize {
        self.docs.as_slice().len()
    }

    /// Whether the data files are viewed in place in their mappings (always so on
    /// little-endian targets); `false` means decoded private copies.
    pub fn is_zero_copy(&self) -> bool {
        let tokens = match &self.tokens {
            Tokens::U16(t) => t.is_mapped() || t.as_slice().is_empty(),
            Tokens::U32(t) => t.is_mapped() || t.as_slice().is_empty(),
        };
        tokens
            && (self.sa.is_mapped() || self.sa.as_slice().is_empty())
            && (self.docs.is_mapped() || self.docs.as_slice().is_empty())
    }

    pub(crate) fn searcher<'a, T: Token + LeInt>(&'a self, text: &'a [T]) -> Searcher<'a, T> {
        Searcher { text, sa: self.sa.as_slice(), vocab_size: self.header.vocab_size }
    }

    /// Occurrences of `query` in the corpus (`num_tokens` for the empty query; 0 for a query
    /// holding a token `>= vocab_size`, the separator included).
    pub fn count(&self, query: &[u32]) -> u64 {
        self.find(query).len() as u64
    }

    /// The suffix array rank range of the occurrences of `query` (empty when it does not occur).
    /// Binary search narrowing the range token by token: O(|query| · log num_tokens).
    pub fn find(&self, query: &[u32]) -> Range<usize> {
        with_searcher!(self, s => s.find(query))
    }

    /// The longest prefix of `query` that occurs in the corpus: its length and the rank range
    /// of its occurrences (the whole suffix array when not even the first token occurs).
    pub fn longest_prefix(&self, query: &[u32]) -> (usize, Range<usize>) {
        with_searcher!(self, s => s.longest_prefix(query))
    }

    /// Corpus positions of the first `limit` suffixes of the rank range `range` (clamped to the
    /// suffix array), in suffix array order: deterministic, and lexicographic by what follows.
    pub fn positions(&self, range: Range<usize>, limit: usize) -> Vec<usize> {
        let sa = self.sa.as_slice();
        let end = range.end.min(sa.len());
        let start = range.start.min(end);
        sa[start..end].iter().take(limit).map(|&p| p as usize).collect()
    }

    /// The document holding corpus position `pos` and the offset of `pos` in it; `None` for a
    /// separator or a position past the end. Binary search in the document table.
    pub fn doc_of(&self, pos: usize) -> Option<(usize, usize)> {
        if pos >= self.num_tokens() {
            return None;
        }
        let starts = self.docs.as_slice();
        let doc = starts.partition_point(|&s| s <= pos as u64).checked_sub(1)?;
        let end = starts.get(doc + 1).map_or(self.num_tokens() as u64, |&next| next - 1);
        let (start, p) = (starts[doc], pos as u64);
        (start <= p && p < end).then(|| (doc, (p - start) as usize))
    }

    /// The corpus positions of document `doc`'s tokens (`None` past the last document).
    pub fn doc_range(&self, doc: usize) -> Option<Range<usize>> {
        let starts = self.docs.as_slice();
        let start = *starts.get(doc)? as usize;
        let end = starts.get(doc + 1).map_or(self.num_tokens(), |&next| next as usize - 1);
        Some(start..end)
    }

    /// The tokens of document `doc` (`None` past the last document).
    pub fn doc_tokens(&self, doc: usize) -> Option<Vec<u32>> {
        let range = self.doc_range(doc)?;
        match &self.tokens {
            Tokens::U16(t) => t.as_slice().get(range).map(|s| s.iter().map(|&v| v.get()).collect()),
            Tokens::U32(t) => t.as_slice().get(range).map(<[u32]>::to_vec),
        }
    }
}

/// Hex SHA-256 of the file at `path`, streamed.
fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(AttributionError::io("opening", path))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(AttributionError::io("reading", path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex::encode(hash.finalize()))
}
