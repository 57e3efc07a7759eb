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
use crate::tokenizer::tk_err;

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
    let ids: HashMap<&str, u32> = (0u32..).zip(tokens).map(|(i, t)| (*t, i)).collect();
    let merges = merges(tokens, types, &scores, &ids);
    let vocab: Vocab = (0u32..).zip(tokens).map(|(i, t)| ((*t).to_owned(), i)).collect();
    let unk = match m.opt_u32("tokenizer.ggml.unknown_token_id")? {
        Some(id) => tokens.get(id as usize).copied(),
        None => tokens.iter().zip(types).find(|(_, t)| **t == 2).map(|(s, _)| *s),
    };
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk.to_owned()).fuse_unk(true);
    }
    let bpe = builder
        .build()
        .map_err(tk_err(format!("{}: SentencePiece vocabulary", m.path.display())))?;
    let prefix = m.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(tk_err(format!("{}: normalizer", m.path.display())))
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
        .map_err(tk_err(format!("{}: normalizer", m.path.display())))?;
    tk.with_decoder(Some(DecoderSequence::new(decode)));
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
