//! OpenAI's `logprobs` on both endpoints: what a request asks for, and the engine's per-token
//! log-probabilities in each endpoint's wire shape.
//!
//! * Completions: `logprobs: N` (0 to 20) gives `{tokens, token_logprobs, top_logprobs,
//!   text_offset}`, `top_logprobs` a map of the N most likely tokens per position.
//! * Chat: `logprobs: true` (with `top_logprobs: N`, 0 to 20) gives `{content: [{token, logprob,
//!   bytes, top_logprobs: [{token, logprob, bytes}]}], refusal: null}`.
//!
//! Values are the model's own distribution (before penalties and temperature; see the engine).
//! Tokens are shown as their exact bytes, decoded lossily for `token` (a token holding part of
//! a character shows U+FFFD there; `bytes` is exact). The end-of-sequence token that stops a
//! request is not part of the answer and has no entry.

use std::collections::BTreeMap;

use lorad_engine::{MAX_LOGPROBS, TokenLogprob};
use lorad_model::Tokenizer;
use serde::Serialize;
use serde_json::Value;

use super::errors::ApiError;
use super::generate::Kind;
use super::params::flag;

/// JSON has no -infinity; OpenAI reports impossible tokens as -9999.
const FLOOR: f32 = -9999.0;

/// Completions' `logprobs`: absent, null or `false` is off; an integer 0..=20 is on, with that
/// many alternatives.
pub(crate) fn completion_param(v: Option<&Value>) -> Result<Option<usize>, ApiError> {
    match v {
        None | Some(Value::Null | Value::Bool(false)) => Ok(None),
        Some(v) => count("logprobs", v).map(Some),
    }
}

/// Chat's `logprobs` (a boolean) and `top_logprobs` (0..=20, only with `logprobs: true`).
pub(crate) fn chat_param(
    logprobs: Option<&Value>,
    top: Option<&Value>,
) -> Result<Option<usize>, ApiError> {
    let on = flag("logprobs", logprobs)?;
    let top = match top {
        None | Some(Value::Null) => None,
        Some(v) => Some(count("top_logprobs", v)?),
    };
    match (on, top) {
        (false, Some(n)) if n > 0 => Err(ApiError::bad_request(
            "top_logprobs",
            "'top_logprobs' needs 'logprobs' set to true",
        )
        .code("invalid_value")),
        (false, _) => Ok(None),
        (true, n) => Ok(Some(n.unwrap_or(0))),
    }
}

/// An integer from 0 to [`MAX_LOGPROBS`].
fn count(param: &str, v: &Value) -> Result<usize, ApiError> {
    v.as_u64().and_then(|n| usize::try_from(n).ok()).filter(|&n| n <= MAX_LOGPROBS).ok_or_else(
        || {
            ApiError::bad_request(
                param,
                format!(
                    "Invalid value for '{param}': {v}; expected an integer from 0 to {MAX_LOGPROBS}"
                ),
            )
            .code("invalid_value")
        },
    )
}

/// Completions' `logprobs` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct CompletionLogprobs {
    pub(crate) tokens: Vec<String>,
    /// Null for an echoed prompt's first token (nothing before it to predict it from).
    pub(crate) token_logprobs: Vec<Option<f32>>,
    pub(crate) top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Character offset of each token in the answer's text.
    pub(crate) text_offset: Vec<usize>,
}

/// One alternative in chat's `top_logprobs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ChatTopLogprob {
    pub(crate) token: String,
    pub(crate) logprob: f32,
    pub(crate) bytes: Vec<u8>,
}

/// One token in chat's `logprobs.content`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ChatTokenLogprob {
    pub(crate) token: String,
    pub(crate) logprob: f32,
    pub(crate) bytes: Vec<u8>,
    pub(crate) top_logprobs: Vec<ChatTopLogprob>,
}

/// Chat's `logprobs` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct ChatLogprobs {
    pub(crate) content: Vec<ChatTokenLogprob>,
    /// Always null: lorad does not refuse.
    pub(crate) refusal: Option<String>,
}

/// Logprobs of some tokens, in the shape of the request's endpoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LogprobsOut {
    /// `/v1/completions`.
    Completion(CompletionLogprobs),
    /// `/v1/chat/completions`.
    Chat(ChatLogprobs),
}

/// Writes one request's logprobs, chunk after chunk (completions' `text_offset` continues across
/// a stream's chunks).
#[derive(Debug)]
pub(crate) struct LogprobsWriter {
    kind: Kind,
    tokenizer: Tokenizer,
    /// Characters of answer text before the next token.
    offset: usize,
}

impl LogprobsWriter {
    /// A writer for a request of `kind`.
    pub(crate) fn new(kind: Kind, tokenizer: Tokenizer) -> Self {
        Self { kind, tokenizer, offset: 0 }
    }

    /// `(token text, exact bytes)` of `id`.
    fn piece(&self, id: u32) -> (String, Vec<u8>) {
        let bytes = self.tokenizer.token_bytes(id).unwrap_or_default();
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    }

