//! Tool calling: `tools` with `tool_choice` set to a named function or `"required"`, enforced
//! by structured output (the answer is the function's arguments, or a list of calls, valid
//! under the tools' parameter schemas), returned as OpenAI's `message.tool_calls`.
//!
//! `"auto"` (OpenAI's default when tools are given) needs a parser for each model family's own
//! tool-call syntax, which lorad does not have, so it is refused with a 400 saying what to send
//! instead (vLLM refuses it the same way unless started with a parser).

use lorad_grammar::{Constraint, Json};
use serde_json::Value;

use super::errors::ApiError;
use super::openai::{FunctionCallOut, ToolCallOut};
use super::structured::Spec;

/// How the answer calls tools.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolMode {
    /// Exactly this function: the answer is its arguments object.
    Named(String),
    /// One call or more (one with `parallel_tool_calls: false`): the answer is a JSON list of
    /// `{"name", "parameters"}` objects.
    Required,
}

/// A request's tool calling, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct ToolUse {
    pub(crate) mode: ToolMode,
    /// The constraint that enforces it.
    pub(crate) spec: Spec,
    /// The tool definitions, for the chat template's `tools`.
    pub(crate) definitions: Value,
}

fn invalid(param: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(param, format!("Invalid value for '{param}': {why}"))
        .code("invalid_value")
}

