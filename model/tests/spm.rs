//! SentencePiece BPE vocabularies, in GGUF (`tokenizer.ggml.model = llama`) and as a
//! `tokenizer.model` file, judged by the `sentencepiece` library itself: Mistral's v1 (LLaMA-style, 32,000 pieces) and v3 (32,768, with
//! control tokens) models, each piece written into GGUF metadata as llama.cpp's converter does,
//! must encode 420 texts (fixed edge cases and seeded random ones: spaces, newlines, digits,
//! accents, Cyrillic, CJK, emoji through byte fallback) to SentencePiece's ids, and decode back.
//! The fixtures come from `scripts/spm-fixtures.sh` (tests/spm/reference.py).

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Content, Value};
use lorad_model::Tokenizer;
use serde_json::Value as Json;

struct Fixture {
    pieces: Vec<(String, f32, i32)>,
    bos: u32,
    eos: u32,
    cases: Vec<(String, Vec<u32>)>,
}

fn fixture(name: &str) -> Option<Fixture> {
    let path = lorad_model::testing::spm_fixture(name)?;
    let json: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let pieces = json["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = p.as_array().unwrap();
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_f64().unwrap() as f32,
                p[2].as_i64().unwrap() as i32,
            )
        })
        .collect();
    let cases = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c[1].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32);
            (c[0].as_str().unwrap().to_owned(), ids.collect())
        })
        .collect();
    let id = |k: &str| json[k].as_u64().unwrap() as u32;
    Some(Fixture { pieces, bos: id("bos"), eos: id("eos"), cases })
}

/// The GGUF tokenizer metadata llama.cpp's converter writes for a SentencePiece model.
fn gguf(f: &Fixture, add_bos: bool) -> Tokenizer {
    let arr = |v: Vec<Value>| Value::Array(v);
    let meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            arr(f.pieces.iter().map(|p| Value::String(p.0.clone())).collect()),
        ),
        ("tokenizer.ggml.scores", arr(f.pieces.iter().map(|p| Value::F32(p.1)).collect())),
        ("tokenizer.ggml.token_type", arr(f.pieces.iter().map(|p| Value::I32(p.2)).collect())),
        ("tokenizer.ggml.bos_token_id", Value::U32(f.bos)),
        ("tokenizer.ggml.eos_token_id", Value::U32(f.eos)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(add_bos)),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(true)),
    ];
    let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let mut bytes = Cursor::new(Vec::new());
    gguf_file::write(&mut bytes, &refs, &[]).unwrap();
    let content = Content::read(&mut Cursor::new(bytes.into_inner())).unwrap();
    Tokenizer::from_gguf(&content).unwrap()
}

/// `tok` (built without BOS) encodes every case to SentencePiece's ids and decodes them back.
fn same_as_sentencepiece(tok: &Tokenizer, f: &Fixture, how: &str) {
    assert!(f.cases.len() >= 400, "{} cases", f.cases.len());
    assert_eq!(tok.vocab_size(), f.pieces.len());
    let mut wrong = Vec::new();
    for (text, want) in &f.cases {
        let got = tok.encode(text).unwrap();
        if &got != want {
            wrong.push(format!("{text:?}: lorad {got:?}, sentencepiece {want:?}"));
        }
        // Decoding SentencePiece's ids gives the text back (byte fallback included).
        assert_eq!(&tok.decode(want, true).unwrap(), text, "{how}: decode of {want:?}");
    }
    assert!(
        wrong.is_empty(),
        "{how}: {} of {} differ:\n{}",
        wrong.len(),
        f.cases.len(),
        wrong[..wrong.len().min(8)].join("\n")
    );
}

/// With BOS asked for, it leads; the end-of-sequence piece ends generation.
fn bos_and_eos(tok: &Tokenizer, f: &Fixture) {
    let ids = tok.encode("Hello").unwrap();
    assert_eq!(ids[0], f.bos);
    let hello = f.cases.iter().find(|c| c.0 == "Hello world").map(|c| c.1[0]).unwrap();
    assert_eq!(ids[1..], [hello]);
    assert!(tok.eos_token_ids().contains(&f.eos));
}

/// v3's control tokens (`[INST]`, `[TOOL_CALLS]`): in text they are one id each (as a chat
/// template writes them), special on decode, except `[TOOL_CALLS]`, which answers keep as text.
fn control_tokens(tok: &Tokenizer, f: &Fixture) {
    let id = |t: &str| f.pieces.iter().position(|p| p.0 == t).unwrap() as u32;
    let ids = tok.encode("<s>[INST] Hi[/INST]").unwrap();
    assert_eq!(ids[..2], [f.bos, id("[INST]")], "{ids:?}");
    assert_eq!(ids.last(), Some(&id("[/INST]")), "{ids:?}");
    assert_eq!(tok.decode(&ids, true).unwrap(), " Hi");
    let call = tok.encode("[TOOL_CALLS]").unwrap();
    assert_eq!(call, [f.bos, id("[TOOL_CALLS]")]);
    assert_eq!(tok.decode(&call, true).unwrap(), "[TOOL_CALLS]");
}

/// A Hugging Face directory holding only `tokenizer.model` (older LLaMA 2 / Mistral
/// repositories) and a `tokenizer_config.json`.
fn hf_dir(name: &str, add_bos: bool) -> Option<(Tokenizer, tempfile::TempDir)> {
    let model = lorad_model::testing::spm_fixture(name)?;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&model, dir.path().join("tokenizer.model")).unwrap();
    let config =
        serde_json::json!({"add_bos_token": add_bos, "bos_token": "<s>", "eos_token": "</s>"});
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    Some((Tokenizer::from_hf_dir(dir.path()).unwrap(), dir))
}

#[test]
fn gguf_mistral_v1_matches_sentencepiece() {
    let Some(f) = fixture("mistral-v1.json") else { return };
    same_as_sentencepiece(&gguf(&f, false), &f, "GGUF v1");
    bos_and_eos(&gguf(&f, true), &f);
}

#[test]
fn gguf_mistral_v3_matches_sentencepiece_and_reads_control_tokens() {
    let Some(f) = fixture("mistral-v3.json") else { return };
    same_as_sentencepiece(&gguf(&f, false), &f, "GGUF v3");
    control_tokens(&gguf(&f, true), &f);
}

/// The same vocabularies read from the `.model` protobuf itself.
#[test]
fn tokenizer_model_files_match_sentencepiece() {
    for name in ["mistral-v1", "mistral-v3"] {
        let Some(f) = fixture(&format!("{name}.json")) else { return };
        let Some((tok, _dir)) = hf_dir(&format!("{name}.model"), false) else { return };
        same_as_sentencepiece(&tok, &f, name);
        let Some((tok, _dir)) = hf_dir(&format!("{name}.model"), true) else { return };
        bos_and_eos(&tok, &f);
        if name == "mistral-v3" {
            control_tokens(&tok, &f);
        }
    }
}

/// A `tokenizer.model` that is not a SentencePiece model is refused, naming the file.
#[test]
fn a_broken_tokenizer_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.model"), b"\x0a\xff\xff").unwrap();
    let e = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("tokenizer.model") && e.contains("does not parse"), "{e}");
}
