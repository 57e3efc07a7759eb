//! A gradient index whose header was damaged fails to open with an error naming the header,
//! instead of opening and then panicking when an answer is scored against it.

use lorad_attribution::AttributionError;
use lorad_attribution::grad::{GradIndex, GradIndexHeader, IndexedRecord, Scoring};
use serde_json::{Value, json};

fn build(dir: &std::path::Path) {
    let features: Vec<Vec<f32>> =
        (0..4).map(|i| (0..5).map(|j| ((i * 5 + j) as f32 * 0.7).sin()).collect()).collect();
    let header = GradIndexHeader {
        adapter: "ada".into(),
        adapter_hash: "00".repeat(32),
        datanet: "dn".into(),
        datanet_root: format!("0x{}", "11".repeat(32)),
        blocks: vec![2, 3],
        records: (0..4)
            .map(|i| IndexedRecord { id: format!("r{i}"), contributor: i % 2 })
            .collect(),
        contributors: vec!["alice".into(), "bob".into()],
        ..GradIndexHeader::default()
    };
    GradIndex::build(dir, header, &features).unwrap();
}

fn open_with(
    dir: &std::path::Path,
    edit: impl Fn(&mut Value),
) -> Result<GradIndex, AttributionError> {
    let path = dir.join("grad-index.json");
    let mut header: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut header);
    std::fs::write(&path, header.to_string()).unwrap();
    GradIndex::open(dir)
}

#[test]
fn damaged_headers_fail_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    build(&dir);
    let index = GradIndex::open(&dir).unwrap();
    index.score(&[0.5; 5], Scoring::default()).unwrap();

    let e = open_with(&dir, |h| h["records"][2]["contributor"] = json!(9)).unwrap_err();
    assert!(e.to_string().contains(r#"record "r2" names contributor 9 of 2"#), "{e}");
    let e = open_with(&dir, |h| {
        h["records"][2]["contributor"] = json!(0);
        h["blocks"] = json!([u64::MAX, 6]);
    })
    .unwrap_err();
    assert!(e.to_string().contains("block widths do not add up to dim"), "{e}");
    let e = open_with(&dir, |h| {
        h["blocks"] = json!([1u64 << 33, 0]);
        h["dim"] = json!(1u64 << 33);
    })
    .unwrap_err();
    assert!(e.to_string().contains("grad-index.json"), "{e}");
}
