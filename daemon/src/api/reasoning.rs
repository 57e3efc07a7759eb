//! Reasoning models' thinking, split from their answer (vLLM's `--reasoning-parser`): the text
//! a model writes between `<think>` and `</think>` goes to the message's `reasoning_content`
//! (and `reasoning`, vLLM's newer name), what follows to `content`.
//!
//! Under a grammar (`tools` that may be called, `response_format`), the answer thinks freely and
//! the grammar starts after its `</think>` (as vLLM does); a `qwen3` answer that does not open
//! with `<think>` (thinking turned off) follows the grammar from its first token.

use clap::ValueEnum;
use lorad_engine::ThinkFirst;

/// What opens the thinking.
const OPEN: &str = "<think>";
/// What closes it.
const CLOSE: &str = "</think>";

/// How a model marks its thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReasoningParser {
    /// DeepSeek R1 and its distills (Qwen and Llama based), QwQ: the answer thinks first and
    /// closes with `</think>`; its `<think>` is optional, as their chat templates open it in
    /// the prompt. An answer that never closes it (cut short) is all thinking.
    #[value(name = "deepseek_r1")]
    DeepseekR1,
    /// Qwen3-style: thinking only where the answer begins with `<think>` (a template or request
    /// may turn it off); until `</think>`, or the end when it never closes.
    #[value(name = "qwen3")]
    Qwen3,
}

impl ReasoningParser {
    /// Where a constrained answer's grammar starts: after the thinking, which a `qwen3` answer
    /// has only when it opens with `<think>`.
    pub(crate) fn constraint_after(self) -> ThinkFirst {
        let opening = match self {
            Self::DeepseekR1 => None,
            Self::Qwen3 => Some(OPEN.to_owned()),
        };
        ThinkFirst { close: CLOSE.to_owned(), opening }
    }
}

/// A whole answer's `(reasoning, content)`; either is `None` when empty.
pub(crate) fn split(parser: ReasoningParser, text: &str) -> (Option<String>, Option<String>) {
    let mut stream = ReasoningStream::new(parser);
    let (mut reasoning, mut content) = stream.push(text);
    let (r, c) = stream.finish();
    reasoning.push_str(&r);
    content.push_str(&c);
    let some = |s: String| (!s.is_empty()).then_some(s);
    (some(reasoning), some(content))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing but (possibly) the start of `<think>` yet.
    Start,
    Thinking,
    Answer,
}

/// Splits an answer as it streams: each piece of text becomes `(reasoning, content)`, holding
/// back only what may be the start of a marker.
#[derive(Debug, Clone)]
pub(crate) struct ReasoningStream {
    parser: ReasoningParser,
    phase: Phase,
    held: String,
}

impl ReasoningStream {
    pub(crate) fn new(parser: ReasoningParser) -> Self {
        Self { parser, phase: Phase::Start, held: String::new() }
    }

    /// What of `text` to send now, as `(reasoning, content)`.
    pub(crate) fn push(&mut self, text: &str) -> (String, String) {
        self.held.push_str(text);
        let (mut reasoning, mut content) = (String::new(), String::new());
        loop {
            match self.phase {
                Phase::Start => {
                    if let Some(rest) = self.held.strip_prefix(OPEN) {
                        self.held = rest.to_owned();
                        self.phase = Phase::Thinking;
                    } else if OPEN.starts_with(self.held.as_str()) {
                        return (reasoning, content); // maybe `<think>`: wait for more
                    } else {
                        self.phase = match self.parser {
                            ReasoningParser::DeepseekR1 => Phase::Thinking,
                            ReasoningParser::Qwen3 => Phase::Answer,
                        };
                    }
                }
                Phase::Thinking => {
                    if let Some(at) = self.held.find(CLOSE) {
                        reasoning.push_str(&self.held[..at]);
                        self.held.drain(..at + CLOSE.len());
                        self.phase = Phase::Answer;
                    } else {
                        let keep = partial_suffix(&self.held, CLOSE);
                        let rest = self.held.split_off(self.held.len() - keep);
                        reasoning.push_str(&std::mem::replace(&mut self.held, rest));
                        return (reasoning, content);
                    }
                }
                Phase::Answer => {
                    content.push_str(&std::mem::take(&mut self.held));
                    return (reasoning, content);
                }
            }
        }
    }

    /// The end of the answer: what was held back, as `(reasoning, content)`.
    pub(crate) fn finish(&mut self) -> (String, String) {
        let held = std::mem::take(&mut self.held);
        let thinking = match self.phase {
            Phase::Start => self.parser == ReasoningParser::DeepseekR1,
            Phase::Thinking => true,
            Phase::Answer => false,
        };
        if thinking { (held, String::new()) } else { (String::new(), held) }
    }
}

/// The length of the longest end of `text` that is a proper start of `marker`.
fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && text.ends_with(&marker[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` streamed in pieces of `step` bytes, the pieces' reasoning and content joined.
    fn streamed(parser: ReasoningParser, text: &str, step: usize) -> (String, String) {
        let mut s = ReasoningStream::new(parser);
        let (mut reasoning, mut content) = (String::new(), String::new());
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let (r, c) = s.push(&text[at..end]);
            reasoning.push_str(&r);
            content.push_str(&c);
            at = end;
        }
        let (r, c) = s.finish();
        (reasoning + &r, content + &c)
    }

    #[test]
    fn answers_split_at_the_close_in_any_pieces() {
        use ReasoningParser::{DeepseekR1, Qwen3};
        let cases: &[(ReasoningParser, &str, &str, &str)] = &[
            (DeepseekR1, "<think>\n9.8 is larger.</think>\n\n9.8", "\n9.8 is larger.", "\n\n9.8"),
            // The template opened the thinking in the prompt.
            (DeepseekR1, "Hmm, é </thin k></think>Paris", "Hmm, é </thin k>", "Paris"),
            // Cut short before the close: all thinking.
            (DeepseekR1, "<think>Let me see </thi", "Let me see </thi", ""),
            (DeepseekR1, "<thi", "<thi", ""),
            (DeepseekR1, "", "", ""),
            (Qwen3, "<think>a < b</think>yes", "a < b", "yes"),
            (Qwen3, "<think>still thinking", "still thinking", ""),
            // No thinking (turned off): all content, markers later on included.
            (Qwen3, "Paris. </think>", "", "Paris. </think>"),
            (Qwen3, "<th", "", "<th"),
            (Qwen3, " <think>x</think>", "", " <think>x</think>"),
        ];
        for &(parser, text, reasoning, content) in cases {
            for step in [1, 2, 3, 5, 100] {
                assert_eq!(
                    streamed(parser, text, step),
                    (reasoning.to_owned(), content.to_owned()),
                    "{parser:?} {text:?} in pieces of {step}"
                );
            }
            let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            assert_eq!(split(parser, text), (some(reasoning), some(content)), "{text:?}");
        }
    }

    #[test]
    fn only_a_possible_close_is_held_back() {
        let mut s = ReasoningStream::new(ReasoningParser::DeepseekR1);
        assert_eq!(s.push("<think>a"), ("a".into(), String::new()));
        assert_eq!(s.push("b</"), ("b".into(), String::new()));
        assert_eq!(s.push("x"), ("</x".into(), String::new()));
        assert_eq!(s.push("</think>"), (String::new(), String::new()));
        assert_eq!(s.push("c"), (String::new(), "c".into()));
        assert_eq!(partial_suffix("ab</thi", CLOSE), 5);
        assert_eq!(partial_suffix("é", CLOSE), 0);
    }
}
