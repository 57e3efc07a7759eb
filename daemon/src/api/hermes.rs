//! The Hermes tool-call format, which Hermes, Qwen 2.5 and SmolLM3 are trained on and which
//! lorad uses for models whose chat template knows no tools:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Oslo"}}
//! </tool_call>
//! ```
//!
//! This module writes it (the grammar that holds calls to it, the tool descriptions and the
//! history's calls and results for templates that ignore tools) and reads it back.

use lorad_grammar::Json;
use lorad_grammar::tags::{HERMES_CLOSE, HERMES_OPEN};
use lorad_model::ChatMessage;
use serde_json::Value;

/// What opens a call.
pub(crate) const OPEN: &str = HERMES_OPEN;
/// What closes a call.
pub(crate) const CLOSE: &str = HERMES_CLOSE;

/// A function tool: its name and parameter schema.
#[derive(Debug, Clone)]
pub(crate) struct Function {
    pub(crate) name: String,
    pub(crate) parameters: Json,
}

/// One call read back: the function's name and its arguments as JSON text.
pub(crate) type Call = (String, String);

/// The call object `{"name": ..., "arguments" or "parameters": ...}` that `text` starts with,
/// and where it ends. Its extent is found by a JSON parser: an argument string holding a
/// closing tag does not end the call.
pub(crate) fn call_object(text: &str) -> Option<(Call, usize)> {
    let end = json_value_end(text)?;
    let call = Json::parse(&text[..end]).ok()?;
    let name = call.get("name")?.as_str()?.to_owned();
    // Hermes writes `arguments`, Llama 3 `parameters`.
    let args = call.get("arguments").or_else(|| call.get("parameters"))?;
    Some(((name, args.to_text()), end))
}

/// Where the JSON value that `text` starts with (after whitespace) ends; `None` if it is not
/// one whole value.
pub(crate) fn json_value_end(text: &str) -> Option<usize> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    values.next()?.ok()?;
    Some(values.byte_offset())
}

/// The calls in `text`, which starts at the first [`OPEN`]: `None` unless it is nothing but
/// whole calls and whitespace (an answer cut by `max_tokens` or a stop string).
pub(crate) fn parse_calls(text: &str) -> Option<Vec<Call>> {
    let mut rest = text.trim_start();
    let mut calls = Vec::new();
    while !rest.is_empty() {
        rest = rest.strip_prefix(OPEN)?.trim_start();
        let (call, end) = call_object(rest)?;
        calls.push(call);
        rest = rest[end..].trim_start().strip_prefix(CLOSE)?.trim_start();
    }
    (!calls.is_empty()).then_some(calls)
}

/// How much of the end of `text` could be the start of `open` ([`OPEN`], or another format's
/// opening: held back from a stream until the next text says whether a call begins).
pub(crate) fn partial_open(text: &str, open: &str) -> usize {
    (1..open.len()).rev().find(|&k| text.ends_with(&open[..k])).unwrap_or(0)
}

/// The conversation for a template that ignores tools: the tool descriptions added to the
/// system message (one is added when there is none), assistant calls written as calls, and
/// tool results given back as the user turn the format expects.
pub(crate) fn messages(messages: &[ChatMessage], tools: Option<&Json>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if let Some(tools) = tools {
        let described = describe(tools);
        match messages.first() {
            Some(m) if m.role == "system" => {
                let mut sys = m.clone();
                sys.content = format!("{}\n\n{described}", sys.content.trim_end());
                out.push(sys);
            }
            _ => out.push(ChatMessage::new("system", described)),
        }
    }
    let skip = usize::from(tools.is_some() && messages.first().is_some_and(|m| m.role == "system"));
    for m in &messages[skip..] {
        match (m.role.as_str(), &m.tool_calls) {
            ("assistant", Some(Value::Array(calls))) => {
                let mut text = m.content.trim_end().to_owned();
                for c in calls {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&write_call(c));
                }
                out.push(ChatMessage::new("assistant", text));
            }
            ("tool", _) => {
                let result = format!("<tool_response>\n{}\n</tool_response>", m.content);
                // Results of one round of calls go back together, in one user turn.
                match out.last_mut() {
                    Some(last)
                        if last.role == "user" && last.content.ends_with("</tool_response>") =>
                    {
                        last.content.push('\n');
                        last.content.push_str(&result);
                    }
                    _ => out.push(ChatMessage::new("user", result)),
                }
            }
            _ => out.push(ChatMessage::new(m.role.clone(), m.content.clone())),
        }
    }
    out
}

/// Whether the conversation holds calls or results that a template ignoring tools would drop.
pub(crate) fn has_tool_turns(messages: &[ChatMessage]) -> bool {
    messages.iter().any(|m| m.tool_calls.is_some() || m.role == "tool")
}

