//! Tokenizer of the default model: known ids, structure, round trips, streaming decode.

mod common;

use lorad_model::Tokenizer;

fn tok() -> Option<&'static Tokenizer> {
    common::model().map(|m| &m.tokenizer)
}

/// Ids cross-checked at development time against a Python `tokenizers` tokenizer built from the
/// same GGUF metadata (BPE + Digits/ByteLevel pre-tokenizer + control tokens).
const KNOWN: &[(&str, &[u32])] = &[
    ("Once upon a time", &[6403, 1980, 253, 655]),
    ("<|im_start|>user", &[1, 4093]),
    (
        "The quick brown fox jumps over the lazy dog.",
        &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30],
    ),
    ("What is the capital of France?", &[1780, 314, 260, 3575, 282, 4649, 47]),
    ("12345", &[33, 34, 35, 36, 37]),
    (
        "Price: $1,234.56 (3.5%)",
        &[27148, 42, 1885, 33, 28, 34, 35, 36, 30, 37, 38, 365, 35, 30, 37, 8402],
    ),
    ("I ❤️ 🦀 Rust 🎉", &[57, 4636, 247, 114, 31752, 15107, 116, 218, 36828, 15107, 232, 227]),
    ("<|im_start|>system\nHi<|im_end|>\n", &[1, 9690, 198, 26843, 2, 198]),
    ("<|im_end|><|im_start|>assistant\n", &[2, 1, 520, 9531, 198]),
    ("<|endoftext|>", &[0]),
    (" leading", &[2899]),
    ("  two leading and trailing  ", &[216, 827, 2899, 284, 35079, 256]),
    ("line1\n\nline2\r\n\ttab", &[1311, 33, 198, 198, 1311, 34, 2738, 197, 15999]),
    (
        "日本語のテキスト",
        &[23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226],
    ),
    (
        "fn main() {\n    println!(\"Hello, world!\");\n}\n",
        &[
            7853, 1085, 1000, 1662, 472, 1628, 34115, 17, 1470, 19556, 28, 905, 17, 21646, 198,
            109, 198,
        ],
    ),
];

const ROUND_TRIP: &[&str] = &[
    "Once upon a time",
    " leading space",
    "trailing space ",
    "  both  ",
    "\n\nnewlines\n",
    "tabs\tand\r\nCRLF",
    "Ünïcödé façade naïve — “quotes” …",
    "日本語のテキスト、中文文本。한국어",
    "emoji 👩‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ❤️",
    "fn main() {\n    println!(\"{:?}\", x.iter().map(|v| v * 2).collect::<Vec<_>>());\n}",
    "3.14159 + 2,718 = 12345678901234567890",
    "",
];

#[test]
fn known_ids() {
    let Some(tk) = tok() else { return };
    for (text, ids) in KNOWN {
        assert_eq!(tk.encode(text).unwrap(), *ids, "encoding {text:?}");
    }
    // The prefix-space bug of candle's GGUF tokenizer would give 4027 (" Once").
    assert_ne!(tk.encode("Once upon").unwrap()[0], 4027);
}

