//! Building Datanets with the real tokenizer, opening them, and detecting damage.

mod common;

use std::fs;
use std::path::Path;

use common::{
    CHAT_ID, CONTRIBUTORS, KNOWN_ID, KNOWN_TEXT, generated_records, side, text_side, write_jsonl,
};
use lorad_datanet::{
    BuildOptions, Datanet, DatanetError, RecordContent, build, list, merkle_root, parse_records,
    verify_merkle_proof,
};
use lorad_model::ChatMessage;

fn index_of(d: &Datanet, id: &str) -> usize {
    d.records().iter().position(|r| r.id == id).unwrap_or_else(|| panic!("no record {id}"))
}

/// Builds the generated input (seed, n) as `name` under `root`.
fn build_generated(
    t: &'static (lorad_model::Tokenizer, lorad_model::ChatTemplate),
    root: &Path,
    name: &str,
    seed: u64,
    n: usize,
    opts: &BuildOptions,
) -> Result<lorad_datanet::BuildReport, DatanetError> {
    let input = root.join(format!("{name}-{seed}-{n}.jsonl"));
    write_jsonl(&input, &generated_records(seed, n));
    build(&input, name, root, &side(t), opts)
}

#[test]
fn build_then_open_round_trip() {
    let Some(t) = text_side() else { return };
    let (tok, template) = (&t.0, &t.1);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("datanets");
    let values = generated_records(11, 60);
    let input = tmp.path().join("in.jsonl");
    write_jsonl(&input, &values);
    let report = build(&input, "mixed", &root, &side(t), &BuildOptions::default()).unwrap();
    assert_eq!(report.records, values.len() as u64);
    assert!(report.skipped.is_empty());
    assert_eq!(report.dir, root.join("mixed"));

    let d = Datanet::open(&report.dir).unwrap();
    assert_eq!(d.name(), "mixed");
    assert_eq!(d.len(), values.len());
    assert!(!d.is_empty());
    let m = d.manifest();
    assert_eq!(m.format_version, 1);
    assert_eq!(m.records, report.records);
    assert_eq!(m.tokens, report.tokens);
    assert_eq!(m.tokenizer.vocab_size, 49152);
    assert_eq!(m.tokenizer.base_hash, common::BASE_HASH);
    assert_eq!(m.record_hash, "sha256-v1");
    assert_eq!(m.merkle, "keccak256-sorted-pairs-v1");
    assert_eq!(m.merkle_root, report.merkle_root);
    assert_eq!(m.source.sha256.len(), 64);
    assert!(m.source.path.ends_with("in.jsonl"));
    assert_eq!(d.all_tokens().len() as u64, m.tokens);

    // The known text record: all of it trained on, tokens exactly the tokenizer's.
    let k = index_of(&d, KNOWN_ID);
    assert_eq!(d.tokens(k), tok.encode(KNOWN_TEXT).unwrap().as_slice());
    assert_eq!(d.prompt_len(k), 0);
    assert_eq!(d.contributor_of(k).name, "alice");

    // The known chat record: prompt_len is the length of the encoded rendered prompt, and what
    // follows it decodes to the assistant's answer.
    let c = index_of(&d, CHAT_ID);
    let msgs = vec![
        ChatMessage::new("system", "You answer in one word."),
        ChatMessage::new("user", "What is the capital of France?"),
        ChatMessage::new("assistant", "Paris"),
    ];
    let prompt = template.render(&msgs[..2], true).unwrap();
    let prompt_ids = tok.encode(&prompt).unwrap();
    assert_eq!(d.prompt_len(c), prompt_ids.len());
    assert_eq!(&d.tokens(c)[..prompt_ids.len()], prompt_ids.as_slice());
    let completion = tok.decode(&d.tokens(c)[d.prompt_len(c)..], false).unwrap();
    assert!(completion.starts_with("Paris"), "completion {completion:?}");
    assert_eq!(d.record(c).content, RecordContent::Chat(msgs));

    // Normalization was applied to the stored content and the contributor.
    let n7 = index_of(&d, "7");
    assert_eq!(d.record(n7).content, RecordContent::Text("line one\nline two\ncaf\u{e9}".into()));
    assert_eq!(d.contributor_of(n7).name, "carol");

    // Contributors: order of first appearance, counts matching the records.
    let mut expected: Vec<(String, u64, u64)> = Vec::new();
    for i in 0..d.len() {
        let name = d.contributor_of(i).name.clone();
        let len = d.tokens(i).len() as u64;
        match expected.iter_mut().find(|e| e.0 == name) {
            Some(e) => {
                e.1 += 1;
                e.2 += len;
            }
            None => expected.push((name, 1, len)),
        }
    }
    let table: Vec<_> =
        d.contributors().iter().map(|c| (c.name.clone(), c.records, c.tokens)).collect();
    assert_eq!(table, expected);
    assert_eq!(
        &table[..3].iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        &["alice", "bob", "carol"]
    );
    assert!(table.len() >= 3 && table.len() <= CONTRIBUTORS.len());
    assert!(d.contributors().iter().enumerate().all(|(i, c)| c.index as usize == i));
    assert_eq!(report.contributors, d.contributors());

    // Hashes match an independent parse; the root matches them; every proof verifies.
    let (parsed, problems) = parse_records(&fs::read(&input).unwrap());
    assert!(problems.is_empty());
    let hashes: Vec<[u8; 32]> = parsed.iter().map(|(_, r)| r.hash()).collect();
    assert_eq!(d.records().iter().map(|r| r.hash).collect::<Vec<_>>(), hashes);
    assert_eq!(merkle_root(&hashes), d.merkle_root());
    for i in 0..d.len() {
        assert!(
            verify_merkle_proof(&d.merkle_root(), &d.record(i).hash, &d.proof(i)),
            "record {i}"
        );
        assert_eq!(d.record(i).line, i as u64 + 1);
        assert!(d.tokens(i).iter().all(|&id| (id as usize) < tok.vocab_size()));
        assert!(d.prompt_len(i) < d.tokens(i).len());
    }
    d.verify().unwrap();

    // Listing finds it and ignores build leftovers.
    fs::create_dir(root.join(".tmp-mixed-999-0")).unwrap();
    fs::copy(report.dir.join("datanet.json"), root.join(".tmp-mixed-999-0/datanet.json")).unwrap();
    let listed = list(&root).unwrap();
    assert_eq!(listed, vec![d.manifest().clone()]);
    assert_eq!(Datanet::open_named(&root, "mixed").unwrap().len(), d.len());
    assert!(list(&tmp.path().join("nowhere")).unwrap().is_empty());
}

