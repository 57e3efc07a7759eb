//! SentencePiece BPE vocabularies in GGUF (`tokenizer.ggml.model = llama`: LLaMA 1/2, Mistral
//! 7B v0.1–v0.3, TinyLlama), expressed as a Hugging Face tokenizer the way transformers'
//! `LlamaConverter` does: a BPE over the vocabulary whose merges are ranked by the score of the
//! piece they make (SentencePiece merges the highest-scoring pair first), byte fallback to the
//! `<0xNN>` pieces, spaces written `▁` and one prepended to the text (`add_space_prefix`, as
//! llama.cpp and SentencePiece do), and the reverse on decode.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::{DecoderWrapper, NormalizerWrapper};

use crate::error::ModelError;
use crate::gguf::Meta;
use crate::tokenizer::{mark_added, tk_err};

use std::path::Path;

/// SentencePiece's word-boundary mark, which stands for a space.
const SPACE: &str = "\u{2581}";

/// The tokenizer of `tokens` (with their llama.cpp `types`: 1 normal, 2 unknown, 3 control,
/// 4 user-defined, 5 unused, 6 byte) and `tokenizer.ggml.scores`.
pub(crate) fn tokenizer(
    m: Meta<'_>,
    tokens: &[&str],
    types: &[i32],
) -> Result<tokenizers::Tokenizer, ModelError> {
    let scores = m.f32s("tokenizer.ggml.scores")?;
    if scores.len() != tokens.len() {
        return Err(m.bad(
            "tokenizer.ggml.scores",
            format!("{} entries for {} tokens", scores.len(), tokens.len()),
        ));
    }
    let unk = match m.opt_u32("tokenizer.ggml.unknown_token_id")? {
        Some(id) => tokens.get(id as usize).copied(),
        None => None,
    };
    let prefix = m.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    build(tokens, types, &scores, unk, prefix, m.path)
}

/// The BPE, normalizer and decoder of a SentencePiece vocabulary (`unk`: the unknown piece,
/// else the first of type 2); `prefix`: SentencePiece's `add_dummy_prefix`.
fn build(
    tokens: &[&str],
    types: &[i32],
    scores: &[f32],
    unk: Option<&str>,
    prefix: bool,
    path: &Path,
) -> Result<tokenizers::Tokenizer, ModelError> {
    let ids: HashMap<&str, u32> = (0u32..).zip(tokens).map(|(i, t)| (*t, i)).collect();
    let merges = merges(tokens, types, scores, &ids);
    let vocab: Vocab = (0u32..).zip(tokens).map(|(i, t)| ((*t).to_owned(), i)).collect();
    let unk = unk.or_else(|| tokens.iter().zip(types).find(|(_, t)| **t == 2).map(|(s, _)| *s));
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk.to_owned()).fuse_unk(true);
    }
    let bpe =
        builder.build().map_err(tk_err(format!("{}: SentencePiece vocabulary", path.display())))?;
    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(tk_err(format!("{}: normalizer", path.display())))
    };
    let mut normalize: Vec<NormalizerWrapper> = Vec::new();
    if prefix {
        normalize.push(Prepend::new(SPACE.to_owned()).into());
    }
    normalize.push(replace(" ", SPACE)?.into());
    let mut decode: Vec<DecoderWrapper> =
        vec![replace(SPACE, " ")?.into(), ByteFallback::new().into(), Fuse::new().into()];
    if prefix {
        decode.push(Strip::new(' ', 1, 0).into());
    }
    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_normalizer(Some(NormalizerSequence::new(normalize)))
        .map_err(tk_err(format!("{}: normalizer", path.display())))?;
    tk.with_decoder(Some(DecoderSequence::new(decode)));
    Ok(tk)
}

/// A SentencePiece `tokenizer.model` (the `ModelProto` protobuf Hugging Face repositories of
/// LLaMA 2 and Mistral models ship, sometimes without a `tokenizer.json`): its BPE tokenizer
/// with control pieces special, as transformers' `LlamaConverter` builds it.
pub(crate) fn from_model_file(path: &Path) -> Result<tokenizers::Tokenizer, ModelError> {
    let bytes = std::fs::read(path).map_err(ModelError::io("reading", path))?;
    let bad = |reason: String| ModelError::Unsupported { path: path.to_owned(), what: reason };
    let proto = proto::ModelProto::parse(&bytes)
        .map_err(|e| bad(format!("a SentencePiece model that does not parse ({e})")))?;
    if proto.model_type != proto::BPE {
        return Err(bad(format!(
            "a SentencePiece model of type {} (only BPE, type 2, the LLaMA family's)",
            proto.model_type
        )));
    }
    if proto.remove_extra_whitespaces {
        return Err(bad("a SentencePiece model that collapses whitespace \
             (normalizer_spec.remove_extra_whitespaces)"
            .into()));
    }
    if !proto.precompiled_charsmap_empty {
        return Err(bad(format!(
            "a SentencePiece model with a `{}` normalization table (only `identity`)",
            proto.normalizer
        )));
    }
    let tokens: Vec<&str> = proto.pieces.iter().map(|p| p.0.as_str()).collect();
    let scores: Vec<f32> = proto.pieces.iter().map(|p| p.1).collect();
    let types: Vec<i32> = proto.pieces.iter().map(|p| p.2).collect();
    let mut tk = build(&tokens, &types, &scores, None, proto.add_dummy_prefix, path)?;
    mark_added(&mut tk, &tokens, &types, path)?;
    Ok(tk)
}

