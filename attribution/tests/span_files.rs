//! The span index's files: size per token, determinism, the empty corpus, and every kind of
//! corruption giving a typed error (never a panic).

use std::path::{Path, PathBuf};

use lorad_attribution::AttributionError;
use lorad_attribution::span::{SpanIndex, SpanParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_docs(seed: u64, total: usize, vocab: u32) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut docs = Vec::new();
    let mut n = 0;
    while n < total {
        let len = rng.random_range(200..2000).min(total - n);
        // Skewed towards small ids, as real token frequencies are.
        docs.push(
            (0..len).map(|_| rng.random_range(0..vocab).min(rng.random_range(0..vocab))).collect(),
        );
        n += len;
    }
    docs
}

fn build(docs: &[Vec<u32>], vocab: usize, dir: &Path) -> SpanIndex {
    SpanIndex::build(docs.iter().map(Vec::as_slice), vocab, dir).expect("build");
    SpanIndex::open(dir).expect("open")
}

/// Copies the index at `src` to a fresh directory next to it.
fn copy_index(src: &Path, name: &str) -> PathBuf {
    let dst = src.with_file_name(name);
    std::fs::create_dir(&dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
    }
    dst
}

fn format_error_names(r: Result<impl std::fmt::Debug, AttributionError>, file: &str) {
    match r {
        Err(AttributionError::Format { path, reason }) => {
            assert_eq!(path.file_name().and_then(|f| f.to_str()), Some(file), "{reason}");
        }
        other => panic!("expected a Format error naming {file}, got {other:?}"),
    }
}

#[test]
fn a_million_u16_tokens_take_at_most_7_bytes_each() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let docs = random_docs(11, 1_000_000, 49_152);
    let dir = tmp.path().join("idx");
    let stats = SpanIndex::build(docs.iter().map(Vec::as_slice), 49_152, &dir).expect("build");
    assert_eq!(stats.token_width, 2);
    assert_eq!(stats.num_docs, docs.len() as u64);
    assert_eq!(stats.num_tokens, 1_000_000 + docs.len() as u64);
    let on_disk: u64 = std::fs::read_dir(&dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    assert_eq!(stats.index_bytes, on_disk);
    assert!(stats.bytes_per_token <= 7.0, "{} bytes/token", stats.bytes_per_token);
    assert!(stats.bytes_per_token >= 6.0, "{} bytes/token", stats.bytes_per_token);
    let index = SpanIndex::open(&dir).expect("open");
    index.verify().expect("verify");
    // A passage of document 3 is found there.
    let q = &docs[3][100..140];
    let (len, range) = index.longest_prefix(q);
    assert_eq!(len, 40);
    let hits: Vec<_> =
        index.positions(range, 10).into_iter().filter_map(|p| index.doc_of(p)).collect();
    assert!(hits.contains(&(3, 100)), "{hits:?}");
    assert_eq!(index.doc_tokens(3).as_deref(), Some(docs[3].as_slice()));
}

#[test]
fn builds_are_deterministic_and_u32_indexes_take_8_bytes_per_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let docs = random_docs(12, 20_000, 100_000);
    let stats = SpanIndex::build(docs.iter().map(Vec::as_slice), 100_000, &tmp.path().join("a"))
        .expect("build");
    assert!((8.0..9.0).contains(&stats.bytes_per_token), "{stats:?}");
    let a = SpanIndex::open(&tmp.path().join("a")).expect("open");
    let b = build(&docs, 100_000, &tmp.path().join("b"));
    assert_eq!(a.header(), b.header());
    assert_eq!(a.header().token_width, 4);
    let answer: Vec<u32> = docs[2][10..60].iter().chain(&docs[5][0..30]).copied().collect();
    let params = SpanParams::default();
    let ra = a.attribute(&answer, &params).expect("attribute");
    assert_eq!(ra, b.attribute(&answer, &params).expect("attribute"));
    assert_eq!(ra.spans.len(), 2, "{ra:?}");
    assert_eq!((ra.spans[0].start, ra.spans[0].end), (0, 50));
    assert_eq!((ra.spans[1].start, ra.spans[1].end), (50, 80));
    assert!(ra.spans[0].docs.iter().any(|h| (h.doc, h.offset) == (2, 10)));
    assert_eq!(ra.doc_weights[0].0, 2, "the longer span's document weighs most");
    let json = serde_json::to_value(&ra).expect("json");
    assert!(json["spans"][0]["docs"][0]["doc"].is_u64());
    assert!(json["doc_weights"][0][1].is_f64());
}