#[test]
fn tampered_text_fails_verify() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let report = build_generated(t, tmp.path(), "tamper", 3, 10, &BuildOptions::default()).unwrap();
    let path = report.dir.join("records.jsonl");
    let original = fs::read_to_string(&path).unwrap();
    // Same length, still valid JSON: only the content hash can notice.
    let tampered = original.replacen("quick brown", "quick brawn", 1);
    assert_ne!(tampered, original);
    fs::write(&path, tampered).unwrap();
    let d = Datanet::open(&report.dir).unwrap();
    match d.verify() {
        Err(DatanetError::Corrupt { path: p, reason }) => {
            assert_eq!(p, path);
            assert!(reason.contains(KNOWN_ID), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn tampered_merkle_root_fails_verify() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let report = build_generated(t, tmp.path(), "root", 4, 5, &BuildOptions::default()).unwrap();
    let path = report.dir.join("datanet.json");
    let hex_root = format!("0x{}", hex::encode(report.merkle_root));
    let mut flipped = report.merkle_root;
    flipped[31] ^= 1;
    let s = fs::read_to_string(&path)
        .unwrap()
        .replace(&hex_root, &format!("0x{}", hex::encode(flipped)));
    fs::write(&path, s).unwrap();
    let err = Datanet::open(&report.dir).unwrap().verify().unwrap_err();
    assert!(err.to_string().contains("Merkle root"), "{err}");
}

#[test]
fn truncated_tokens_are_corrupt_at_open() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let report = build_generated(t, tmp.path(), "trunc", 5, 5, &BuildOptions::default()).unwrap();
    let path = report.dir.join("tokens.bin");
    let len = fs::metadata(&path).unwrap().len();
    assert_eq!(len, 4 * report.tokens);
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 4).unwrap();
    match Datanet::open(&report.dir) {
        Err(DatanetError::Corrupt { path: p, reason }) => {
            assert_eq!(p, path);
            assert!(reason.contains("truncated"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// A token id changed in place keeps every length and range right, and the record hashes
/// cover text, not tokens: only the manifest's `tokens_sha256` catches it, at `verify`.
#[test]
fn a_changed_token_fails_verify() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let report = build_generated(t, tmp.path(), "tok", 5, 5, &BuildOptions::default()).unwrap();
    let d = Datanet::open(&report.dir).unwrap();
    assert!(d.manifest().tokens_sha256.is_some());
    d.verify().unwrap();
    drop(d);
    let path = report.dir.join("tokens.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes[4] ^= 1;
    fs::write(&path, bytes).unwrap();
    let d = Datanet::open(&report.dir).unwrap();
    match d.verify() {
        Err(DatanetError::Corrupt { path: p, reason }) => {
            assert_eq!(p, path);
            assert!(reason.contains("SHA-256"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn record_range_outside_tokens_is_corrupt() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let report = build_generated(t, tmp.path(), "range", 6, 3, &BuildOptions::default()).unwrap();
    let path = report.dir.join("records.jsonl");
    let s = fs::read_to_string(&path).unwrap();
    let last = s.lines().last().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(last).unwrap();
    v["token_len"] = serde_json::json!(v["token_len"].as_u64().unwrap() + 1);
    let s = s.replace(last, &v.to_string());
    fs::write(&path, s).unwrap();
    let err = Datanet::open(&report.dir).unwrap_err();
    assert!(matches!(err, DatanetError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("outside tokens.bin"), "{err}");
}

#[test]
fn exists_and_force() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let first = build_generated(t, root, "same", 1, 4, &BuildOptions::default()).unwrap();
    let err = build_generated(t, root, "same", 2, 9, &BuildOptions::default()).unwrap_err();
    assert!(matches!(&err, DatanetError::Exists { dir } if *dir == first.dir), "{err}");
    assert_eq!(Datanet::open(&first.dir).unwrap().merkle_root(), first.merkle_root);

    // A forced rebuild that fails (bad input) leaves the old Datanet alone.
    let bad = root.join("bad.jsonl");
    fs::write(&bad, "{\"id\":1}\n").unwrap();
    let force = BuildOptions { force: true, ..Default::default() };
    assert!(matches!(
        build(&bad, "same", root, &side(t), &force),
        Err(DatanetError::BadRecords { .. })
    ));
    assert_eq!(Datanet::open(&first.dir).unwrap().merkle_root(), first.merkle_root);

    let second = build_generated(t, root, "same", 2, 9, &force).unwrap();
    assert_ne!(second.merkle_root, first.merkle_root);
    let d = Datanet::open(&second.dir).unwrap();
    assert_eq!(d.merkle_root(), second.merkle_root);
    assert_eq!(d.len() as u64, second.records);
    d.verify().unwrap();
    // No temporary or replaced directories are left behind.
    let leftovers: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn unknown_format_version_and_missing_datanet() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let report =
        build_generated(t, tmp.path(), "versioned", 8, 2, &BuildOptions::default()).unwrap();
    let path = report.dir.join("datanet.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    v["format_version"] = serde_json::json!(2);
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let err = Datanet::open(&report.dir).unwrap_err();
    match &err {
        DatanetError::UnsupportedVersion { found, supported, .. } => {
            assert_eq!(found, "2");
            assert_eq!(*supported, 1);
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert!(err.to_string().contains("format_version 2"), "{err}");

    let err = Datanet::open(&tmp.path().join("absent")).unwrap_err();
    assert!(matches!(err, DatanetError::NotFound { .. }), "{err}");
}