/// Every way to make a normal or user-defined piece from two others, best score first (ties by
/// the made piece's id, then its parts'), as transformers' `SentencePieceExtractor` lists them.
fn merges(
    tokens: &[&str],
    types: &[i32],
    scores: &[f32],
    ids: &HashMap<&str, u32>,
) -> Vec<(String, String)> {
    let mut ranked: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (id, (piece, ty)) in (0u32..).zip(tokens.iter().zip(types)) {
        if !matches!(ty, 1 | 4) {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                ranked.push((scores[id as usize], id, li, ri));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2, a.3).cmp(&(b.1, b.2, b.3))));
    ranked
        .into_iter()
        .map(|(_, _, l, r)| (tokens[l as usize].to_owned(), tokens[r as usize].to_owned()))
        .collect()
}

/// Just enough of protobuf to read SentencePiece's `ModelProto`.
mod proto {
    /// `TrainerSpec.ModelType.BPE`.
    pub(super) const BPE: u64 = 2;

    /// The parts of a `ModelProto` lorad uses.
    pub(super) struct ModelProto {
        /// `(piece, score, type)` in id order.
        pub(super) pieces: Vec<(String, f32, i32)>,
        pub(super) model_type: u64,
        pub(super) normalizer: String,
        pub(super) precompiled_charsmap_empty: bool,
        pub(super) add_dummy_prefix: bool,
        pub(super) remove_extra_whitespaces: bool,
    }

    /// One field: its number and value.
    enum Value<'a> {
        Varint(u64),
        Bytes(&'a [u8]),
        Fixed32(u32),
        Fixed64,
    }

    /// The fields of one message, in order.
    fn fields(mut b: &[u8]) -> Result<Vec<(u64, Value<'_>)>, String> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b)?;
            let value = match key & 7 {
                0 => Value::Varint(varint(&mut b)?),
                1 => {
                    take(&mut b, 8)?;
                    Value::Fixed64
                }
                2 => {
                    let len = usize::try_from(varint(&mut b)?).map_err(|_| "length overflow")?;
                    Value::Bytes(take(&mut b, len)?)
                }
                5 => {
                    let v = take(&mut b, 4)?;
                    Value::Fixed32(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
                }
                w => return Err(format!("wire type {w}")),
            };
            out.push((key >> 3, value));
        }
        Ok(out)
    }

    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }

    fn varint(b: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *take(b, 1)?.first().ok_or("truncated")?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    impl ModelProto {
        pub(super) fn parse(bytes: &[u8]) -> Result<Self, String> {
            let mut m = Self {
                pieces: Vec::new(),
                // The proto's defaults.
                model_type: 1,
                normalizer: String::new(),
                precompiled_charsmap_empty: true,
                add_dummy_prefix: true,
                remove_extra_whitespaces: true,
            };
            for (field, value) in fields(bytes)? {
                match (field, value) {
                    (1, Value::Bytes(piece)) => {
                        let (mut text, mut score, mut ty) = (String::new(), 0f32, 1i32);
                        for (f, v) in fields(piece)? {
                            match (f, v) {
                                (1, Value::Bytes(t)) => {
                                    text = String::from_utf8(t.to_vec())
                                        .map_err(|_| "a piece is not UTF-8")?;
                                }
                                (2, Value::Fixed32(s)) => score = f32::from_bits(s),
                                (3, Value::Varint(t)) => {
                                    ty = i32::try_from(t).map_err(|_| "piece type overflow")?;
                                }
                                _ => {}
                            }
                        }
                        m.pieces.push((text, score, ty));
                    }
                    (2, Value::Bytes(trainer)) => {
                        for (f, v) in fields(trainer)? {
                            if let (3, Value::Varint(t)) = (f, v) {
                                m.model_type = t;
                            }
                        }
                    }
                    (3, Value::Bytes(normalizer)) => {
                        for (f, v) in fields(normalizer)? {
                            match (f, v) {
                                (1, Value::Bytes(n)) => {
                                    m.normalizer = String::from_utf8_lossy(n).into_owned();
                                }
                                (2, Value::Bytes(c)) => m.precompiled_charsmap_empty = c.is_empty(),
                                (3, Value::Varint(b)) => m.add_dummy_prefix = b != 0,
                                (4, Value::Varint(b)) => m.remove_extra_whitespaces = b != 0,
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            if m.pieces.is_empty() {
                return Err("no pieces".into());
            }
            Ok(m)
        }
    }
}
