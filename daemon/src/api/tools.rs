//! Tool calling: `tools` with `tool_choice` `"auto"` (the default), `"required"`, a named
//! function or `"none"`, enforced by structured output and returned as OpenAI's
//! `message.tool_calls`.
//!
//! Calls are written in the syntax the model's chat template asks for ([`CallFormat`]): Hermes
//! (`<tool_call>...</tool_call>`, also for templates that know no tools), Llama 3's JSON,
//! Mistral's `[TOOL_CALLS]` list or its newer `[TOOL_CALLS]name[ARGS]{...}`. Under `"auto"` the
//! answer is free text until the model opens a call, from which on it must be a call of a tool
//! that exists with arguments its schema accepts; under `"required"` it is calls only. A named
//! function's answer is its arguments object. Templates with a call syntax lorad does not read
//! get `"auto"` refused with a 400.

use lorad_grammar::Json;
use lorad_model::ToolSupport;

use super::call_format::{CallFormat, Hold};
use super::call_stream::{CallDelta, CallScanner};
use super::errors::ApiError;
use super::hermes::Function;
use super::openai::{FunctionCallOut, MessageOut, ToolCallOut};
use super::reasoning::{ReasoningParser, ReasoningStream};
use super::structured::Spec;

/// How the answer calls tools.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolMode {
    /// Exactly this function: the answer is its arguments object.
    Named(String),
    /// One call or more (one with `parallel_tool_calls: false`), nothing else.
    Required(CallFormat),
    /// Text, or calls if the model makes any.
    Auto(CallFormat),
}

impl ToolMode {
    /// The call syntax of a mode that reads calls from text.
    fn format(&self) -> Option<CallFormat> {
        match self {
            Self::Named(_) => None,
            Self::Required(f) | Self::Auto(f) => Some(*f),
        }
    }
}

/// A request's tool calling, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct ToolUse {
    pub(crate) mode: ToolMode,
    /// The constraint that enforces it.
    pub(crate) spec: Spec,
    /// The tool definitions as given (key order kept), for the chat template's `tools`.
    pub(crate) definitions: Json,
}

fn invalid(param: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(param, format!("Invalid value for '{param}': {why}"))
        .code("invalid_value")
}