/// The system prompt's tool section.
fn describe(tools: &Json) -> String {
    let list: Vec<String> = match tools {
        Json::Array(l) => l.iter().map(Json::to_text).collect(),
        other => vec![other.to_text()],
    };
    format!(
        "# Tools\n\nYou may call one or more functions to answer the user. Their signatures are \
         inside <tools></tools>:\n<tools>\n{}\n</tools>\n\nTo call a function, answer with a JSON \
         object holding its name and arguments inside {OPEN}{CLOSE} tags:\n{OPEN}\n{{\"name\": \
         <function-name>, \"arguments\": <arguments-object>}}\n{CLOSE}",
        list.join("\n")
    )
}

/// An OpenAI `tool_calls` entry of the history, as the model would have written it.
fn write_call(c: &Value) -> String {
    let f = c.get("function").unwrap_or(c);
    let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
    // `arguments` is JSON text in OpenAI's API: written as it is when it parses (keeping its
    // key order), as a JSON string otherwise.
    let args = match f.get("arguments") {
        Some(Value::String(s)) if Json::parse(s).is_ok() => s.trim().to_owned(),
        Some(v @ Value::String(_)) => v.to_string(),
        Some(v) => v.to_string(),
        None => "{}".to_owned(),
    };
    // The layout the grammar holds answers to, so the history shows the model its own form.
    format!("{OPEN}\n{{\"name\": {}, \"arguments\": {args}}}\n{CLOSE}", Value::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::call_format::CallFormat;

    #[test]
    fn calls_read_back() {
        let one = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"z\": 1, \"a\": \"</tool_call>\"}}\n</tool_call>";
        assert_eq!(
            parse_calls(one).unwrap(),
            vec![("f".to_owned(), r#"{"z":1,"a":"</tool_call>"}"#.to_owned())]
        );
        let two = format!("{one}\n<tool_call>{{\"name\":\"g\",\"parameters\":{{}}}}</tool_call>\n");
        let calls = parse_calls(&two).unwrap();
        assert_eq!(calls[1], ("g".to_owned(), "{}".to_owned()));
        for cut in [
            "",
            "<tool_call>",
            &one[..30],
            &format!("{one} and text"),
            "<tool_call>{\"name\": 1}</tool_call>",
        ] {
            assert!(parse_calls(cut).is_none(), "{cut:?}");
        }
        assert_eq!(partial_open("so <tool_ca", OPEN), 8);
        assert_eq!(partial_open("a < b", OPEN), 0);
        assert_eq!(partial_open("x<", OPEN), 1);
    }

    #[test]
    fn the_grammar_holds_answers_to_the_format_the_parser_reads() {
        let fns = [Function {
            name: "get_weather".into(),
            parameters: Json::parse(
                r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#,
            )
            .unwrap(),
        }];
        let g = CallFormat::Hermes.constraint(&fns, false, true).compile().unwrap();
        let text = "Checking.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
        assert!(g.matches(text.as_bytes()));
        let at = text.find(OPEN).unwrap();
        assert_eq!(
            parse_calls(&text[at..]).unwrap(),
            vec![("get_weather".to_owned(), r#"{"city":"Oslo"}"#.to_owned())]
        );
        let required = CallFormat::Hermes.constraint(&fns, true, false).compile().unwrap();
        assert!(!required.matches(text.as_bytes()) && required.matches(&text.as_bytes()[at..]));
    }

    #[test]
    fn history_is_rewritten_for_templates_without_tools() {
        let tools =
            Json::parse(r#"[{"type": "function", "function": {"name": "get_weather"}}]"#).unwrap();
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = Some(serde_json::json!([
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
        ]));
        let mut r1 = ChatMessage::new("tool", "-3 C");
        r1.tool_call_id = Some("c1".into());
        let r2 = ChatMessage::new("tool", "18 C");
        let input = [
            ChatMessage::new("system", "Be brief.\n"),
            ChatMessage::new("user", "Weather?"),
            call,
            r1,
            r2,
        ];
        let out = messages(&input, Some(&tools));
        let roles: Vec<&str> = out.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert!(out[0].content.starts_with("Be brief.\n\n# Tools"));
        assert!(
            out[0].content.contains(r#"{"type":"function","function":{"name":"get_weather"}}"#)
        );
        assert_eq!(
            out[2].content,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Rome\"}}\n</tool_call>"
        );
        assert_eq!(
            out[3].content,
            "<tool_response>\n-3 C\n</tool_response>\n<tool_response>\n18 C\n</tool_response>"
        );
        // Without tools, the history is still written out; no system message is added.
        let out = messages(&input[1..], None);
        assert_eq!(out[0].role, "user");
        assert!(has_tool_turns(&input) && !has_tool_turns(&out));
    }
}