    /// The wire object for `lps` (the next tokens of the answer).
    pub(crate) fn write(&mut self, lps: &[TokenLogprob]) -> LogprobsOut {
        let eos = self.tokenizer.eos_token_ids();
        let lps: Vec<&TokenLogprob> = lps.iter().filter(|lp| !eos.contains(&lp.token)).collect();
        match self.kind {
            Kind::Completion => {
                let mut out = CompletionLogprobs::default();
                for lp in lps {
                    self.push(&mut out, lp.token, Some(lp));
                }
                LogprobsOut::Completion(out)
            }
            Kind::Chat => {
                let content = lps
                    .into_iter()
                    .map(|lp| {
                        let (token, bytes) = self.piece(lp.token);
                        let top_logprobs = lp
                            .top
                            .iter()
                            .map(|&(id, l)| {
                                let (token, bytes) = self.piece(id);
                                ChatTopLogprob { token, logprob: l.max(FLOOR), bytes }
                            })
                            .collect();
                        ChatTokenLogprob {
                            token,
                            logprob: lp.logprob.max(FLOOR),
                            bytes,
                            top_logprobs,
                        }
                    })
                    .collect();
                LogprobsOut::Chat(ChatLogprobs { content, refusal: None })
            }
        }
    }
}

impl LogprobsWriter {
    /// Completions' entries of an echoed prompt: its first token (`first`, null logprob), then
    /// the scored ones (`lps`, the engine's prompt logprobs). Written before any answer token.
    pub(crate) fn prompt(&mut self, first: u32, lps: &[TokenLogprob]) -> LogprobsOut {
        let mut out = CompletionLogprobs::default();
        self.push(&mut out, first, None);
        for lp in lps {
            self.push(&mut out, lp.token, Some(lp));
        }
        LogprobsOut::Completion(out)
    }

    /// The entries of a whole answer: with `echo` (the prompt's first token and its scored
    /// tokens), the prompt's first, so `text_offset` runs through the echoed prompt.
    pub(crate) fn answer(
        &mut self,
        echo: Option<(u32, &[TokenLogprob])>,
        answer: &[TokenLogprob],
    ) -> LogprobsOut {
        match echo {
            Some((first, prompt)) => self.prompt(first, prompt).then(self.write(answer)),
            None => self.write(answer),
        }
    }

    /// Appends one completions entry (`lp: None`: a token nothing predicted).
    fn push(&mut self, out: &mut CompletionLogprobs, id: u32, lp: Option<&TokenLogprob>) {
        let (token, _) = self.piece(id);
        out.text_offset.push(self.offset);
        self.offset += token.chars().count();
        out.tokens.push(token);
        out.token_logprobs.push(lp.map(|lp| lp.logprob.max(FLOOR)));
        out.top_logprobs.push(
            lp.map(|lp| lp.top.iter().map(|&(id, l)| (self.piece(id).0, l.max(FLOOR))).collect()),
        );
    }
}

impl CompletionLogprobs {
    /// Appends `more` (the entries that follow these).
    pub(crate) fn extend(&mut self, more: CompletionLogprobs) {
        self.tokens.extend(more.tokens);
        self.token_logprobs.extend(more.token_logprobs);
        self.top_logprobs.extend(more.top_logprobs);
        self.text_offset.extend(more.text_offset);
    }
}

impl LogprobsOut {
    /// These entries followed by `more`'s (of the same endpoint).
    pub(crate) fn then(self, more: LogprobsOut) -> LogprobsOut {
        match (self, more) {
            (Self::Completion(mut a), Self::Completion(b)) => {
                a.extend(b);
                Self::Completion(a)
            }
            (Self::Chat(mut a), Self::Chat(b)) => {
                a.content.extend(b.content);
                Self::Chat(a)
            }
            (a, _) => a,
        }
    }

    /// The completions object, if this is one.
    pub(crate) fn completion(self) -> Option<CompletionLogprobs> {
        match self {
            Self::Completion(c) => Some(c),
            Self::Chat(_) => None,
        }
    }

    /// The chat object, if this is one.
    pub(crate) fn chat(self) -> Option<ChatLogprobs> {
        match self {
            Self::Chat(c) => Some(c),
            Self::Completion(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parameters_and_their_errors() {
        assert_eq!(completion_param(None).unwrap(), None);
        assert_eq!(completion_param(Some(&json!(null))).unwrap(), None);
        assert_eq!(completion_param(Some(&json!(0))).unwrap(), Some(0));
        assert_eq!(completion_param(Some(&json!(5))).unwrap(), Some(5));
        for bad in [json!(21), json!(-1), json!(1.5), json!("3"), json!(true)] {
            let e = completion_param(Some(&bad)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("logprobs"), "{bad}");
        }
        assert_eq!(chat_param(None, None).unwrap(), None);
        assert_eq!(chat_param(Some(&json!(true)), None).unwrap(), Some(0));
        assert_eq!(chat_param(Some(&json!(true)), Some(&json!(20))).unwrap(), Some(20));
        assert_eq!(chat_param(Some(&json!(false)), Some(&json!(0))).unwrap(), None);
        let param = |l: Value, t: Value| chat_param(Some(&l), Some(&t)).unwrap_err().param;
        assert_eq!(param(json!(false), json!(2)).as_deref(), Some("top_logprobs"));
        assert_eq!(param(json!(true), json!(21)).as_deref(), Some("top_logprobs"));
        assert_eq!(param(json!(1), json!(null)).as_deref(), Some("logprobs"));
    }
}
