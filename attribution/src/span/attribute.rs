//! OLMoTrace-style span attribution: the maximal spans of an answer that occur verbatim, and
//! rarely, in the corpus, the documents they occur in, and per-document weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::index::{SpanIndex, Tokens, with_searcher};
use crate::{AttributionError, Result};

/// Knobs of [`SpanIndex::attribute`]. Defaults follow OLMoTrace (Liu et al., 2025): spans of at
/// least 8 tokens, occurring at most 10 times, at most `ceil(0.05 × answer length)` of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanParams {
    /// Shortest span kept, in tokens (0 is treated as 1).
    pub min_len: usize,
    /// Most occurrences a span may have in the corpus: frequent spans are boilerplate, not
    /// evidence of any one document.
    pub max_count: u64,
    /// At most `ceil(density × answer length)` spans are kept, longest first (ties: fewer
    /// occurrences, then earlier start).
    pub density: f64,
    /// Occurrences listed per span: the first ones in suffix array order (deterministic).
    pub max_docs_per_span: usize,
    /// If given (one flag per answer token, computed by the caller from its tokenizer), spans
    /// only start where it is `true`, e.g. at word starts.
    pub word_start: Option<Vec<bool>>,
}

impl Default for SpanParams {
    fn default() -> Self {
        SpanParams {
            min_len: 8,
            max_count: 10,
            density: 0.05,
            max_docs_per_span: 10,
            word_start: None,
        }
    }
}

impl SpanParams {
    /// The density cap for an answer of `answer_len` tokens: `ceil(density × answer_len)`,
    /// computed with a 1e-9 tolerance so that products like 0.07 × 100 = 7.000000000000001 do
    /// not round up to an extra span.
    pub fn max_spans(&self, answer_len: usize) -> usize {
        let x = self.density * answer_len as f64 - 1e-9;
        if x.is_finite() && x > 0.0 { x.ceil() as usize } else { 0 }
    }
}

/// One occurrence of a span in the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DocHit {
    /// Document index (== Datanet record index).
    pub doc: u32,
    /// Offset of the span's first token in the document, in tokens.
    pub offset: u32,
}

/// A maximal span of the answer found verbatim in the corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// First answer token of the span.
    pub start: usize,
    /// One past its last answer token.
    pub end: usize,
    /// Occurrences in the corpus.
    pub count: u64,
    /// `len × ln(1 + num_tokens / count)`, split over the span's distinct documents.
    pub weight: f64,
    /// Occurrences listed (at most `max_docs_per_span`, chosen in suffix array order), sorted
    /// by document then offset.
    pub docs: Vec<DocHit>,
}

/// The result of [`SpanIndex::attribute`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanAttribution {
    /// Kept spans, by start.
    pub spans: Vec<Span>,
    /// `(document, weight)`: each span's weight split evenly over its distinct listed
    /// documents, summed per document; by weight descending, then document ascending.
    pub doc_weights: Vec<(u32, f64)>,
}

/// A span before its occurrences are listed.
#[derive(Debug)]
struct Candidate {
    start: usize,
    len: usize,
    ranks: std::ops::Range<usize>,
}

impl SpanIndex {
    /// Attributes `answer` to the corpus documents it repeats verbatim (OLMoTrace's span
    /// matching).
    ///
    /// For each allowed start `i`, the longest prefix of `answer[i..]` occurring in the corpus
    /// (length `l`, `c` occurrences) is a candidate if `l >= min_len` and `c <= max_count`. A
    /// candidate inside the previous kept one (`i + l` not past its end) is dropped, so only
    /// maximal spans remain. The density cap keeps the longest; each kept span lists its first
    /// `max_docs_per_span` occurrences in suffix array order.
    ///
    /// A span's weight is `len × ln(1 + num_tokens / count)`: longer verbatim overlaps are
    /// stronger evidence of copying, and rarer ones point more specifically at their documents
    /// (an IDF-style factor, always positive, that falls towards 0 for spans found everywhere).
    ///
    /// Deterministic: the same index, answer and params give identical output. Errors only on
    /// invalid params (a `word_start` of the wrong length, a negative or non-finite density).
    pub fn attribute(&self, answer: &[u32], params: &SpanParams) -> Result<SpanAttribution> {
        if let Some(ws) = &params.word_start
            && ws.len() != answer.len()
        {
            return Err(AttributionError::InvalidInput(format!(
                "word_start has {} flags for an answer of {} tokens",
                ws.len(),
                answer.len()
            )));
        }
        if !(params.density.is_finite() && params.density >= 0.0) {
            return Err(AttributionError::InvalidInput(format!(
                "density {} is not a finite number >= 0",
                params.density
            )));
        }
        let mut kept = with_searcher!(self, s => {
            maximal_spans(answer, params, |q| s.longest_prefix(q))
        });
        kept.sort_by(|a, b| {
            b.len.cmp(&a.len).then(a.ranks.len().cmp(&b.ranks.len())).then(a.start.cmp(&b.start))
        });
        kept.truncate(params.max_spans(answer.len()));
        kept.sort_by_key(|c| c.start);

        let n = self.num_tokens() as f64;
        let mut spans = Vec::with_capacity(kept.len());
        let mut per_doc: BTreeMap<u32, f64> = BTreeMap::new();
        for c in kept {
            let mut docs: Vec<DocHit> = self
                .positions(c.ranks.clone(), params.max_docs_per_span)
                .into_iter()
                .filter_map(|p| self.doc_of(p))
                .filter_map(|(doc, offset)| {
                    Some(DocHit {
                        doc: u32::try_from(doc).ok()?,
                        offset: u32::try_from(offset).ok()?,
                    })
                })
                .collect();
            docs.sort_unstable();
            let count = c.ranks.len() as u64;
            let weight = c.len as f64 * (1.0 + n / count as f64).ln();
            let mut distinct: Vec<u32> = docs.iter().map(|h| h.doc).collect();
            distinct.dedup();
            for &d in &distinct {
                *per_doc.entry(d).or_insert(0.0) += weight / distinct.len() as f64;
            }
            spans.push(Span { start: c.start, end: c.start + c.len, count, weight, docs });
        }
        let mut doc_weights: Vec<(u32, f64)> = per_doc.into_iter().collect();
        doc_weights.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(SpanAttribution { spans, doc_weights })
    }
}

/// The maximal candidate spans of `answer`, by start, with `longest_prefix` the index's query.
fn maximal_spans(
    answer: &[u32],
    params: &SpanParams,
    longest_prefix: impl Fn(&[u32]) -> (usize, std::ops::Range<usize>),
) -> Vec<Candidate> {
    let min_len = params.min_len.max(1);
    let mut kept: Vec<Candidate> = Vec::new();
    for i in 0..answer.len() {
        if answer.len() - i < min_len {
            // No span this short can reach min_len; nor can any later one.
            break;
        }
        if params.word_start.as_ref().is_some_and(|ws| !ws.get(i).copied().unwrap_or(false)) {
            continue;
        }
        let (len, ranks) = longest_prefix(&answer[i..]);
        if len < min_len || ranks.len() as u64 > params.max_count {
            continue;
        }
        // Ends `i + l_i` never decrease with `i` (a match's suffix is a match), so being inside
        // the previous kept span means being inside every earlier one.
        if kept.last().is_some_and(|prev| i + len <= prev.start + prev.len) {
            continue;
        }
        kept.push(Candidate { start: i, len, ranks });
    }
    kept
}