#[test]
fn empty_corpus_and_empty_documents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let none: Vec<Vec<u32>> = Vec::new();
    let index = build(&none, 10, &tmp.path().join("none"));
    index.verify().expect("verify");
    assert_eq!((index.num_tokens(), index.num_docs()), (0, 0));
    assert_eq!(index.count(&[1, 2]), 0);
    assert_eq!(index.longest_prefix(&[1, 2]).0, 0);
    assert_eq!(index.doc_of(0), None);
    let r = index.attribute(&[1; 40], &SpanParams { min_len: 1, ..SpanParams::default() });
    assert!(r.expect("attribute").spans.is_empty());

    let empties = vec![vec![], vec![], vec![3, 4], vec![]];
    let index = build(&empties, 10, &tmp.path().join("empties"));
    index.verify().expect("verify");
    assert_eq!(index.num_tokens(), 6);
    assert_eq!(index.count(&[3, 4]), 1);
    assert_eq!(index.doc_of(3), Some((2, 0)));
    assert_eq!(index.doc_tokens(0).as_deref(), Some(&[][..]));
    assert_eq!(index.doc_tokens(4), None);
}

#[test]
fn bad_build_input_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let docs = [vec![1, 2, 3], vec![4, 10]];
    let r = SpanIndex::build(docs.iter().map(Vec::as_slice), 10, &tmp.path().join("a"));
    assert!(
        matches!(r, Err(AttributionError::InvalidInput(ref m)) if m.contains("document 1 token 1")),
        "{r:?}"
    );
    assert!(!tmp.path().join("a").exists());
    let sep = [vec![0xFFFF]];
    let r = SpanIndex::build(sep.iter().map(Vec::as_slice), 65_535, &tmp.path().join("b"));
    assert!(matches!(r, Err(AttributionError::InvalidInput(_))), "{r:?}");
    let r = SpanIndex::build(docs.iter().map(Vec::as_slice), 0, &tmp.path().join("c"));
    assert!(matches!(r, Err(AttributionError::InvalidInput(_))), "{r:?}");
    let ok = [vec![1, 2, 3]];
    SpanIndex::build(ok.iter().map(Vec::as_slice), 10, &tmp.path().join("d")).expect("build");
    let r = SpanIndex::build(ok.iter().map(Vec::as_slice), 10, &tmp.path().join("d"));
    assert!(
        matches!(r, Err(AttributionError::InvalidInput(ref m)) if m.contains("exists")),
        "{r:?}"
    );
    // Nothing but the index is left in the parent (no temporary directories).
    let names: Vec<_> =
        std::fs::read_dir(tmp.path()).expect("ls").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("d")]);
}

#[test]
fn bad_params_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let index = build(&[vec![1, 2, 3]], 10, &tmp.path().join("a"));
    let r = index
        .attribute(&[1, 2], &SpanParams { word_start: Some(vec![true]), ..SpanParams::default() });
    assert!(matches!(r, Err(AttributionError::InvalidInput(_))), "{r:?}");
    for density in [f64::NAN, -0.1, f64::INFINITY] {
        let r = index.attribute(&[1, 2], &SpanParams { density, ..SpanParams::default() });
        assert!(matches!(r, Err(AttributionError::InvalidInput(_))), "{r:?}");
    }
    let p = SpanParams::default();
    assert_eq!((p.min_len, p.max_count, p.density, p.max_docs_per_span), (8, 10, 0.05, 10));
    assert_eq!(p.max_spans(256), 13);
    assert_eq!(p.max_spans(20), 1);
    assert_eq!(p.max_spans(0), 0);
    assert_eq!(SpanParams { density: 0.07, ..p }.max_spans(100), 7);
}

