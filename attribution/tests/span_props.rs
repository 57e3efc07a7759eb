//! Property tests of the span index against brute force over many random corpora: small
//! alphabets so that repeats (and long matches) are frequent, empty documents, both token widths
//! (including tokens next to the u16 separator value), and queries that straddle documents.

use std::collections::{BTreeMap, BTreeSet};

use lorad_attribution::span::{SpanIndex, SpanParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A random corpus: its documents and the vocabulary size.
struct Corpus {
    docs: Vec<Vec<u32>>,
    vocab: usize,
}

impl Corpus {
    /// Every token of every document, without separators (queries drawn from it may straddle
    /// document boundaries, which must then not be found unless they also occur inside one).
    fn flat(&self) -> Vec<u32> {
        self.docs.iter().flatten().copied().collect()
    }

    /// Brute force: every `(doc, offset)` where `q` occurs inside one document.
    fn occurrences(&self, q: &[u32]) -> BTreeSet<(usize, usize)> {
        let mut out = BTreeSet::new();
        for (d, doc) in self.docs.iter().enumerate() {
            if q.is_empty() || q.len() > doc.len() {
                continue;
            }
            for o in 0..=doc.len() - q.len() {
                if doc[o..o + q.len()] == *q {
                    out.insert((d, o));
                }
            }
        }
        out
    }

    /// Brute force: the longest `l` with `q[..l]` occurring, and the occurrences of `q[..l]`.
    fn longest_prefix(&self, q: &[u32]) -> (usize, BTreeSet<(usize, usize)>) {
        let mut best = 0;
        let mut at = BTreeSet::new();
        for (d, doc) in self.docs.iter().enumerate() {
            for o in 0..doc.len() {
                let l = doc[o..].iter().zip(q).take_while(|(a, b)| a == b).count();
                if l > best {
                    best = l;
                    at.clear();
                }
                if l == best && l > 0 {
                    at.insert((d, o));
                }
            }
        }
        (best, at)
    }

    /// Brute force: corpus position → `(doc, offset)` (None at separators), as the index lays
    /// the corpus out (a separator before every document).
    fn layout(&self) -> Vec<Option<(usize, usize)>> {
        let mut out = Vec::new();
        for (d, doc) in self.docs.iter().enumerate() {
            out.push(None);
            out.extend((0..doc.len()).map(|o| Some((d, o))));
        }
        out
    }
}

/// Tokens a corpus of alphabet `k` draws from: `0..k`, or for wide / near-separator cases a few
/// values from the top of the vocabulary.
fn alphabet(rng: &mut ChaCha8Rng, vocab: usize) -> Vec<u32> {
    let k = rng.random_range(2..=6);
    let top = vocab as u32;
    match rng.random_range(0..3) {
        0 => (0..k).collect(),
        1 => (0..k).map(|i| top - 1 - i).collect(),
        _ => (0..k).map(|_| rng.random_range(0..top)).collect(),
    }
}

fn random_corpus(rng: &mut ChaCha8Rng, vocab: usize) -> (Corpus, Vec<u32>) {
    let letters = alphabet(rng, vocab);
    let total = match rng.random_range(0..4) {
        0 => rng.random_range(1..20),
        1 => rng.random_range(1..200),
        _ => rng.random_range(1..2000),
    };
    let ndocs = rng.random_range(1..=30.min(total + 1));
    let mut docs = vec![Vec::new(); ndocs];
    for _ in 0..total {
        let d = rng.random_range(0..ndocs);
        let t = letters[rng.random_range(0..letters.len())];
        docs[d].push(t);
    }
    // Plant a repeated passage so some matches are long.
    if rng.random_bool(0.5) && total > 40 {
        let flat: Vec<u32> = docs.iter().flatten().copied().collect();
        let len = rng.random_range(10..40).min(flat.len());
        let s = rng.random_range(0..=flat.len() - len);
        let passage = flat[s..s + len].to_vec();
        for _ in 0..rng.random_range(1..4) {
            let d = rng.random_range(0..ndocs);
            let at = rng.random_range(0..=docs[d].len());
            docs[d].splice(at..at, passage.iter().copied());
        }
    }
    (Corpus { docs, vocab }, letters)
}

/// A query: a piece of the flattened corpus (maybe straddling documents, maybe mutated), random
/// letters, or with an out-of-vocabulary token.
fn random_query(rng: &mut ChaCha8Rng, c: &Corpus, letters: &[u32]) -> Vec<u32> {
    let flat = c.flat();
    let mut q: Vec<u32> = if rng.random_bool(0.7) && !flat.is_empty() {
        let s = rng.random_range(0..flat.len());
        let len = rng.random_range(0..=(flat.len() - s).min(60));
        flat[s..s + len].to_vec()
    } else {
        (0..rng.random_range(0..12)).map(|_| letters[rng.random_range(0..letters.len())]).collect()
    };
    if !q.is_empty() && rng.random_bool(0.2) {
        let i = rng.random_range(0..q.len());
        q[i] = letters[rng.random_range(0..letters.len())];
    }
    if !q.is_empty() && rng.random_bool(0.05) {
        let i = rng.random_range(0..q.len());
        // Out of vocabulary, the u16 separator, the u32 separator: never found.
        q[i] = [c.vocab as u32, 0xFFFF, u32::MAX][rng.random_range(0..3)];
    }
    q
}

fn check_queries(rng: &mut ChaCha8Rng, c: &Corpus, letters: &[u32], index: &SpanIndex, ctx: &str) {
    let layout = c.layout();
    assert_eq!(index.num_tokens(), layout.len(), "{ctx}");
    assert_eq!(index.num_docs(), c.docs.len(), "{ctx}");
    for (pos, want) in layout.iter().enumerate() {
        assert_eq!(index.doc_of(pos), *want, "{ctx}: doc_of({pos})");
    }
    assert_eq!(index.doc_of(layout.len()), None, "{ctx}");
    let hits = |range: std::ops::Range<usize>| -> BTreeSet<(usize, usize)> {
        let pos = index.positions(range.clone(), usize::MAX);
        assert_eq!(pos.len(), range.len(), "{ctx}");
        pos.into_iter().map(|p| index.doc_of(p).expect("a match starts inside a doc")).collect()
    };
    for _ in 0..40 {
        let q = random_query(rng, c, letters);
        let want = c.occurrences(&q);
        if q.is_empty() {
            assert_eq!(index.count(&q), layout.len() as u64, "{ctx}: empty query");
            continue;
        }
        assert_eq!(index.count(&q), want.len() as u64, "{ctx}: count {q:?}");
        let range = index.find(&q);
        assert_eq!(range.len(), want.len(), "{ctx}: find {q:?}");
        assert_eq!(hits(range.clone()), want, "{ctx}: positions {q:?}");
        let limited = index.positions(range.clone(), 2);
        assert_eq!(
            limited,
            index.positions(range, usize::MAX).into_iter().take(2).collect::<Vec<_>>()
        );

        let (len, range) = index.longest_prefix(&q);
        let (blen, bat) = c.longest_prefix(&q);
        assert_eq!(len, blen, "{ctx}: longest_prefix {q:?}");
        if len > 0 {
            assert_eq!(hits(range), bat, "{ctx}: longest_prefix occurrences {q:?}");
        }
    }
}

/// Brute-force span attribution by the documented definition.
/// A brute-force span: start, end, count, occurrences `(doc, offset)`.
type BruteSpan = (usize, usize, u64, BTreeSet<(usize, usize)>);

fn brute_attribute(c: &Corpus, answer: &[u32], p: &SpanParams) -> Vec<BruteSpan> {
    let min_len = p.min_len.max(1);
    let mut kept: Vec<BruteSpan> = Vec::new();
    for i in 0..answer.len() {
        if p.word_start.as_ref().is_some_and(|w| !w[i]) {
            continue;
        }
        let (l, at) = c.longest_prefix(&answer[i..]);
        let count = at.len() as u64;
        if l < min_len || count > p.max_count {
            continue;
        }
        if let Some(prev) = kept.last()
            && i >= prev.0
            && i + l <= prev.1
        {
            continue;
        }
        kept.push((i, i + l, count, at));
    }
    kept.sort_by(|a, b| (b.1 - b.0).cmp(&(a.1 - a.0)).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    let cap = (p.density * answer.len() as f64 - 1e-9).ceil().max(0.0) as usize;
    kept.truncate(cap);
    kept.sort_by_key(|k| k.0);
    kept
}

/// Returns the number of spans found (so the caller can check the cases were not vacuous).
fn check_attribute(
    rng: &mut ChaCha8Rng,
    c: &Corpus,
    letters: &[u32],
    index: &SpanIndex,
    ctx: &str,
) -> usize {
    let flat = c.flat();
    let mut found = 0;
    for _ in 0..6 {
        let mut answer = Vec::new();
        for _ in 0..rng.random_range(0..5) {
            if rng.random_bool(0.6) && !flat.is_empty() {
                let s = rng.random_range(0..flat.len());
                let len = rng.random_range(1..=(flat.len() - s).min(40));
                answer.extend_from_slice(&flat[s..s + len]);
            } else {
                answer.extend(
                    (0..rng.random_range(1..10))
                        .map(|_| letters[rng.random_range(0..letters.len())]),
                );
            }
        }
        let params = SpanParams {
            min_len: rng.random_range(0..7),
            max_count: rng.random_range(1..25),
            density: [0.05, 0.1, 0.3, 1.0, 0.0][rng.random_range(0..5)],
            max_docs_per_span: rng.random_range(1..15),
            word_start: rng
                .random_bool(0.3)
                .then(|| (0..answer.len()).map(|_| rng.random_bool(0.6)).collect()),
        };
        let got = index.attribute(&answer, &params).expect("attribute");
        let want = brute_attribute(c, &answer, &params);
        let ctx = format!("{ctx}: answer {answer:?} params {params:?}");
        assert_eq!(got.spans.len(), want.len(), "{ctx}: {:?}", got.spans);
        found += want.len();
        let n = layout_len(c) as f64;
        let mut weights: BTreeMap<u32, f64> = BTreeMap::new();
        for (s, (start, end, count, at)) in got.spans.iter().zip(&want) {
            assert_eq!((s.start, s.end, s.count), (*start, *end, *count), "{ctx}");
            let listed: BTreeSet<(usize, usize)> =
                s.docs.iter().map(|h| (h.doc as usize, h.offset as usize)).collect();
            assert_eq!(listed.len(), s.docs.len(), "{ctx}: duplicate hits");
            assert_eq!(listed.len(), at.len().min(params.max_docs_per_span), "{ctx}");
            assert!(listed.is_subset(at), "{ctx}: {listed:?} not in {at:?}");
            let w = (end - start) as f64 * (1.0 + n / *count as f64).ln();
            assert!((s.weight - w).abs() < 1e-9 * w, "{ctx}");
            let docs: BTreeSet<u32> = s.docs.iter().map(|h| h.doc).collect();
            for d in &docs {
                *weights.entry(*d).or_default() += w / docs.len() as f64;
            }
        }
        assert_eq!(got.doc_weights.len(), weights.len(), "{ctx}");
        for pair in got.doc_weights.windows(2) {
            assert!(pair[0].1 > pair[1].1 || (pair[0].1 == pair[1].1 && pair[0].0 < pair[1].0));
        }
        for (d, w) in &got.doc_weights {
            assert!((weights[d] - w).abs() < 1e-9 * w.max(1.0), "{ctx}: doc {d}");
        }
        // Deterministic.
        assert_eq!(index.attribute(&answer, &params).expect("again"), got);
    }
    found
}

fn layout_len(c: &Corpus) -> usize {
    c.docs.iter().map(|d| d.len() + 1).sum()
}

fn run_cases(seed: u64, cases: usize, vocab: usize, want_width: u32) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut spans = 0;
    for case in 0..cases {
        let (c, letters) = random_corpus(&mut rng, vocab);
        let dir = tmp.path().join(format!("idx-{case}"));
        let stats = SpanIndex::build(c.docs.iter().map(Vec::as_slice), vocab, &dir).expect("build");
        assert_eq!(stats.token_width, want_width);
        let index = SpanIndex::open(&dir).expect("open");
        index.verify().expect("verify");
        assert!(index.is_zero_copy());
        let ctx = format!("seed {seed} case {case} vocab {vocab}");
        check_queries(&mut rng, &c, &letters, &index, &ctx);
        spans += check_attribute(&mut rng, &c, &letters, &index, &ctx);
    }
    assert!(spans >= cases, "only {spans} spans in {cases} cases: too few to test anything");
}

#[test]
fn u16_small_vocab_matches_brute_force() {
    run_cases(1, 150, 64, 2);
}

#[test]
fn u16_widest_vocab_matches_brute_force() {
    // 65534 is the largest vocabulary stored 2 bytes wide; tokens 65533.. sit next to the
    // separator 0xFFFF.
    run_cases(2, 60, 65534, 2);
}

#[test]
fn u32_vocab_matches_brute_force() {
    run_cases(3, 80, 70_000, 4);
}

#[test]
fn u32_vocab_at_the_u16_boundary_matches_brute_force() {
    // 65535 is the smallest vocabulary stored 4 bytes wide: token 65534 is real, and the
    // separator is u32::MAX.
    run_cases(4, 30, 65_535, 4);
}
