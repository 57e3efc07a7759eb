//! What callers submit to the engine and what they get back.

use tokio::sync::mpsc::UnboundedReceiver;

use crate::logprobs::TokenLogprob;
use crate::sampling::SamplingParams;
use crate::{EngineError, Result};

/// A generation request, already tokenized.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Adapter name; `None` runs the base model.
    pub adapter: Option<String>,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Completion token limit; `None` means "up to the context window".
    pub max_tokens: Option<usize>,
    /// Stop strings: generation ends at the first occurrence, which is not returned unless
    /// `include_stop_str_in_output`.
    pub stop: Vec<String>,
    /// End the text with the stop string that matched instead of cutting it (vLLM's).
    pub include_stop_str_in_output: bool,
    /// Keep generating past end-of-sequence tokens (benchmarks).
    pub ignore_eos: bool,
    /// Tokens that end generation like end-of-sequence does (vLLM's `stop_token_ids`); the
    /// token is not part of the text.
    pub stop_token_ids: Vec<u32>,
    /// End-of-sequence and `stop_token_ids` are not sampled before this many tokens (vLLM's
    /// `min_tokens`).
    pub min_tokens: usize,
    /// Also score the prompt: the log-probability of each prompt token after the first, given
    /// the tokens before it, with this many alternatives (OpenAI's `echo` with `logprobs`,
    /// what evaluation harnesses score answers with). With it, `max_tokens: Some(0)` is
    /// allowed: score only, generate nothing.
    pub prompt_logprobs: Option<usize>,
    /// Salts the prefix cache: this request shares cached K/V only with requests of the same
    /// salt (and model or adapter). Tenants that must not learn, by timing, which prompts
    /// others sent give each their own secret salt (vLLM's `cache_salt`).
    pub cache_salt: Option<String>,
    /// Structured output: the answer is constrained to this grammar (JSON, a JSON Schema, a
    /// regular expression, a choice). Tokens that would leave it are never sampled; end of
    /// sequence comes only once the answer is complete, and the answer ends as soon as
    /// nothing more can follow.
    pub constraint: Option<std::sync::Arc<lorad_grammar::Grammar>>,
    /// With `constraint`: the grammar starts only after the model's thinking (as under vLLM's
    /// reasoning parsers); until then nothing is masked.
    pub constraint_after: Option<ThinkFirst>,
    /// Scheduling priority under [`crate::SchedulingPolicy::Priority`]: lower runs first
    /// (vLLM's `priority`); requests of one priority run in arrival order. Must be 0 under
    /// first-come-first-served.
    pub priority: i64,
}

impl GenerateRequest {
    /// A greedy request on the base model.
    pub fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Self {
        Self {
            prompt,
            adapter: None,
            sampling: SamplingParams::greedy(),
            max_tokens: Some(max_tokens),
            stop: Vec::new(),
            include_stop_str_in_output: false,
            ignore_eos: false,
            stop_token_ids: Vec::new(),
            min_tokens: 0,
            prompt_logprobs: None,
            cache_salt: None,
            constraint: None,
            constraint_after: None,
            priority: 0,
        }
    }
}

/// Why generation ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` or the context window.
    Length,
}

impl FinishReason {
    /// The OpenAI wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// Where a constrained answer's grammar starts when the model thinks first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinkFirst {
    /// The grammar starts after this text (a reasoning model's `</think>`).
    pub close: String,
    /// When set, the answer waits only if it opens with this (`<think>`, for models that may or
    /// may not think); one that does not follows the grammar from its first token.
    pub opening: Option<String>,
}

/// Token counts of a finished request, and how long it queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Prompt tokens whose K/V came from the prefix cache (OpenAI's
    /// `usage.prompt_tokens_details.cached_tokens`).
    pub cached_tokens: usize,
    /// From reaching the scheduler to its first admission into the running batch (vLLM's
    /// queue time; a preempted request's second wait is not added).
    pub queued: std::time::Duration,
}

