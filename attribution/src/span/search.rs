//! Suffix array search, generic over the stored token width.
//!
//! Every search is a sequence of *narrowing* steps, the infini-gram way: the suffixes whose
//! first `k` tokens equal `query[..k]` form one contiguous rank range of the suffix array, and
//! within it the suffixes are sorted by their token at offset `k` (a suffix that ends before
//! offset `k` sorts first, as libsais sorts a shorter suffix before its extensions). Two binary
//! searches on that token give the sub-range matching `query[..=k]`. The longest prefix of a
//! query that occurs is where narrowing first comes up empty; `find` is the case where it never
//! does.
//!
//! Why no match ever crosses a document boundary: a query token equal to the separator (or any
//! token `>= vocab_size`, a set the separator belongs to) ends narrowing before it is compared,
//! so every matched occurrence `corpus[p..p + n]` equals `n` real tokens and therefore contains
//! no separator. Documents are separated by one, so the occurrence lies inside one document.
//! Suffixes starting at a separator stay in the suffix array; they simply never match.
//!
//! Nothing here indexes out of bounds even on a corrupt index: positions are read with `get`
//! and a position past the end reads as "suffix ended", which only makes results wrong
//! (`SpanIndex::verify` detects such files), never panics.

use std::ops::Range;

/// A stored token type, widened to `u32` for comparison.
pub(crate) trait Token: Copy {
    /// The value as `u32`.
    fn get(self) -> u32;
}

impl Token for u16 {
    fn get(self) -> u32 {
        u32::from(self)
    }
}

impl Token for u32 {
    fn get(self) -> u32 {
        self
    }
}

/// A corpus and its suffix array.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Searcher<'a, T> {
    /// The corpus as stored.
    pub(crate) text: &'a [T],
    /// Suffix array: corpus positions in lexicographic order of their suffixes.
    pub(crate) sa: &'a [u32],
    /// Real tokens are below this; query tokens at or above it never match.
    pub(crate) vocab_size: u64,
}

impl<T: Token> Searcher<'_, T> {
    /// The token at offset `k` of the suffix starting at `pos`; `None` when the suffix has ended
    /// (which sorts before every token).
    #[inline]
    fn token_at(&self, pos: u32, k: usize) -> Option<u32> {
        self.text.get((pos as usize).wrapping_add(k)).map(|t| t.get())
    }

    /// Narrows `range` (all suffixes sharing their first `k` tokens) to those whose token at
    /// offset `k` is `tok`.
    #[inline]
    fn narrow(&self, range: Range<usize>, k: usize, tok: u32) -> Range<usize> {
        let Some(slice) = self.sa.get(range.clone()) else { return range.start..range.start };
        let lo = slice.partition_point(|&p| self.token_at(p, k) < Some(tok));
        let hi = lo + slice[lo..].partition_point(|&p| self.token_at(p, k) <= Some(tok));
        range.start + lo..range.start + hi
    }

    /// The longest prefix of `query` that occurs in the corpus: its length and its suffix
    /// array rank range (the whole array for the empty prefix).
    pub(crate) fn longest_prefix(&self, query: &[u32]) -> (usize, Range<usize>) {
        let mut range = 0..self.sa.len();
        for (k, &tok) in query.iter().enumerate() {
            if u64::from(tok) >= self.vocab_size {
                return (k, range);
            }
            let narrowed = if range.len() == 1 {
                // One candidate left: compare it directly instead of binary searching.
                match self.sa.get(range.start) {
                    Some(&p) if self.token_at(p, k) == Some(tok) => range.clone(),
                    _ => range.start..range.start,
                }
            } else {
                self.narrow(range.clone(), k, tok)
            };
            if narrowed.is_empty() {
                return (k, range);
            }
            range = narrowed;
        }
        (query.len(), range)
    }

    /// The rank range of the suffixes starting with `query` (empty when it does not occur; the
    /// whole array for the empty query).
    pub(crate) fn find(&self, query: &[u32]) -> Range<usize> {
        let (len, range) = self.longest_prefix(query);
        if len == query.len() { range } else { range.start..range.start }
    }
}
