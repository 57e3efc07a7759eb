//! Datanets: contributors' JSONL records (untrusted: anyone can contribute), built with the real
//! tokenizer, and a built Datanet's files damaged on disk (`datanet.json`, `records.jsonl`,
//! `tokens.bin`). Building must accept or refuse by line; opening must refuse damage cleanly, and
//! whatever opens must answer every accessor (records, tokens, contributors, Merkle proofs) and
//! `verify` without panicking.

use std::path::Path;

use lorad_datanet::{
    BuildOptions, Datanet, MANIFEST_FILE, RECORDS_FILE, TOKENS_FILE, TextSide, build,
};
use lorad_fuzz::{Campaign, FileSet, JsonMutator, Mutator, Outcome};
use lorad_model::{ChatTemplate, Tokenizer};
use serde_json::{Value, json};

fn records() -> Vec<Value> {
    vec![
        json!({"id": "t1", "contributor": "alice", "text": "The quick brown fox jumps over the lazy dog."}),
        json!({"id": "c1", "contributor": "bob", "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris"}]}),
        json!({"id": 7, "contributor": "  carol ", "text": "line one\r\nline two cafe\u{301}", "extra": {"x": 1}}),
        json!({"id": "t2", "contributor": "alice", "text": "über naïve 日本 λ seven green"}),
    ]
}

fn jsonl(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

fn text_side() -> Option<(Tokenizer, ChatTemplate)> {
    let path = lorad_model::testing::test_model_path()?;
    Some(lorad_model::load_text(&path).expect("loading the tokenizer"))
}

/// Opens the Datanet in `dir` and touches everything a trainer and the attribution index read;
/// one that then verifies must also prove every record against its root.
fn exercise(dir: &Path) -> Outcome {
    let d = Datanet::open(dir).map_err(|e| e.to_string())?;
    let mut proofs = Vec::new();
    for i in 0..d.len() {
        let _ = (d.record(i), d.tokens(i), d.prompt_len(i), d.contributor_of(i));
        proofs.push(d.proof(i));
    }
    let _ = d.all_tokens().len();
    d.verify().map_err(|e| e.to_string())?;
    for (i, proof) in proofs.iter().enumerate() {
        assert!(
            lorad_datanet::verify_merkle_proof(&d.merkle_root(), &d.record(i).hash, proof),
            "record {i} of a verified Datanet does not prove against its root"
        );
    }
    Ok(())
}

#[test]
fn datanet_records() {
    let Some((tokenizer, template)) = text_side() else { return };
    let side = TextSide { tokenizer: &tokenizer, chat_template: &template, base_hash: "fuzz" };
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in.jsonl");
    let root = tmp.path().join("datanets");
    let opts = BuildOptions { skip_invalid: true, force: true, progress: false };
    let seeds = vec![Value::Array(records())];
    let campaign = Campaign::new("datanet-records", 200);
    let mut m = JsonMutator::new(
        campaign.seed(),
        [
            "id",
            "contributor",
            "text",
            "messages",
            "role",
            "content",
            "system",
            "user",
            "assistant",
            "tool",
        ],
    );
    let report = campaign.run(
        &seeds,
        |s| m.mutate(s),
        |doc| {
            // One record per array element; a non-array document is one line.
            let lines = match doc {
                Value::Array(items) => jsonl(items),
                other => format!("{other}\n"),
            };
            std::fs::write(&input, lines).map_err(|e| e.to_string())?;
            let built = build(&input, "fuzz", &root, &side, &opts).map_err(|e| e.to_string())?;
            exercise(&built.dir)
        },
    );
    assert!(report.rejected > 0 && report.accepted > 0, "{report:?}");
}

#[test]
fn datanet_files() {
    let Some((tokenizer, template)) = text_side() else { return };
    let side = TextSide { tokenizer: &tokenizer, chat_template: &template, base_hash: "fuzz" };
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, jsonl(&records())).expect("input");
    let opts = BuildOptions { skip_invalid: false, force: true, progress: false };
    let built = build(&input, "pristine", &tmp.path().join("root"), &side, &opts).expect("build");
    let files = [MANIFEST_FILE, RECORDS_FILE, TOKENS_FILE];
    let set = FileSet::copy_of(&built.dir, &files, &tmp.path().join("work")).expect("files");
    for (k, file) in files.iter().enumerate() {
        let campaign = Campaign::new(&format!("datanet-file-{file}"), 200);
        let mut m = Mutator::new(campaign.seed(), 1 << 20).with_dictionary([
            &br#""token_offset":"#[..],
            br#""token_len":"#,
            br#""prompt_len":"#,
            br#""contributor":"#,
            br#""tokens":"#,
            br#""records":"#,
            b"4294967295",
            b"-1",
        ]);
        let report = campaign.run(
            &[set.original(k).to_vec()],
            |s| m.mutate(s),
            |bytes| {
                set.write_with(k, bytes)?;
                exercise(set.dir())
            },
        );
        assert!(report.rejected > 0, "{file}: {report:?}");
    }
}