/// Events of one request, in order: any number of `Delta`, then one `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// New text (possibly empty while a multi-byte character or a possible stop string is
    /// still incomplete) and the token ids that produced it.
    Delta {
        /// Text to append.
        text: String,
        /// Token ids sampled this step.
        tokens: Vec<u32>,
        /// Their log-probabilities, one per token, when the request asked for them
        /// ([`SamplingParams::logprobs`]); empty otherwise.
        logprobs: Vec<TokenLogprob>,
    },
    /// Log-probabilities of prompt tokens (with [`GenerateRequest::prompt_logprobs`]): the
    /// next ones in prompt order, from the second token on; all of them arrive before the first
    /// `Delta`.
    Prompt {
        /// One entry per prompt token.
        logprobs: Vec<TokenLogprob>,
    },
    /// The request finished.
    Done {
        /// Why.
        finish_reason: FinishReason,
        /// Token counts.
        usage: Usage,
    },
    /// The request failed inside the engine.
    Error(String),
}

/// The receiving end of a request. Dropping it cancels the request and frees its slot.
#[derive(Debug)]
pub struct GenerationStream {
    pub(crate) rx: UnboundedReceiver<GenerationEvent>,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
}

/// A finished request, collected.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Generated text.
    pub text: String,
    /// Generated token ids (including a final end-of-sequence token, if any).
    pub tokens: Vec<u32>,
    /// Their log-probabilities when the request asked for them, one per token; else empty.
    pub logprobs: Vec<TokenLogprob>,
    /// Log-probabilities of the prompt's tokens from the second on, when asked for; else empty.
    pub prompt_logprobs: Vec<TokenLogprob>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// When the first generated token arrived (time-to-first-token metrics); `None` when
    /// nothing was generated.
    pub first_token_at: Option<std::time::Instant>,
}

impl GenerationStream {
    /// The next event; `None` once the request is over.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        self.rx.recv().await
    }

    /// Blocking twin of [`Self::next`], for threads outside an async runtime.
    pub fn blocking_next(&mut self) -> Option<GenerationEvent> {
        self.rx.blocking_recv()
    }

    /// Waits for the whole completion. Dropping the future cancels the request.
    pub async fn collect(mut self) -> Result<Completion> {
        let mut acc = Collector::default();
        loop {
            if let Some(done) = acc.take(self.next().await) {
                return done;
            }
        }
    }

    /// Blocking twin of [`Self::collect`].
    pub fn collect_blocking(mut self) -> Result<Completion> {
        let mut acc = Collector::default();
        loop {
            if let Some(done) = acc.take(self.blocking_next()) {
                return done;
            }
        }
    }
}

/// Folds a request's events into a [`Completion`]; shared by the async and blocking collectors.
#[derive(Debug, Default)]
struct Collector {
    text: String,
    tokens: Vec<u32>,
    logprobs: Vec<TokenLogprob>,
    prompt_logprobs: Vec<TokenLogprob>,
    first_token_at: Option<std::time::Instant>,
}

impl Collector {
    /// Takes the next event (`None`: the engine went away); returns the outcome once known.
    fn take(&mut self, ev: Option<GenerationEvent>) -> Option<Result<Completion>> {
        match ev {
            Some(GenerationEvent::Delta { text, tokens, logprobs }) => {
                if self.first_token_at.is_none() && !tokens.is_empty() {
                    self.first_token_at = Some(std::time::Instant::now());
                }
                self.text.push_str(&text);
                self.tokens.extend(tokens);
                self.logprobs.extend(logprobs);
                None
            }
            Some(GenerationEvent::Prompt { logprobs }) => {
                self.prompt_logprobs.extend(logprobs);
                None
            }
            Some(GenerationEvent::Done { finish_reason, usage }) => Some(Ok(Completion {
                text: std::mem::take(&mut self.text),
                tokens: std::mem::take(&mut self.tokens),
                logprobs: std::mem::take(&mut self.logprobs),
                prompt_logprobs: std::mem::take(&mut self.prompt_logprobs),
                finish_reason,
                usage,
                first_token_at: self.first_token_at.take(),
            })),
            Some(GenerationEvent::Error(e)) => Some(Err(EngineError::Generation(e))),
            None => Some(Err(EngineError::Shutdown)),
        }
    }
}
