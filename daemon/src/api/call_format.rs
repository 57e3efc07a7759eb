//! The syntaxes lorad reads tool calls in, by what the model's chat template asks for:
//!
//! - Hermes (`<tool_call>{"name", "arguments"}</tool_call>`, anywhere after text; Hermes, Qwen
//!   2.5, SmolLM3, and every template that knows no tools, for which lorad describes them);
//! - Llama 3's JSON (`{"name": ..., "parameters": ...}` as the whole answer; Llama 3.1, 3.2);
//! - Mistral's (`[TOOL_CALLS] [{"name", "arguments"}, ...]` after optional text; Mistral 7B
//!   Instruct v0.3 and the templates written like it);
//! - Mistral's newer (`[TOOL_CALLS]name[ARGS]{...}` per call, after optional text; Mistral Small
//!   3.1 and later, Magistral, Devstral).

use lorad_grammar::tags::{
    LLAMA3_OPEN, MISTRAL_ARGS, MISTRAL_OPEN, hermes_calls, llama3_json_calls, mistral_args_calls,
    mistral_calls,
};
use lorad_grammar::{Constraint, Json};
use lorad_model::ToolSupport;

use super::hermes::{self, Call, Function};

/// A tool-call syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallFormat {
    Hermes,
    Llama3Json,
    Mistral,
    MistralArgs,
}

/// What a stream of text may send, as [`CallFormat::hold`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// No call opened yet: keep back this many bytes at the end, which may begin one.
    Keep(usize),
    /// A call opens at this byte: the text before it goes out, the rest is calls.
    Calls(usize),
}

impl CallFormat {
    /// The syntax for a template; `None` for one whose syntax lorad does not read.
    pub(crate) fn for_template(support: ToolSupport) -> Option<Self> {
        match support {
            ToolSupport::None | ToolSupport::Hermes => Some(Self::Hermes),
            ToolSupport::Llama3Json => Some(Self::Llama3Json),
            ToolSupport::Mistral => Some(Self::Mistral),
            ToolSupport::MistralArgs => Some(Self::MistralArgs),
            ToolSupport::Other => None,
        }
    }

    /// Calls of `fns`: `required`, calls only; otherwise text or calls. Llama 3's syntax
    /// holds one call per answer.
    pub(crate) fn constraint(self, fns: &[Function], required: bool, parallel: bool) -> Constraint {
        let tools: Vec<_> = fns.iter().map(|f| (f.name.clone(), f.parameters.clone())).collect();
        Constraint::Tags(match self {
            Self::Hermes => hermes_calls(&tools, required, parallel),
            Self::Llama3Json => llama3_json_calls(&tools, required),
            Self::Mistral => mistral_calls(&tools, required, parallel),
            Self::MistralArgs => mistral_args_calls(&tools, required, parallel),
        })
    }

    /// What opens the calls wherever it occurs (`None` for Llama 3, whose call is the answer).
    fn marker(self) -> Option<&'static str> {
        match self {
            Self::Hermes => Some(hermes::OPEN),
            Self::Mistral | Self::MistralArgs => Some(MISTRAL_OPEN),
            Self::Llama3Json => None,
        }
    }

    /// Where the calls begin in a whole answer, if it makes any.
    pub(crate) fn calls_start(self, text: &str) -> Option<usize> {
        match self.marker() {
            Some(open) => text.find(open),
            None => {
                let at = text.len() - text.trim_start().len();
                text[at..].starts_with(LLAMA3_OPEN).then_some(at)
            }
        }
    }

    /// The calls in `text` (from [`Self::calls_start`] on); `None` unless it is whole calls.
    pub(crate) fn parse(self, text: &str) -> Option<Vec<Call>> {
        match self {
            Self::Hermes => hermes::parse_calls(text),
            Self::Llama3Json => {
                let text = text.trim();
                let (call, end) = hermes::call_object(text)?;
                text[end..].trim().is_empty().then(|| vec![call])
            }
            Self::Mistral => parse_mistral(text),
            Self::MistralArgs => parse_mistral_args(text),
        }
    }

    /// For a stream that has sent `sent` bytes of text and holds `held` (what came since):
    /// what of `held` may go out as text, and where its calls begin once it opens one.
    pub(crate) fn hold(self, sent: usize, held: &str) -> Hold {
        match self.marker() {
            Some(open) => match held.find(open) {
                Some(at) => Hold::Calls(at),
                None => Hold::Keep(hermes::partial_open(held, open)),
            },
            // A call is the whole answer: once text went out, nothing more is held.
            None if sent > 0 => Hold::Keep(0),
            None => {
                let t = held.trim_start();
                if t.starts_with(LLAMA3_OPEN) {
                    Hold::Calls(held.len() - t.len())
                } else if LLAMA3_OPEN.starts_with(t) {
                    Hold::Keep(held.len())
                } else {
                    Hold::Keep(0)
                }
            }
        }
    }
}

/// Mistral's calls: `[TOOL_CALLS]`, then one JSON list of `{"name", "arguments"}` objects (or
/// one object), then nothing but whitespace. `arguments` given as JSON text is taken as it is.
fn parse_mistral(text: &str) -> Option<Vec<Call>> {
    let rest = text.trim_start().strip_prefix(MISTRAL_OPEN)?.trim_start();
    let end = hermes::json_value_end(rest)?;
    if !rest[end..].trim().is_empty() {
        return None;
    }
    let items = match Json::parse(&rest[..end]).ok()? {
        Json::Array(items) => items,
        call @ Json::Object(_) => vec![call],
        _ => return None,
    };
    let calls = items
        .iter()
        .map(|c| {
            let name = c.get("name")?.as_str()?.to_owned();
            let args = match c.get("arguments")? {
                Json::String(text) => Json::parse(text).ok()?.to_text(),
                args => args.to_text(),
            };
            Some((name, args))
        })
        .collect::<Option<Vec<Call>>>()?;
    (!calls.is_empty()).then_some(calls)
}

