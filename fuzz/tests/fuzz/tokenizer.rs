//! The real tokenizer on text clients send (mutated, any Unicode) and on token sequences a model
//! may generate (any ids, characters split anywhere): text round-trips exactly through encode and
//! decode, token bytes concatenate to the text, and streaming decode (what SSE answers are made
//! of) always equals decoding the whole sequence at once.

use lorad_fuzz::{Campaign, Mutator, Outcome, Rng};
use lorad_model::Tokenizer;

const TEXTS: &[&str] = &[
    "Hello, world! 12345 and 3.14159",
    "日本語のテキスト、中文文本。한국어",
    "emoji 👩‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ❤️ 🦀",
    "<|im_start|>assistant\nSure! 😀 Ünïcödé<|im_end|>\n<|endoftext|>",
    "fn main() {\n\tprintln!(\"{:?}\", x);\r\n}  \u{0} \u{7f} \u{200b}",
];

fn tokenizer() -> Option<Tokenizer> {
    let path = lorad_model::testing::test_model_path()?;
    Some(lorad_model::load_text(&path).expect("loading the tokenizer").0)
}

/// Streams `ids` through the incremental decoder and compares with decoding them at once.
fn stream_equals_whole(tk: &Tokenizer, ids: &[u32]) -> Outcome {
    let mut dec = tk.incremental_decoder();
    let mut out = String::new();
    for &id in ids {
        out += &dec.push(id).map_err(|e| e.to_string())?;
    }
    out += &dec.finish().map_err(|e| e.to_string())?;
    let whole = tk.decode(ids, true).map_err(|e| e.to_string())?;
    assert_eq!(out, whole, "streamed and whole decodes differ for ids {ids:?}");
    Ok(())
}

#[test]
fn tokenizer_text() {
    let Some(tk) = tokenizer() else { return };
    // SmolLM2's vocabulary lacks 21 of the 256 byte tokens (bytes absent from its training
    // text: some controls, and bytes UTF-8 never or hardly uses); encoding drops them, as
    // Hugging Face's tokenizer does. Everything else must come back exactly.
    let mut present = [false; 256];
    for id in 0..tk.vocab_size() as u32 {
        if let Some([b]) = tk.token_bytes(id).as_deref() {
            present[*b as usize] = true;
        }
    }
    assert!(present.iter().filter(|&&p| p).count() > 200);
    let seeds: Vec<String> = TEXTS.iter().map(|t| (*t).to_owned()).collect();
    let campaign = Campaign::new("tokenizer-text", 300);
    let mut m = Mutator::new(campaign.seed(), 4096).with_dictionary([
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "\u{FFFD}",
        "🦀",
        " ",
        "\n",
    ]);
    campaign.run(
        &seeds,
        |s| String::from_utf8_lossy(&m.mutate(s.as_bytes())).into_owned(),
        |text| {
            let ids = tk.encode(text).map_err(|e| e.to_string())?;
            let kept: Vec<u8> = text.bytes().filter(|&b| present[b as usize]).collect();
            let bytes: Vec<u8> =
                ids.iter().flat_map(|&id| tk.token_bytes(id).unwrap_or_default()).collect();
            assert_eq!(bytes, kept, "token bytes are not the text's (ids {ids:?})");
            let back = tk.decode(&ids, false).map_err(|e| e.to_string())?;
            assert_eq!(back, String::from_utf8_lossy(&kept), "decode does not give the text back");
            stream_equals_whole(&tk, &ids)
        },
    );
}

#[test]
fn tokenizer_generated_ids() {
    let Some(tk) = tokenizer() else { return };
    let vocab = tk.vocab_size();
    // A model's output: mostly byte tokens and short pieces, where characters split most.
    let byte_tokens: Vec<u32> =
        (0..vocab as u32).filter(|&id| tk.token_bytes(id).is_some_and(|b| b.len() == 1)).collect();
    assert!(byte_tokens.len() > 200, "found only {} byte tokens", byte_tokens.len());
    let campaign = Campaign::new("tokenizer-ids", 300);
    let mut rng = Rng::new(campaign.seed());
    let seeds = vec![Vec::<u8>::new()];
    campaign.run(
        &seeds,
        |_| {
            let n = 1 + rng.below(24);
            let ids: Vec<u32> = (0..n)
                .map(|_| match rng.below(3) {
                    0 => *rng.pick(&byte_tokens),
                    _ => rng.below(vocab) as u32,
                })
                .collect();
            ids.iter().flat_map(|id| id.to_le_bytes()).collect()
        },
        |bytes| {
            let ids: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            stream_equals_whole(&tk, &ids)
        },
    );
}