fn functions(tools: &Json) -> Result<Vec<Function>, ApiError> {
    let Json::Array(list) = tools else {
        return Err(invalid("tools", "expected an array of tools"));
    };
    if list.is_empty() {
        return Err(invalid("tools", "expected at least one tool"));
    }
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            let at = |k: &str| format!("tools[{i}].{k}");
            if t.get("type").and_then(Json::as_str) != Some("function") {
                return Err(invalid(&at("type"), "only 'function' tools are supported"));
            }
            let Some(f @ Json::Object(_)) = t.get("function") else {
                return Err(invalid(&at("function"), "expected an object"));
            };
            let name = f.get("name").and_then(Json::as_str).unwrap_or_default();
            let name_ok = (1..=64).contains(&name.len()) && name.chars().all(name_char);
            if !name_ok {
                return Err(invalid(
                    &at("function.name"),
                    "1 to 64 letters, digits, underscores or dashes",
                ));
            }
            let parameters = match f.get("parameters") {
                // OpenAI: omitted parameters mean a function without arguments.
                None | Some(Json::Null) => Json::Object(vec![
                    ("type".into(), Json::String("object".into())),
                    ("additionalProperties".into(), Json::Bool(false)),
                ]),
                Some(p @ Json::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(invalid(
                        &at("function.parameters"),
                        "expected a JSON Schema object",
                    ));
                }
            };
            Ok(Function { name: name.to_owned(), parameters })
        })
        .collect()
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls`; `None` when no tool may be called.
/// `support`: how the model's chat template presents tools.
pub(crate) fn parse(
    tools: Option<&Json>,
    choice: Option<&Json>,
    parallel: Option<bool>,
    support: ToolSupport,
) -> Result<Option<ToolUse>, ApiError> {
    const P: &str = "tool_choice";
    let tools = tools.filter(|t| !matches!(t, Json::Null));
    let choice = choice.filter(|c| !matches!(c, Json::Null));
    let Some(tools) = tools else {
        return match choice.map(Json::as_str) {
            None | Some(Some("none")) => Ok(None),
            _ => Err(invalid(P, "a tool choice needs 'tools'")),
        };
    };
    let fns = functions(tools)?;
    // A template with a syntax lorad does not read still gets `required` calls in Hermes's.
    let format = CallFormat::for_template(support);
    let auto = || -> Result<ToolMode, ApiError> {
        format.map(ToolMode::Auto).ok_or_else(|| {
            invalid(
                P,
                "\"auto\" (the default when tools are given) needs lorad to read this model's own tool-call syntax, which its chat template asks for in a form lorad does not read (it reads Hermes's <tool_call>, Llama 3's JSON and Mistral's [TOOL_CALLS], as a list or name[ARGS]); send \"required\", \"none\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
            )
        })
    };
    let mode = match choice {
        None => auto()?,
        Some(Json::String(s)) => match s.as_str() {
            "none" => return Ok(None),
            "auto" => auto()?,
            "required" => ToolMode::Required(format.unwrap_or(CallFormat::Hermes)),
            other => return Err(invalid(P, format!("unknown choice '{other}'"))),
        },
        Some(c @ Json::Object(_)) => {
            let name = c.pointer("/function/name").and_then(Json::as_str);
            match name {
                Some(n) if fns.iter().any(|f| f.name == n) => ToolMode::Named(n.to_owned()),
                Some(n) => return Err(invalid(P, format!("no tool is named '{n}'"))),
                None => {
                    return Err(invalid(
                        P,
                        "expected {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    ));
                }
            }
        }
        Some(_) => return Err(invalid(P, "expected a string or an object")),
    };
    let parallel = parallel.unwrap_or(true);
    let constraint = match &mode {
        ToolMode::Named(n) => {
            let f = fns.iter().find(|f| &f.name == n).ok_or_else(|| invalid(P, "no such tool"))?;
            lorad_grammar::Constraint::JsonSchema(f.parameters.clone())
        }
        ToolMode::Required(f) => f.constraint(&fns, true, parallel),
        ToolMode::Auto(f) => f.constraint(&fns, false, parallel),
    };
    Ok(Some(ToolUse { mode, spec: (constraint, "tools"), definitions: tools.clone() }))
}

/// A new call id (`call_` and 24 hex digits).
pub(crate) fn call_id() -> String {
    super::ids::new_id("call").replacen('-', "_", 1)
}

fn call_out(name: String, arguments: String) -> ToolCallOut {
    ToolCallOut {
        index: None,
        id: Some(call_id()),
        kind: Some("function"),
        function: FunctionCallOut { name: Some(name), arguments },
    }
}

/// An answer that calls tools.
#[derive(Debug)]
pub(crate) struct ToolAnswer {
    /// Text before the calls (`"auto"`), if any.
    pub(crate) content: Option<String>,
    pub(crate) calls: Vec<ToolCallOut>,
}

/// The tool calls an answer's text makes; `None` when it makes none, or is not a complete
/// answer (cut by `max_tokens` or a stop string): the caller then returns it as content.
pub(crate) fn answer(mode: &ToolMode, text: &str) -> Option<ToolAnswer> {
    match mode {
        ToolMode::Named(name) => {
            Json::parse(text).ok()?;
            Some(ToolAnswer { content: None, calls: vec![call_out(name.clone(), text.to_owned())] })
        }
        ToolMode::Required(f) | ToolMode::Auto(f) => {
            let at = f.calls_start(text)?;
            let calls = f.parse(&text[at..])?;
            let before = text[..at].trim_end();
            Some(ToolAnswer {
                content: (!before.is_empty()).then(|| before.to_owned()),
                calls: calls.into_iter().map(|(n, a)| call_out(n, a)).collect(),
            })
        }
    }
}

/// Whether `c` may be in a tool's name (letters, digits, `_`, `-`): names need no escaping in
/// JSON, and every call syntax's parser ends a name at the first other character.
pub(crate) fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The message of a whole answer (`role` set) and the finish reason its calls imply, if any:
/// the calls it makes, or its text when it makes none or was cut short.
/// With `reasoning`, the answer's thinking goes to `reasoning` (`reasoning_content` too, once
/// serialized) and only what follows it is read as content.
pub(crate) fn message(
    mode: Option<&ToolMode>,
    reasoning: Option<ReasoningParser>,
    text: String,
) -> (MessageOut, Option<&'static str>) {
    let role = Some("assistant");
    let (thought, text) = match reasoning {
        Some(parser) => super::reasoning::split(parser, &text),
        None => (None, Some(text)),
    };
    let message =
        |content, tool_calls| MessageOut { role, content, reasoning: thought.clone(), tool_calls };
    let Some(text) = text else { return (message(None, None), None) };
    match mode.and_then(|m| answer(m, &text).map(|a| (m, a))) {
        Some((m, a)) => {
            // OpenAI ends a forced call of a named function with "stop".
            let finish = (!matches!(m, ToolMode::Named(_))).then_some("tool_calls");
            (message(a.content, Some(a.calls)), finish)
        }
        None => (message(Some(text), None), None),
    }
}

/// A stream's delta carrying thinking.
pub(crate) fn thinking(text: String) -> MessageOut {
    MessageOut { reasoning: Some(text), ..MessageOut::default() }
}

/// What a stream sends of an answer that may call tools: text as it comes, except what may be
/// the opening of a call (held back until the next text shows it is not); then each call's id
/// and name once its header is written, and its arguments as they come ([`CallScanner`]).
#[derive(Debug)]
pub(crate) struct ToolStream {
    /// The call syntax, when the answer may make calls.
    format: Option<CallFormat>,
    held: String,
    /// Bytes of text sent so far.
    sent: usize,
    /// A call has begun: everything from here is held, and read by `scanner`.
    calling: bool,
    scanner: Option<CallScanner>,
    /// Splits thinking off the text first, with `--reasoning-parser`.
    reasoning: Option<ReasoningStream>,
}

/// What a stream sends now.
#[derive(Debug, Default)]
pub(crate) struct Pushed {
    /// Text (content).
    pub(crate) text: String,
    /// Call deltas: a new call's index, id and name, and arguments as they come.
    pub(crate) calls: Vec<ToolCallOut>,
    /// Thinking (before the text), with `--reasoning-parser`.
    pub(crate) reasoning: String,
}

/// How a stream ends.
#[derive(Debug)]
pub(crate) enum StreamEnd {
    /// The answer made calls: these are the ones not sent yet (none when they were streamed),
    /// with their `index` set.
    Calls(Vec<ToolCallOut>),
    /// Held-back text that made no call, to send as content.
    Text(String),
    /// Calls were streamed and the answer was cut short inside one (`max_tokens`, a stop
    /// string): nothing more to send.
    Cut,
}

impl ToolStream {
    pub(crate) fn new(mode: Option<ToolMode>, reasoning: Option<ReasoningParser>) -> Self {
        let calling = matches!(mode, Some(ToolMode::Required(_)));
        let format = mode.and_then(|m| m.format());
        let scanner = format.map(CallScanner::new);
        let reasoning = reasoning.map(ReasoningStream::new);
        Self { format, held: String::new(), sent: 0, calling, scanner, reasoning }
    }

    /// What of `text` (and of the calls it completes) to send now.
    pub(crate) fn push(&mut self, text: &str) -> Pushed {
        let (reasoning, text) = match &mut self.reasoning {
            Some(split) => split.push(text),
            None => (String::new(), text.to_owned()),
        };
        let Some(format) = self.format else {
            return Pushed { text, calls: Vec::new(), reasoning };
        };
        self.held.push_str(&text);
        let mut out = Pushed { reasoning, ..Pushed::default() };
        if !self.calling {
            let keep = match format.hold(self.sent, &self.held) {
                Hold::Keep(keep) => keep,
                Hold::Calls(at) => {
                    self.calling = true;
                    self.held.len() - at
                }
            };
            let rest = self.held.split_off(self.held.len() - keep);
            out.text = std::mem::replace(&mut self.held, rest);
            self.sent += out.text.len();
        }
        if self.calling
            && let Some(scanner) = &mut self.scanner
        {
            out.calls = coalesce(scanner.feed(&self.held));
        }
        out
    }

    /// The end of the answer's thinking: what is left of it to send. Call before
    /// [`Self::finish`], which then has the rest of the text.
    pub(crate) fn finish_reasoning(&mut self) -> String {
        let Some(split) = &mut self.reasoning else { return String::new() };
        let (thought, text) = split.finish();
        self.held.push_str(&text);
        thought
    }

    /// The end of the answer: its calls not sent yet, or the text still held.
    pub(crate) fn finish(&mut self) -> StreamEnd {
        let held = std::mem::take(&mut self.held);
        if !self.calling {
            return StreamEnd::Text(held);
        }
        match &self.scanner {
            Some(s) if s.complete(&held) => return StreamEnd::Calls(Vec::new()),
            Some(s) if s.opened() > 0 => return StreamEnd::Cut,
            _ => {}
        }
        // Nothing streamed (the scan did not follow the text): the whole calls, if it holds any.
        if let Some(calls) = self.format.and_then(|f| f.parse(&held)) {
            let calls = calls
                .into_iter()
                .enumerate()
                .map(|(i, (n, a))| ToolCallOut { index: Some(i as u32), ..call_out(n, a) })
                .collect();
            return StreamEnd::Calls(calls);
        }
        StreamEnd::Text(held)
    }
}

/// One entry per call in the order they came: a call's opening (id and name) with the
/// arguments that came with it, or more arguments.
fn coalesce(deltas: Vec<CallDelta>) -> Vec<ToolCallOut> {
    let mut out: Vec<ToolCallOut> = Vec::new();
    for d in deltas {
        let (index, name, text) = match d {
            CallDelta::Open { index, name } => (index, Some(name), String::new()),
            CallDelta::Args { index, text } => (index, None, text),
        };
        match out.last_mut() {
            Some(last) if last.index == Some(index) && name.is_none() => {
                last.function.arguments.push_str(&text);
            }
            _ => out.push(match name {
                Some(name) => ToolCallOut { index: Some(index), ..call_out(name, text) },
                None => ToolCallOut {
                    index: Some(index),
                    id: None,
                    kind: None,
                    function: FunctionCallOut { name: None, arguments: text },
                },
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(t: &str) -> Json {
        Json::parse(t).unwrap()
    }

    /// Pushes `pieces`; returns the text sent and each call (id, name, arguments) as a client
    /// assembles it from the deltas, by index.
    fn drive(s: &mut ToolStream, pieces: &[&str]) -> (String, Vec<(String, String, String)>) {
        let (mut text, mut calls) = (String::new(), Vec::<(String, String, String)>::new());
        for p in pieces {
            let out = s.push(p);
            text.push_str(&out.text);
            for d in out.calls {
                let i = d.index.unwrap() as usize;
                if let Some(id) = d.id {
                    assert_eq!(i, calls.len(), "calls open in order");
                    calls.push((id, d.function.name.unwrap(), String::new()));
                }
                calls[i].2.push_str(&d.function.arguments);
            }
        }
        (text, calls)
    }

    const TOOLS: &str = r#"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},{"type":"function","function":{"name":"now"}}]"#;

    fn weather(city: &str) -> String {
        format!(
            "<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"{city}\"}}}}\n</tool_call>"
        )
    }
    const NOW: &str = "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>";

    #[test]
    fn choices_modes_and_refusals() {
        let tools = json(TOOLS);
        let none = ToolSupport::None;
        let named = parse(
            Some(&tools),
            Some(&json(r#"{"type":"function","function":{"name":"get_weather"}}"#)),
            None,
            none,
        )
        .unwrap()
        .unwrap();
        assert_eq!(named.mode, ToolMode::Named("get_weather".into()));
        let g = named.spec.0.compile().unwrap();
        assert!(g.matches(br#"{"city":"Oslo"}"#) && !g.matches(br#"{}"#));
        let req =
            parse(Some(&tools), Some(&json(r#""required""#)), Some(false), none).unwrap().unwrap();
        let g = req.spec.0.compile().unwrap();
        assert!(g.matches(NOW.as_bytes()) && g.matches(weather("Oslo").as_bytes()));
        assert!(!g.matches(format!("{NOW}\n{NOW}").as_bytes()));
        assert!(!g.matches(format!("Sure. {NOW}").as_bytes()));
        let auto = parse(Some(&tools), None, None, none).unwrap().unwrap();
        assert_eq!(auto.mode, ToolMode::Auto(CallFormat::Hermes));
        let g = auto.spec.0.compile().unwrap();
        assert!(g.matches(b"It is sunny.") && g.matches(format!("Sure. {NOW}\n{NOW}").as_bytes()));
        assert!(!g.matches(b"<tool_call>\n{\"name\": \"rm\""));
        let explicit = parse(Some(&tools), Some(&json(r#""auto""#)), None, ToolSupport::Hermes);
        assert_eq!(explicit.unwrap().unwrap().mode, ToolMode::Auto(CallFormat::Hermes));
        assert!(parse(Some(&tools), Some(&json(r#""none""#)), None, none).unwrap().is_none());
        assert!(parse(None, None, None, none).unwrap().is_none());
        let param = |t: Option<&Json>, c: Option<&Json>, s| parse(t, c, None, s).unwrap_err().param;
        // Auto needs a format lorad reads.
        assert_eq!(param(Some(&tools), None, ToolSupport::Other).as_deref(), Some("tool_choice"));
        let required = json(r#""required""#);
        assert!(parse(Some(&tools), Some(&required), None, ToolSupport::Other).is_ok());
        assert_eq!(param(None, Some(&required), none).as_deref(), Some("tool_choice"));
        let unknown = json(r#"{"type":"function","function":{"name":"nope"}}"#);
        assert_eq!(param(Some(&tools), Some(&unknown), none).as_deref(), Some("tool_choice"));
        let bad_name = json(r#"[{"type":"function","function":{"name":"has space"}}]"#);
        assert_eq!(
            param(Some(&bad_name), Some(&required), none).as_deref(),
            Some("tools[0].function.name")
        );
    }

    #[test]
    fn answers_become_tool_calls() {
        let a = answer(&ToolMode::Named("f".into()), r#"{"b":1,"a":2}"#).unwrap();
        assert_eq!(a.calls[0].function.arguments, r#"{"b":1,"a":2}"#);
        assert!(a.calls[0].id.as_deref().unwrap().starts_with("call_"));
        let a =
            answer(&ToolMode::Required(CallFormat::Hermes), &format!("{}\n{NOW}", weather("Oslo")))
                .unwrap();
        assert_eq!(a.calls.len(), 2);
        assert_eq!(
            (a.calls[0].function.name.as_deref(), a.calls[0].function.arguments.as_str()),
            (Some("get_weather"), r#"{"city":"Oslo"}"#)
        );
        assert!(a.content.is_none());
        let a =
            answer(&ToolMode::Auto(CallFormat::Hermes), &format!("Let me look.\n{NOW}")).unwrap();
        assert_eq!((a.content.as_deref(), a.calls.len()), (Some("Let me look."), 1));
        assert!(answer(&ToolMode::Auto(CallFormat::Hermes), "Just text.").is_none());
        assert!(answer(&ToolMode::Auto(CallFormat::Hermes), &weather("Oslo")[..40]).is_none());
        assert!(answer(&ToolMode::Named("f".into()), r#"{"a":"#).is_none());
    }

    #[test]
    fn whole_answers_become_messages() {
        let (m, f) =
            message(Some(&ToolMode::Auto(CallFormat::Hermes)), None, format!("Sure.\n{NOW}"));
        assert_eq!(
            (m.content.as_deref(), m.tool_calls.map(|c| c.len()), f),
            (Some("Sure."), Some(1), Some("tool_calls"))
        );
        let (m, f) = message(Some(&ToolMode::Named("f".into())), None, "{}".into());
        assert!(m.content.is_none() && m.tool_calls.is_some() && f.is_none());
        let (m, f) = message(Some(&ToolMode::Required(CallFormat::Hermes)), None, NOW[..25].into());
        assert_eq!(
            (m.content.as_deref(), m.tool_calls.is_none(), f),
            (Some(&NOW[..25]), true, None)
        );
        let (m, _) = message(None, None, NOW.into());
        assert_eq!((m.role, m.content.as_deref()), (Some("assistant"), Some(NOW)));
    }

    #[test]
    fn llama3_templates_get_llama3_calls() {
        let tools = json(TOOLS);
        let auto = parse(Some(&tools), None, None, ToolSupport::Llama3Json).unwrap().unwrap();
        assert_eq!(auto.mode, ToolMode::Auto(CallFormat::Llama3Json));
        let g = auto.spec.0.compile().unwrap();
        let call = r#"{"name": "get_weather", "parameters": {"city": "Oslo"}}"#;
        assert!(g.matches(call.as_bytes()) && g.matches(b"It is sunny."));
        // Hermes's syntax is plain text here.
        assert!(g.matches(NOW.as_bytes()) && answer(&auto.mode, NOW).is_none());
        let a = answer(&auto.mode, call).unwrap();
        assert_eq!(
            (a.content, a.calls[0].function.arguments.as_str()),
            (None, r#"{"city":"Oslo"}"#)
        );
        assert!(answer(&auto.mode, "It is sunny.").is_none());
        let mut s = ToolStream::new(Some(auto.mode.clone()), None);
        let (sent, calls) = drive(&mut s, &["{\"na", "me\": \"get_", &call[14..]]);
        assert_eq!(sent, "");
        assert_eq!(
            (calls[0].1.as_str(), calls[0].2.as_str()),
            ("get_weather", r#"{"city": "Oslo"}"#)
        );
        assert!(matches!(s.finish(), StreamEnd::Calls(c) if c.is_empty()), "all streamed");
        let mut s = ToolStream::new(Some(auto.mode), None);
        assert_eq!(s.push("{").text, "");
        assert_eq!(s.push("x} then {\"name\": \"").text, "{x} then {\"name\": \"");
        let required =
            parse(Some(&tools), Some(&json(r#""required""#)), None, ToolSupport::Llama3Json);
        let g = required.unwrap().unwrap().spec.0.compile().unwrap();
        assert!(g.matches(call.as_bytes()) && !g.matches(b"It is sunny."));
    }

    #[test]
    fn mistral_templates_get_mistral_calls() {
        let tools = json(TOOLS);
        let auto = parse(Some(&tools), None, None, ToolSupport::Mistral).unwrap().unwrap();
        assert_eq!(auto.mode, ToolMode::Auto(CallFormat::Mistral));
        let g = auto.spec.0.compile().unwrap();
        let call = r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "now", "arguments": {}}]"#;
        assert!(g.matches(call.as_bytes()) && g.matches(b"It is sunny."));
        assert!(g.matches(format!("Let me look. {call}").as_bytes()));
        // What the grammar lets through is what the parser reads.
        let a = answer(&auto.mode, &format!("Let me look. {call}")).unwrap();
        assert_eq!(a.content.as_deref(), Some("Let me look."));
        assert_eq!(
            a.calls.iter().map(|c| c.function.arguments.as_str()).collect::<Vec<_>>(),
            [r#"{"city":"Oslo"}"#, "{}"]
        );
        let single = parse(Some(&tools), None, Some(false), ToolSupport::Mistral).unwrap().unwrap();
        assert!(!single.spec.0.compile().unwrap().matches(call.as_bytes()));
        let required =
            parse(Some(&tools), Some(&json(r#""required""#)), None, ToolSupport::Mistral);
        let required = required.unwrap().unwrap();
        assert_eq!(required.mode, ToolMode::Required(CallFormat::Mistral));
        let g = required.spec.0.compile().unwrap();
        assert!(g.matches(call.as_bytes()) && !g.matches(b"It is sunny."));
        // A stream sends the text, then each call as it is written.
        let mut s = ToolStream::new(Some(auto.mode), None);
        let (sent, calls) = drive(&mut s, &["Let me", " look. [TOOL", "_CALLS] [", &call[14..]]);
        assert_eq!(sent, "Let me look. ");
        let read: Vec<(&str, &str)> =
            calls.iter().map(|(_, n, a)| (n.as_str(), a.as_str())).collect();
        assert_eq!(read, [("get_weather", r#"{"city": "Oslo"}"#), ("now", "{}")]);
        assert!(matches!(s.finish(), StreamEnd::Calls(c) if c.is_empty()));
    }

    #[test]
    fn streams_hold_back_what_may_be_a_call() {
        let mut s = ToolStream::new(Some(ToolMode::Auto(CallFormat::Hermes)), None);
        let call = weather("Oslo");
        let pieces =
            ["It is", " 3 < 4. <", "tool", "_call>\n{\"name\"", &call[19..50], &call[50..]];
        let (sent, calls) = drive(&mut s, &pieces);
        assert_eq!(sent, "It is 3 < 4. ");
        assert_eq!(
            (calls[0].1.as_str(), calls[0].2.as_str()),
            ("get_weather", r#"{"city": "Oslo"}"#)
        );
        assert!(calls[0].0.starts_with("call_"));
        assert!(matches!(s.finish(), StreamEnd::Calls(c) if c.is_empty()));
        // The name goes out as soon as the header is whole; the arguments as they come.
        let mut s = ToolStream::new(Some(ToolMode::Auto(CallFormat::Hermes)), None);
        let head = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ";
        assert!(s.push(&head[..head.len() - 1]).calls.is_empty());
        let opened = s.push(" {\"ci").calls;
        assert_eq!(opened.len(), 1);
        assert_eq!(
            (opened[0].function.name.as_deref(), opened[0].function.arguments.as_str()),
            (Some("get_weather"), "{\"ci")
        );
        let more = s.push("ty\": \"Oslo\"}").calls;
        assert_eq!(
            (more[0].id.as_deref(), more[0].function.arguments.as_str()),
            (None, "ty\": \"Oslo\"}")
        );
        // Cut inside the call: what went out stays, nothing more follows.
        assert!(matches!(s.finish(), StreamEnd::Cut));
        // A `<` that starts no call is sent once the next text shows it.
        let mut s = ToolStream::new(Some(ToolMode::Auto(CallFormat::Hermes)), None);
        assert_eq!(s.push("a <").text, "a ");
        assert_eq!(s.push("b").text, "<b");
        assert_eq!(s.push(" <tool").text, " ");
        assert!(matches!(s.finish(), StreamEnd::Text(t) if t == "<tool"));
        // Required holds everything; an answer cut short before a name comes back as text.
        let mut s = ToolStream::new(Some(ToolMode::Required(CallFormat::Hermes)), None);
        assert_eq!(s.push(&call[..30]).text, "");
        assert!(matches!(s.finish(), StreamEnd::Text(t) if t == call[..30]));
        let mut s = ToolStream::new(None, None);
        assert_eq!(s.push("<tool_call>").text, "<tool_call>");
    }

    #[test]
    fn thinking_is_split_off_before_the_text() {
        let mut s = ToolStream::new(None, Some(ReasoningParser::DeepseekR1));
        let p = s.push("<think>ab</th");
        assert_eq!((p.reasoning.as_str(), p.text.as_str()), ("ab", ""));
        let p = s.push("ink>\n\nParis");
        assert_eq!((p.reasoning.as_str(), p.text.as_str()), ("", "\n\nParis"));
        assert_eq!(s.finish_reasoning(), "");
        assert!(matches!(s.finish(), StreamEnd::Text(t) if t.is_empty()));
        // Cut short inside the thinking: what was held is thinking too.
        let mut s = ToolStream::new(None, Some(ReasoningParser::DeepseekR1));
        assert_eq!(s.push("hmm </thi").reasoning, "hmm ");
        assert_eq!(s.finish_reasoning(), "</thi");
        // qwen3, held as a possible <think> that is not: text.
        let mut s = ToolStream::new(None, Some(ReasoningParser::Qwen3));
        assert_eq!(s.push("<th").text, "");
        assert_eq!(s.finish_reasoning(), "");
        assert!(matches!(s.finish(), StreamEnd::Text(t) if t == "<th"));
        let (m, _) = message(None, Some(ReasoningParser::Qwen3), "<think>x</think>y".into());
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            (&json["reasoning_content"], &json["reasoning"], &json["content"]),
            (&serde_json::json!("x"), &serde_json::json!("x"), &serde_json::json!("y"))
        );
    }
}
