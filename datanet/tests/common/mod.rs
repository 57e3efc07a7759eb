//! Shared helpers for the integration tests: the real tokenizer, and generated JSONL inputs.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::OnceLock;

use lorad_datanet::TextSide;
use lorad_model::{ChatTemplate, Tokenizer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// The base hash recorded by test builds (hashing the real model file would only slow tests).
pub const BASE_HASH: &str = "test-base-hash";

/// The known text record every generated input contains.
pub const KNOWN_TEXT: &str = "The quick brown fox jumps over the lazy dog.";
/// Its id.
pub const KNOWN_ID: &str = "known-text";
/// The known chat record's id.
pub const CHAT_ID: &str = "known-chat";

/// The real tokenizer and chat template, loaded once per test binary; `None` (after a SKIPPING
/// line) when the model is absent.
pub fn text_side() -> Option<&'static (Tokenizer, ChatTemplate)> {
    static TEXT: OnceLock<Option<(Tokenizer, ChatTemplate)>> = OnceLock::new();
    let path = lorad_model::testing::test_model_path()?;
    TEXT.get_or_init(|| Some(lorad_model::load_text(&path).expect("loading the tokenizer")))
        .as_ref()
}

/// A [`TextSide`] over the loaded pair.
pub fn side(t: &'static (Tokenizer, ChatTemplate)) -> TextSide<'static> {
    TextSide { tokenizer: &t.0, chat_template: &t.1, base_hash: BASE_HASH }
}

pub const CONTRIBUTORS: [&str; 4] = ["alice", "bob", "carol", "dave"];

const WORDS: [&str; 16] = [
    "data", "model", "river", "stone", "light", "answer", "question", "value", "Paris", "seven",
    "green", "fast", "über", "naïve", "日本", "λ",
];

fn sentence(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(3..12);
    (0..n).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
}

/// `n` random records (mixed text and chat, all four contributors) as JSON values, plus the known
/// text and chat records and a few normalization cases. Deterministic for a given `seed`.
pub fn generated_records(seed: u64, n: usize) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![
        json!({"id": KNOWN_ID, "contributor": "alice", "text": KNOWN_TEXT}),
        json!({"id": CHAT_ID, "contributor": "bob", "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris"},
        ]}),
        // Integer id, CRLF line ends, padding whitespace, an unknown field, decomposed é.
        json!({"id": 7, "contributor": "  carol ", "text": "  line one\r\nline two\rcafe\u{301}  ",
               "extra": {"ignored": true}}),
    ];
    for i in 0..n {
        let contributor = CONTRIBUTORS[rng.random_range(0..CONTRIBUTORS.len())];
        let id = format!("r{i}");
        if rng.random_bool(0.5) {
            out.push(json!({"id": id, "contributor": contributor, "text": sentence(&mut rng)}));
        } else {
            let mut messages = Vec::new();
            if rng.random_bool(0.3) {
                messages.push(json!({"role": "system", "content": sentence(&mut rng)}));
            }
            for _ in 0..rng.random_range(1..3) {
                messages.push(json!({"role": "user", "content": sentence(&mut rng)}));
                messages.push(json!({"role": "assistant", "content": sentence(&mut rng)}));
            }
            out.push(json!({"id": id, "contributor": contributor, "messages": messages}));
        }
    }
    out
}

/// Writes `records` as JSONL (one compact object per line).
pub fn write_jsonl(path: &Path, records: &[Value]) {
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(r).expect("serializing"));
        s.push('\n');
    }
    std::fs::write(path, s).expect("writing input");
}
