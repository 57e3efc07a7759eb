//! The gradient attribution index on disk, damaged: its JSON header (mutated as a tree, so it
//! still parses and reaches the size checks) and its float files. Whatever opens must score a
//! query without panicking; the daemon scores every answer against it.

use lorad_attribution::grad::{GradIndex, GradIndexHeader, IndexedRecord, Scoring};
use lorad_fuzz::{Campaign, FileSet, JsonMutator, Mutator, Outcome, Rng};
use serde_json::Value;

const FILES: [&str; 3] = ["features.f32", "precond.f32", "norms.f32"];
const HEADER: &str = "grad-index.json";

fn exercise(dir: &std::path::Path) -> Outcome {
    let index = GradIndex::open(dir).map_err(|e| e.to_string())?;
    let dim = index.header().dim;
    let query: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
    for scoring in [
        Scoring::default(),
        Scoring { preconditioned: false, normalized: false, top_k: usize::MAX },
    ] {
        index.score(&query, scoring).map_err(|e| e.to_string())?;
    }
    for i in 0..index.len() {
        let _ = (index.features(i), index.norm(i, true), index.norm(i, false));
    }
    index.verify().map_err(|e| e.to_string())
}

#[test]
fn grad_index_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let built = tmp.path().join("index");
    let mut rng = Rng::new(5);
    let blocks = vec![4, 6];
    let features: Vec<Vec<f32>> = (0..9)
        .map(|_| (0..10).map(|_| (rng.below(2000) as f32 - 1000.0) / 500.0).collect())
        .collect();
    let header = GradIndexHeader {
        adapter: "ada".into(),
        adapter_hash: "00".repeat(32),
        datanet: "dn".into(),
        datanet_root: format!("0x{}", "11".repeat(32)),
        blocks,
        records: (0..9)
            .map(|i| IndexedRecord { id: format!("r{i}"), contributor: i % 3 })
            .collect(),
        contributors: vec!["alice".into(), "bob".into(), "carol".into()],
        ..GradIndexHeader::default()
    };
    GradIndex::build(&built, header, &features).expect("building the gradient index");
    let names = [HEADER, FILES[0], FILES[1], FILES[2]];
    let set = FileSet::copy_of(&built, &names, &tmp.path().join("work")).expect("index files");
    let header_json: Value = serde_json::from_slice(set.original(0)).expect("header JSON");

    let campaign = Campaign::new("grad-header", 300);
    let mut m = JsonMutator::new(
        campaign.seed(),
        ["blocks", "dim", "lambdas", "records", "contributor", "contributors", "probe", "k_in"],
    );
    let report = campaign.run(
        std::slice::from_ref(&header_json),
        |s| m.mutate(s),
        |h| {
            set.write_with(0, h.to_string().as_bytes())?;
            exercise(set.dir())
        },
    );
    assert!(report.rejected > 0, "{report:?}");

    for (k, file) in FILES.iter().enumerate() {
        let campaign = Campaign::new(&format!("grad-{file}"), 150);
        let mut m = Mutator::new(campaign.seed(), 1 << 16);
        let report = campaign.run(
            &[set.original(k + 1).to_vec()],
            |s| m.mutate(s),
            |bytes| {
                set.write_with(k + 1, bytes)?;
                exercise(set.dir())
            },
        );
        assert!(report.rejected > 0, "{file}: {report:?}");
    }
}