#[test]
fn structure() {
    let Some(tk) = tok() else { return };
    assert_eq!(tk.vocab_size(), 49152);
    assert_eq!(tk.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(tk.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tk.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tk.eos_token_ids(), &[2, 0]);
    assert_eq!(tk.bos_token_id(), Some(1));
    // No BOS is added (add_bos_token = false) and no prefix space is invented.
    let ids = tk.encode("Hello").unwrap();
    assert_eq!(tk.decode(&ids[..1], false).unwrap(), "Hello");
    // Every digit is its own token.
    let digits = tk.encode("9876543210").unwrap();
    assert_eq!(digits.len(), 10);
    for (id, d) in digits.iter().zip("9876543210".chars()) {
        assert_eq!(tk.decode(&[*id], false).unwrap(), d.to_string());
    }
    // Special tokens decode verbatim unless skipped.
    let chat = tk.encode("<|im_start|>user\nHi<|im_end|>").unwrap();
    assert_eq!(tk.decode(&chat, false).unwrap(), "<|im_start|>user\nHi<|im_end|>");
    assert_eq!(tk.decode(&chat, true).unwrap(), "user\nHi");
}

#[test]
fn round_trips() {
    let Some(tk) = tok() else { return };
    for text in ROUND_TRIP.iter().chain(KNOWN.iter().map(|(t, _)| t)) {
        let ids = tk.encode(text).unwrap();
        assert_eq!(tk.decode(&ids, false).unwrap(), *text, "ids {ids:?}");
    }
}

/// Each token's exact bytes, concatenated, are the text's bytes, also where a token holds only
/// part of a character (the emoji and the Japanese split inside their UTF-8 sequences).
#[test]
fn token_bytes_concatenate_to_the_text() {
    let Some(tk) = tok() else { return };
    let mut split_chars = 0;
    for text in ROUND_TRIP.iter().chain(KNOWN.iter().map(|(t, _)| t)) {
        let ids = tk.encode(text).unwrap();
        let pieces: Vec<Vec<u8>> = ids.iter().map(|&id| tk.token_bytes(id).unwrap()).collect();
        split_chars += pieces.iter().filter(|p| std::str::from_utf8(p).is_err()).count();
        assert_eq!(pieces.concat(), text.as_bytes(), "{text:?}");
    }
    assert!(split_chars > 0, "some tokens hold part of a character");
    assert_eq!(tk.token_bytes(2).as_deref(), Some("<|im_end|>".as_bytes()));
    assert_eq!(tk.token_bytes(u32::MAX), None);
}

#[test]
fn incremental_matches_full_decode() {
    let Some(tk) = tok() else { return };
    let texts = [
        "日本語のテキスト、中文文本。한국어",
        "emoji 👩‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ❤️ 🦀",
        "<|im_start|>assistant\nSure! 😀 Ünïcödé<|im_end|>\n<|endoftext|>",
        "plain ascii, 12345",
    ];
    for text in texts {
        let ids = tk.encode(text).unwrap();
        let mut dec = tk.incremental_decoder();
        let mut pieces = Vec::new();
        for &id in &ids {
            let piece = dec.push(id).unwrap();
            assert!(!piece.contains('\u{FFFD}'), "split character in {piece:?} for {text:?}");
            pieces.push(piece);
        }
        pieces.push(dec.finish().unwrap());
        assert_eq!(pieces.concat(), tk.decode(&ids, true).unwrap(), "{text:?}");
        // Multi-byte characters span several tokens here, so some pushes must have held back.
        if !text.is_ascii() {
            assert!(pieces.iter().any(String::is_empty), "{text:?}");
        }
    }
}

#[test]
fn incremental_flushes_incomplete_tail() {
    let Some(tk) = tok() else { return };
    // "🦀" is several byte tokens; stopping halfway leaves an incomplete character.
    let ids = tk.encode("a🦀").unwrap();
    assert!(ids.len() >= 3, "{ids:?}");
    let cut = &ids[..ids.len() - 1];
    let mut dec = tk.incremental_decoder();
    let mut out = String::new();
    for &id in cut {
        out += &dec.push(id).unwrap();
    }
    assert_eq!(out, "a");
    out += &dec.finish().unwrap();
    assert_eq!(out, tk.decode(cut, true).unwrap());
    assert!(out.ends_with('\u{FFFD}'));
}

#[test]
fn from_gguf_matches_loaded() {
    let Some(tk) = tok() else { return };
    let path = lorad_model::testing::test_model_path().unwrap();
    let mut file = std::fs::File::open(path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let built = Tokenizer::from_gguf(&content).unwrap();
    for (text, _) in KNOWN {
        assert_eq!(built.encode(text).unwrap(), tk.encode(text).unwrap());
    }
    assert_eq!(built.eos_token_ids(), tk.eos_token_ids());
}

#[test]
fn saved_as_tokenizer_json() {
    let Some(tk) = tok() else { return };
    let dir = tempfile::tempdir().unwrap();
    tk.save(&dir.path().join("tokenizer.json")).unwrap();
    let hf = Tokenizer::from_hf_dir(dir.path()).unwrap();
    for (text, ids) in KNOWN {
        assert_eq!(hf.encode(text).unwrap(), *ids, "{text:?}");
        assert_eq!(hf.decode(ids, false).unwrap(), *text);
    }
    assert_eq!(hf.vocab_size(), tk.vocab_size());
    // Without config files, the end-of-turn tokens are recognized by name.
    assert_eq!(hf.eos_token_ids(), &[0, 2]);
    assert_eq!(hf.bos_token_id(), None);
}
