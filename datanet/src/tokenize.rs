//! Turning normalized records into token ids with the base model's tokenizer and chat template.
//!
//! Chat records are split into a prompt (every message but the last, rendered with the generation
//! prompt) and a completion (the rest of the full rendering), tokenized separately, so that
//! `prompt_len` marks exactly where the trained-on tokens start. This is the same split the
//! server's generation sees: the model is trained to continue the prompt it will be given.

use lorad_model::{ChatTemplate, Tokenizer};

use crate::record::{RawRecord, RecordContent};

/// The base model's text side, which a build tokenizes with.
#[derive(Debug, Clone, Copy)]
pub struct TextSide<'a> {
    /// The base model's tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// The base model's chat template (renders chat records).
    pub chat_template: &'a ChatTemplate,
    /// The base model's hash (recorded in the manifest; lorad uses `lorad_model::base_hash`).
    pub base_hash: &'a str,
}

/// A record's tokens and where its trained-on part starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedRecord {
    /// All token ids: prompt, then completion.
    pub tokens: Vec<u32>,
    /// Number of leading prompt tokens (0 for text records).
    pub prompt_len: usize,
}

/// Tokenizes one record: text records entirely; chat records as `encode(prompt)` followed by
/// `encode(completion)` (with a leading BOS dropped from the completion). Fails, in words, when
/// the template cannot render the conversation, the full rendering does not extend the prompt,
/// the completion is empty, or a token id is outside the vocabulary.
pub fn tokenize_record(
    content: &RecordContent,
    text: &TextSide<'_>,
) -> Result<TokenizedRecord, String> {
    let tok = text.tokenizer;
    let encode = |s: &str, what: &str| tok.encode(s).map_err(|e| format!("tokenizing {what}: {e}"));
    let out = match content {
        RecordContent::Text(t) => TokenizedRecord { tokens: encode(t, "text")?, prompt_len: 0 },
        RecordContent::Chat(messages) => {
            let (_, context) = messages.split_last().ok_or("chat record has no messages")?;
            let render = |ms, gen_prompt| {
                text.chat_template
                    .render(ms, gen_prompt)
                    .map_err(|e| format!("chat template cannot render the conversation: {e}"))
            };
            let prompt = render(context, true)?;
            let full = render(messages, false)?;
            let completion = full.strip_prefix(prompt.as_str()).ok_or(
                "the chat template's rendering of the whole conversation does not start with its \
                 rendering of the prompt (all messages but the last, plus the generation prompt), \
                 so the trained-on part cannot be located",
            )?;
            let mut tokens = encode(&prompt, "prompt")?;
            let prompt_len = tokens.len();
            let mut rest = encode(completion, "completion")?;
            if tok.bos_token_id().is_some() && rest.first() == tok.bos_token_id().as_ref() {
                rest.remove(0);
            }
            if rest.is_empty() {
                return Err("the last assistant message renders to no tokens".into());
            }
            tokens.extend_from_slice(&rest);
            TokenizedRecord { tokens, prompt_len }
        }
    };
    if out.tokens.is_empty() {
        return Err("the record encodes to no tokens".into());
    }
    let vocab = tok.vocab_size();
    if let Some(&bad) = out.tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(format!("tokenizer produced id {bad}, outside its vocabulary of {vocab}"));
    }
    Ok(out)
}

/// Tokenizes `records` on all cores, keeping their order.
pub(crate) fn tokenize_all(
    records: &[(u64, RawRecord)],
    text: &TextSide<'_>,
) -> Vec<Result<TokenizedRecord, String>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    // Small chunks balance uneven record lengths; results are reassembled in order below.
    let chunk = records.len().div_ceil(threads * 8).max(1);
    if threads == 1 || records.len() <= chunk {
        return records.iter().map(|(_, r)| tokenize_record(&r.content, text)).collect();
    }
    let chunks: Vec<_> = records.chunks(chunk).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<Result<TokenizedRecord, String>>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(c) = chunks.get(i) else { break done };
                        done.push((
                            i,
                            c.iter().map(|(_, r)| tokenize_record(&r.content, text)).collect(),
                        ));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(done) => done,
                // A panic inside the tokenizer is a bug there; re-raise it on this thread rather
                // than lose records.
                Err(payload) => std::panic::resume_unwind(payload),
            })
            .collect()
    });
    parts.sort_by_key(|(i, _)| *i);
    parts.into_iter().flat_map(|(_, p)| p).collect()
}