/// A function tool: its name and parameter schema.
struct Function {
    name: String,
    parameters: Json,
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
            let name_ok = (1..=64).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
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
pub(crate) fn parse(
    tools: Option<&Json>,
    choice: Option<&Json>,
    parallel: Option<bool>,
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
    let auto = || {
        invalid(
            P,
            "\"auto\" (the default when tools are given) needs a tool-call parser for this model, which lorad does not have; send \"required\", \"none\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        )
    };
    let mode = match choice {
        None => return Err(auto()),
        Some(Json::String(s)) => match s.as_str() {
            "none" => return Ok(None),
            "auto" => return Err(auto()),
            "required" => ToolMode::Required,
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
    let schema = match &mode {
        ToolMode::Named(n) => fns.iter().find(|f| &f.name == n).map(|f| f.parameters.clone()),
        ToolMode::Required => Some(calls_schema(&fns, parallel.unwrap_or(true))),
    };
    let schema = schema.ok_or_else(|| invalid(P, "no such tool"))?;
    let definitions = serde_json::from_str(&tools.to_text())
        .map_err(|e| invalid("tools", format!("not JSON: {e}")))?;
    Ok(Some(ToolUse { mode, spec: (Constraint::JsonSchema(schema), "tools"), definitions }))
}

/// `[{"name": <a tool>, "parameters": <its arguments>}, ...]`: at least one call, at most one
/// without parallel calls.
fn calls_schema(fns: &[Function], parallel: bool) -> Json {
    let s = |v: &str| Json::String(v.into());
    let call = |f: &Function| {
        Json::Object(vec![
            ("type".into(), s("object")),
            (
                "properties".into(),
                Json::Object(vec![
                    ("name".into(), Json::Object(vec![("const".into(), s(&f.name))])),
                    ("parameters".into(), f.parameters.clone()),
                ]),
            ),
            ("required".into(), Json::Array(vec![s("name"), s("parameters")])),
        ])
    };
    let mut schema = vec![
        ("type".into(), s("array")),
        (
            "items".into(),
            Json::Object(vec![("anyOf".into(), Json::Array(fns.iter().map(call).collect()))]),
        ),
        ("minItems".into(), Json::Number(1.into())),
    ];
    if !parallel {
        schema.push(("maxItems".into(), Json::Number(1.into())));
    }
    Json::Object(schema)
}

/// A new call id (`call_` and 24 hex digits).
pub(crate) fn call_id() -> String {
    super::ids::new_id("call").replacen('-', "_", 1)
}

/// The tool calls an answer's text makes; `None` when the text is not a complete answer (cut
/// by `max_tokens` or a stop string): the caller then returns it as content.
pub(crate) fn calls(mode: &ToolMode, text: &str) -> Option<Vec<ToolCallOut>> {
    let call = |name: String, arguments: String| ToolCallOut {
        index: None,
        id: Some(call_id()),
        kind: Some("function"),
        function: FunctionCallOut { name: Some(name), arguments },
    };
    match mode {
        ToolMode::Named(name) => {
            Json::parse(text).ok()?;
            Some(vec![call(name.clone(), text.to_owned())])
        }
        ToolMode::Required => {
            let Json::Array(items) = Json::parse(text).ok()? else { return None };
            items
                .iter()
                .map(|c| {
                    let name = c.get("name")?.as_str()?.to_owned();
                    Some(call(name, c.get("parameters")?.to_text()))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(t: &str) -> Json {
        Json::parse(t).unwrap()
    }

    const TOOLS: &str = r#"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},{"type":"function","function":{"name":"now"}}]"#;

    #[test]
    fn choices_modes_and_refusals() {
        let tools = json(TOOLS);
        let named = parse(
            Some(&tools),
            Some(&json(r#"{"type":"function","function":{"name":"get_weather"}}"#)),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(named.mode, ToolMode::Named("get_weather".into()));
        let g = named.spec.0.compile().unwrap();
        assert!(g.matches(br#"{"city":"Oslo"}"#) && !g.matches(br#"{}"#));
        let req = parse(Some(&tools), Some(&json(r#""required""#)), Some(false)).unwrap().unwrap();
        let g = req.spec.0.compile().unwrap();
        assert!(g.matches(br#"[{"name":"now","parameters":{}}]"#));
        assert!(g.matches(br#"[{"name":"get_weather","parameters":{"city":"Oslo"}}]"#));
        assert!(!g.matches(br#"[{"name":"now","parameters":{}},{"name":"now","parameters":{}}]"#));
        assert!(!g.matches(br#"[{"name":"get_weather","parameters":{}}]"#));
        assert!(parse(Some(&tools), Some(&json(r#""none""#)), None).unwrap().is_none());
        assert!(parse(None, None, None).unwrap().is_none());
        let param = |t: Option<&Json>, c: Option<&Json>| parse(t, c, None).unwrap_err().param;
        assert_eq!(param(Some(&tools), None).as_deref(), Some("tool_choice"));
        assert_eq!(param(Some(&tools), Some(&json(r#""auto""#))).as_deref(), Some("tool_choice"));
        assert_eq!(param(None, Some(&json(r#""required""#))).as_deref(), Some("tool_choice"));
        let unknown = json(r#"{"type":"function","function":{"name":"nope"}}"#);
        assert_eq!(param(Some(&tools), Some(&unknown)).as_deref(), Some("tool_choice"));
        let bad_name = json(r#"[{"type":"function","function":{"name":"has space"}}]"#);
        assert_eq!(
            param(Some(&bad_name), Some(&json(r#""required""#))).as_deref(),
            Some("tools[0].function.name")
        );
    }

    #[test]
    fn answers_become_tool_calls() {
        let c = calls(&ToolMode::Named("f".into()), r#"{"b":1,"a":2}"#).unwrap();
        assert_eq!(c[0].function.arguments, r#"{"b":1,"a":2}"#);
        assert!(c[0].id.as_deref().unwrap().starts_with("call_"));
        let c = calls(
            &ToolMode::Required,
            r#"[{"name":"f","parameters":{"z":1,"y":[2]}},{"name":"g","parameters":{}}]"#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].function.name.as_deref(), c[0].function.arguments.as_str()),
            (Some("f"), r#"{"z":1,"y":[2]}"#)
        );
        assert!(calls(&ToolMode::Required, r#"[{"name":"f","param"#).is_none());
        assert!(calls(&ToolMode::Named("f".into()), r#"{"a":"#).is_none());
    }
}