/// Mistral's newer calls: each `[TOOL_CALLS]name[ARGS]` and one JSON value, then nothing but
/// whitespace after the last. Arguments that are not an object are refused, as in the older
/// syntax's `arguments` text.
fn parse_mistral_args(text: &str) -> Option<Vec<Call>> {
    let mut rest = text.trim_start();
    let mut calls = Vec::new();
    while !rest.is_empty() {
        let call = rest.strip_prefix(MISTRAL_OPEN)?;
        let (name, after) = call.split_once(MISTRAL_ARGS)?;
        if name.is_empty() || !name.chars().all(super::tools::name_char) {
            return None;
        }
        let after = after.trim_start();
        let end = hermes::json_value_end(after)?;
        let args = Json::parse(&after[..end]).ok().filter(|a| matches!(a, Json::Object(_)))?;
        calls.push((name.to_owned(), args.to_text()));
        rest = after[end..].trim_start();
    }
    (!calls.is_empty()).then_some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_calls_are_whole_answers() {
        let f = CallFormat::Llama3Json;
        let call = r#"{"name": "get_weather", "parameters": {"city": "Oslo", "a": 1}}"#;
        assert_eq!(f.calls_start(call), Some(0));
        assert_eq!(
            f.parse(call).unwrap(),
            vec![("get_weather".into(), r#"{"city":"Oslo","a":1}"#.into())]
        );
        assert_eq!(f.calls_start(&format!("Sure: {call}")), None);
        assert!(f.parse(&format!("{call} more")).is_none() && f.parse(&call[..20]).is_none());
        // Held while it may still open a call, let go once it cannot.
        assert_eq!(f.hold(0, "{\"na"), Hold::Keep(4));
        assert_eq!(f.hold(0, "{\"name\": \"g"), Hold::Calls(0));
        assert_eq!(f.hold(0, "\n {\"name\": \"g"), Hold::Calls(2));
        assert_eq!(f.hold(0, "{\"nope"), Hold::Keep(0));
        assert_eq!(f.hold(5, "{\"name\": \""), Hold::Keep(0));
        assert_eq!(CallFormat::Hermes.hold(0, "a <tool"), Hold::Keep(5));
        assert_eq!(CallFormat::for_template(ToolSupport::Other), None);
    }

    #[test]
    fn mistral_calls_are_one_list_after_text() {
        let f = CallFormat::Mistral;
        assert_eq!(CallFormat::for_template(ToolSupport::Mistral), Some(f));
        let calls = r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "now", "arguments": "{}"}]"#;
        let text = format!("Let me look. {calls}\n");
        assert_eq!(f.calls_start(&text), Some(13));
        assert_eq!(
            f.parse(&text[13..]).unwrap(),
            vec![("get_weather".into(), r#"{"city":"Oslo"}"#.into()), ("now".into(), "{}".into())]
        );
        // One object instead of a list, and no space after the marker, as some models write.
        let one = r#"[TOOL_CALLS]{"name": "now", "arguments": {}}"#;
        assert_eq!(f.parse(one).unwrap(), vec![("now".into(), "{}".into())]);
        for bad in [&calls[..40], "[TOOL_CALLS] []", "[TOOL_CALLS] [1]", "[TOOL_CALLS] [] more"] {
            assert!(f.parse(bad).is_none(), "{bad}");
        }
        assert_eq!(f.calls_start("no calls"), None);
        assert_eq!(f.hold(0, "Sure [TOOL_"), Hold::Keep(6));
        assert_eq!(f.hold(0, "Sure [TOOL_CALLS] ["), Hold::Calls(5));
        assert_eq!(f.hold(0, "a [b]"), Hold::Keep(0));
    }

    #[test]
    fn mistral_args_calls_follow_one_another_after_text() {
        let f = CallFormat::MistralArgs;
        assert_eq!(CallFormat::for_template(ToolSupport::MistralArgs), Some(f));
        let calls = r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]now[ARGS] {}"#;
        let text = format!("Let me look.{calls}\n");
        assert_eq!(f.calls_start(&text), Some(12));
        assert_eq!(
            f.parse(&text[12..]).unwrap(),
            vec![("get_weather".into(), r#"{"city":"Oslo"}"#.into()), ("now".into(), "{}".into())]
        );
        for bad in [
            &calls[..40],
            "[TOOL_CALLS]now{}",
            "[TOOL_CALLS][ARGS]{}",
            "[TOOL_CALLS]n o[ARGS]{}",
            "[TOOL_CALLS]now[ARGS]42",
            "[TOOL_CALLS]now[ARGS]{} more",
            "[TOOL_CALLS]",
        ] {
            assert!(f.parse(bad).is_none(), "{bad}");
        }
        assert_eq!(f.hold(0, "Sure [TOOL_"), Hold::Keep(6));
        assert_eq!(f.hold(0, "Sure [TOOL_CALLS]n"), Hold::Calls(5));
    }
}
