//! The span attribution index on disk, damaged (`span-index.json`, `tokens.bin`, `sa.bin`,
//! `docs.bin`): the daemon opens it at start and queries it for every answer, and `open` checks
//! only sizes and the document table (hashing every byte is `verify`'s job). So whatever opens
//! must answer `find`, `count`, `doc_of` and `attribute` without panicking, on every query.

use lorad_attribution::span::{SpanIndex, SpanParams};
use lorad_fuzz::{Campaign, FileSet, JsonMutator, Mutator, Outcome, Rng};

const FILES: [&str; 4] = ["span-index.json", "tokens.bin", "sa.bin", "docs.bin"];
const VOCAB: usize = 50;

/// Documents with repeats, so spans of several lengths occur once and several times.
fn docs() -> Vec<Vec<u32>> {
    let mut rng = Rng::new(11);
    let mut docs: Vec<Vec<u32>> = (0..12)
        .map(|_| (0..20 + rng.below(40)).map(|_| rng.below(VOCAB) as u32).collect())
        .collect();
    let shared: Vec<u32> = (0..16).map(|i| (i * 3 % VOCAB) as u32).collect();
    docs[3].extend(&shared);
    docs[7].splice(0..0, shared.iter().copied());
    docs.push(Vec::new());
    docs
}

fn exercise(dir: &std::path::Path, queries: &[Vec<u32>]) -> Outcome {
    let index = SpanIndex::open(dir).map_err(|e| e.to_string())?;
    for q in queries {
        let found = index.find(q);
        let _ = index.count(q);
        for pos in [0, found.start, found.end, index.num_tokens(), usize::MAX] {
            let _ = index.doc_of(pos);
        }
        let params =
            SpanParams { min_len: 2, max_count: 100, density: 1.0, ..SpanParams::default() };
        let _ = index.attribute(q, &params);
    }
    index.verify().map_err(|e| e.to_string())
}

#[test]
fn span_index_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let built = tmp.path().join("index");
    let docs = docs();
    SpanIndex::build(&docs, VOCAB, &built).expect("building the span index");
    let mut queries: Vec<Vec<u32>> =
        vec![docs[3][10..30].to_vec(), docs[0][..8].to_vec(), vec![], vec![49; 3]];
    queries.push(docs[7].clone());
    let set = FileSet::copy_of(&built, &FILES, &tmp.path().join("work")).expect("index files");
    exercise(&built, &queries).expect("the built index answers");
    // The header as a tree too, so that mutated headers parse and reach the size checks.
    let header: serde_json::Value = serde_json::from_slice(set.original(0)).expect("header JSON");
    let campaign = Campaign::new("span-header-json", 250);
    let mut m = JsonMutator::new(
        campaign.seed(),
        ["num_tokens", "num_docs", "token_width", "vocab_size", "format_version", "separator"],
    );
    let report = campaign.run(
        std::slice::from_ref(&header),
        |s| m.mutate(s),
        |h| {
            set.write_with(0, h.to_string().as_bytes())?;
            exercise(set.dir(), &queries)
        },
    );
    assert!(report.rejected > 0, "{report:?}");
    for (k, file) in FILES.iter().enumerate() {
        let campaign = Campaign::new(&format!("span-{file}"), 250);
        let mut m = Mutator::new(campaign.seed(), 1 << 20).with_dictionary([
            &br#""num_tokens":"#[..],
            br#""num_docs":"#,
            br#""token_width":"#,
            b"4294967295",
        ]);
        let report = campaign.run(
            &[set.original(k).to_vec()],
            |s| m.mutate(s),
            |bytes| {
                set.write_with(k, bytes)?;
                exercise(set.dir(), &queries)
            },
        );
        assert!(report.rejected > 0, "{file}: {report:?}");
    }
}