#[test]
fn corrupt_files_give_typed_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let docs = random_docs(13, 5_000, 300);
    let good = tmp.path().join("good");
    build(&docs, 300, &good).verify().expect("verify");

    // Truncated suffix array: open names sa.bin.
    let d = copy_index(&good, "truncated");
    let sa = d.join("sa.bin");
    let len = std::fs::metadata(&sa).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sa)
        .expect("open")
        .set_len(len - 4)
        .expect("truncate");
    format_error_names(SpanIndex::open(&d), "sa.bin");

    // Wrong header version, and a header whose width contradicts its vocabulary.
    for (name, from, to) in [
        ("version", "\"format_version\": 1", "\"format_version\": 2"),
        ("width", "\"token_width\": 2", "\"token_width\": 4"),
        ("garbage", "{", "["),
    ] {
        let d = copy_index(&good, name);
        let hp = d.join("span-index.json");
        let text = std::fs::read_to_string(&hp).expect("read");
        assert!(text.contains(from));
        std::fs::write(&hp, text.replacen(from, to, 1)).expect("write");
        format_error_names(SpanIndex::open(&d), "span-index.json");
    }

    // A missing file is an I/O error naming it.
    let d = copy_index(&good, "missing");
    std::fs::remove_file(d.join("docs.bin")).expect("rm");
    match SpanIndex::open(&d) {
        Err(AttributionError::Io { path, .. }) => assert!(path.ends_with("docs.bin")),
        other => panic!("{other:?}"),
    }

    // A document table out of order.
    let d = copy_index(&good, "docs");
    let mut bytes = std::fs::read(d.join("docs.bin")).expect("read");
    bytes[8..16].copy_from_slice(&0u64.to_le_bytes());
    std::fs::write(d.join("docs.bin"), &bytes).expect("write");
    format_error_names(SpanIndex::open(&d), "docs.bin");

    // A token out of range opens (sizes are right) but fails verify, and queries do not panic.
    let d = copy_index(&good, "token");
    let mut bytes = std::fs::read(d.join("tokens.bin")).expect("read");
    bytes[10..12].copy_from_slice(&5000u16.to_le_bytes());
    std::fs::write(d.join("tokens.bin"), &bytes).expect("write");
    let index = SpanIndex::open(&d).expect("open");
    format_error_names(index.verify(), "tokens.bin");

    // A suffix array entry past the end, and one merely swapped (only the hash notices).
    let d = copy_index(&good, "sa-range");
    let mut bytes = std::fs::read(d.join("sa.bin")).expect("read");
    bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(d.join("sa.bin"), &bytes).expect("write");
    let index = SpanIndex::open(&d).expect("open");
    format_error_names(index.verify(), "sa.bin");
    for doc in &docs[..3] {
        let _ = index.count(&doc[..20]);
        let _ =
            index.attribute(doc, &SpanParams { min_len: 1, density: 1.0, ..SpanParams::default() });
    }
    let d = copy_index(&good, "sa-swap");
    let mut bytes = std::fs::read(d.join("sa.bin")).expect("read");
    let (a, b) = (bytes[40..44].to_vec(), bytes[400..404].to_vec());
    bytes[40..44].copy_from_slice(&b);
    bytes[400..404].copy_from_slice(&a);
    std::fs::write(d.join("sa.bin"), &bytes).expect("write");
    let index = SpanIndex::open(&d).expect("open");
    match index.verify() {
        Err(AttributionError::Format { path, reason }) => {
            assert!(path.ends_with("sa.bin") && reason.contains("sha256"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
