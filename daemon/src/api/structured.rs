//! Structured output's request fields → a compiled grammar: OpenAI's `response_format`
//! (`json_object`, `json_schema`, and vLLM's `structural_tag`), vLLM's `structured_outputs`
//! (`json`, `regex`, `choice`, `json_object`, `grammar`, `structural_tag`) and its older `guided_json` / `guided_regex` / `guided_choice` /
//! `guided_grammar`.

use std::sync::Arc;

use lorad_grammar::{AfterTag, Constraint, Grammar, GrammarCache, Json, Tag, TagSpec};

use super::errors::ApiError;
use super::state::AppState;

/// The structured-output fields of a request, as sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct StructuredIn {
    pub(crate) response_format: Option<Json>,
    pub(crate) structured_outputs: Option<Json>,
    pub(crate) guided_json: Option<Json>,
    pub(crate) guided_regex: Option<String>,
    pub(crate) guided_choice: Option<Vec<String>>,
    pub(crate) guided_grammar: Option<Json>,
}

/// A constraint and the request field it came from (named in errors).
pub(crate) type Spec = (Constraint, &'static str);

fn invalid(param: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(param, format!("Invalid value for '{param}': {why}"))
        .code("invalid_value")
}

/// A schema given as an object (or boolean), or as JSON text in a string (vLLM accepts both).
fn schema(param: &str, v: &Json) -> Result<Constraint, ApiError> {
    match v {
        Json::String(text) => Json::parse(text)
            .map(Constraint::JsonSchema)
            .map_err(|e| invalid(param, format!("the schema is not valid JSON: {e}"))),
        Json::Object(_) | Json::Bool(_) => Ok(Constraint::JsonSchema(v.clone())),
        _ => Err(invalid(param, "expected a JSON Schema object")),
    }
}

fn response_format(v: &Json) -> Result<Option<Constraint>, ApiError> {
    const P: &str = "response_format";
    let Json::Object(_) = v else {
        return Err(invalid(P, "expected an object with a 'type'"));
    };
    match v.get("type").and_then(Json::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Constraint::JsonObject)),
        Some("json_schema") => {
            let Some(spec @ Json::Object(_)) = v.get("json_schema") else {
                return Err(invalid(P, "'json_schema' must be an object holding the 'schema'"));
            };
            // OpenAI's `schema` is optional: absent, any JSON value.
            match spec.get("schema") {
                None | Some(Json::Null) => Ok(Some(Constraint::JsonSchema(Json::Bool(true)))),
                Some(s) => schema(P, s).map(Some),
            }
        }
        Some("structural_tag") => structural_tag(P, v).map(Some),
        Some(other) => Err(ApiError::unsupported(
            P,
            &format!(
                "; type '{other}' is not (text, json_object, json_schema and structural_tag are)"
            ),
        )),
        None => Err(invalid(P, "'type' must be a string")),
    }
}

/// vLLM's `structured_outputs`: exactly one of `json`, `regex`, `choice`, `json_object`.
fn structured_outputs(v: &Json) -> Result<Option<Constraint>, ApiError> {
    const P: &str = "structured_outputs";
    let Json::Object(fields) = v else {
        return Err(invalid(P, "expected an object"));
    };
    let mut found = Vec::new();
    for (k, val) in fields {
        if matches!(val, Json::Null) {
            continue;
        }
        let c = match k.as_str() {
            "json" => schema(P, val)?,
            "regex" => Constraint::Regex(
                val.as_str().ok_or_else(|| invalid(P, "'regex' must be a string"))?.to_owned(),
            ),
            "choice" => Constraint::Choice(choices(P, val)?),
            "json_object" if matches!(val, Json::Bool(false)) => continue,
            "json_object" => Constraint::JsonObject,
            "grammar" => Constraint::Grammar(
                val.as_str().ok_or_else(|| invalid(P, "'grammar' must be a string"))?.to_owned(),
            ),
            "structural_tag" => structural_tag(&format!("{P}.structural_tag"), val)?,
            "whitespace_pattern" => {
                return Err(ApiError::unsupported(&format!("{P}.{k}"), ""));
            }
            // Backend options that do not change what is valid output.
            "disable_fallback" | "disable_any_whitespace" | "disable_additional_properties" => {
                continue;
            }
            other => return Err(invalid(P, format!("unknown field '{other}'"))),
        };
        found.push((k.as_str(), c));
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop().map(|(_, c)| c)),
        _ => Err(invalid(
            P,
            format!("set only one of {}", found.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")),
        )),
    }
}

/// vLLM's structural tag: `{"structures": [{"begin", "schema", "end"}], "triggers": [...]}`,
/// as an object or as JSON text. Free text in which each trigger opens one of the structures
/// that begin with it.
fn structural_tag(param: &str, v: &Json) -> Result<Constraint, ApiError> {
    let parsed;
    let v = match v {
        Json::String(text) => {
            parsed = Json::parse(text).map_err(|e| {
                invalid(param, format!("the structural tag is not valid JSON: {e}"))
            })?;
            &parsed
        }
        other => other,
    };
    if v.get("format").is_some() {
        return Err(ApiError::unsupported(
            &format!("{param}.format"),
            "; send the tag as 'structures' and 'triggers'",
        ));
    }
    let strings = |v: Option<&Json>, what: &str| -> Result<String, ApiError> {
        v.and_then(Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| invalid(param, format!("'{what}' must be a string")))
    };
    let Some(Json::Array(structures)) = v.get("structures") else {
        return Err(invalid(param, "'structures' must be an array"));
    };
    let mut tags = Vec::with_capacity(structures.len());
    for (i, st) in structures.iter().enumerate() {
        let at = |k: &str| format!("structures[{i}].{k}");
        let schema = match st.get("schema") {
            Some(s @ (Json::Object(_) | Json::Bool(_))) => s.clone(),
            _ => return Err(invalid(param, format!("'{}' must be a JSON Schema", at("schema")))),
        };
        tags.push(Tag {
            begin: strings(st.get("begin"), &at("begin"))?,
            schema,
            end: strings(st.get("end"), &at("end"))?,
        });
    }
    let Some(Json::Array(list)) = v.get("triggers") else {
        return Err(invalid(param, "'triggers' must be an array of strings"));
    };
    let triggers = list
        .iter()
        .enumerate()
        .map(|(i, t)| strings(Some(t), &format!("triggers[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Constraint::Tags(TagSpec {
        tags,
        triggers,
        after: AfterTag::Text,
        required: false,
        at_start: false,
    }))
}

fn choices(param: &str, v: &Json) -> Result<Vec<String>, ApiError> {
    let Json::Array(items) = v else {
        return Err(invalid(param, "'choice' must be an array of strings"));
    };
    items
        .iter()
        .map(|i| {
            i.as_str().map(str::to_owned).ok_or_else(|| invalid(param, "choices must be strings"))
        })
        .collect()
}

/// The request's constraint, if it sets one; more than one is a 400 naming them.
pub(crate) fn spec(s: &StructuredIn) -> Result<Option<Spec>, ApiError> {
    let mut found: Vec<Spec> = Vec::new();
    match &s.guided_grammar {
        None | Some(Json::Null) => {}
        Some(Json::String(g)) => found.push((Constraint::Grammar(g.clone()), "guided_grammar")),
        Some(_) => return Err(invalid("guided_grammar", "expected a GBNF grammar as a string")),
    }
    if let Some(v) = &s.response_format
        && let Some(c) = response_format(v)?
    {
        found.push((c, "response_format"));
    }
    if let Some(v) = &s.structured_outputs
        && let Some(c) = structured_outputs(v)?
    {
        found.push((c, "structured_outputs"));
    }
    if let Some(v) = &s.guided_json {
        found.push((schema("guided_json", v)?, "guided_json"));
    }
    if let Some(r) = &s.guided_regex {
        found.push((Constraint::Regex(r.clone()), "guided_regex"));
    }
    if let Some(c) = &s.guided_choice {
        found.push((Constraint::Choice(c.clone()), "guided_choice"));
    }
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|f| f.1).collect();
        return Err(invalid(
            names[1],
            format!("set only one structured-output field, not {}", names.join(" and ")),
        ));
    }
    Ok(found.pop())
}

/// Compiles a constraint (or takes it from the cache), a 400 naming its field when it
/// cannot be enforced.
pub(crate) fn compile(
    cache: &GrammarCache,
    spec: Option<&Spec>,
) -> Result<Option<Arc<Grammar>>, ApiError> {
    let Some((c, param)) = spec else { return Ok(None) };
    cache.get(c).map(Some).map_err(|e| invalid(param, e))
}

/// [`compile`] off the async workers: a large schema takes milliseconds to compile.
pub(crate) async fn compile_blocking(
    state: &AppState,
    spec: Option<Spec>,
) -> Result<Option<Arc<Grammar>>, ApiError> {
    if spec.is_none() {
        return Ok(None);
    }
    let state = state.clone();
    tokio::task::spawn_blocking(move || compile(state.grammars(), spec.as_ref()))
        .await
        .map_err(|e| ApiError::internal(format!("constraint compile task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Option<Json> {
        Some(Json::parse(text).unwrap())
    }

    #[test]
    fn fields_map_to_constraints_and_conflicts_are_named() {
        let s = StructuredIn { response_format: json(r#"{"type":"text"}"#), ..Default::default() };
        assert!(spec(&s).unwrap().is_none());
        let s = StructuredIn {
            response_format: json(r#"{"type":"json_object"}"#),
            ..Default::default()
        };
        assert_eq!(spec(&s).unwrap().unwrap().0, Constraint::JsonObject);
        let s = StructuredIn {
            response_format: json(
                r#"{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"integer"}}}"#,
            ),
            ..Default::default()
        };
        assert!(matches!(
            spec(&s).unwrap().unwrap(),
            (Constraint::JsonSchema(_), "response_format")
        ));
        let s = StructuredIn {
            structured_outputs: json(r#"{"choice":["a","b"],"disable_any_whitespace":true}"#),
            ..Default::default()
        };
        assert_eq!(spec(&s).unwrap().unwrap().0, Constraint::Choice(vec!["a".into(), "b".into()]));
        let s =
            StructuredIn { guided_json: json(r#""{\"type\":\"string\"}""#), ..Default::default() };
        assert!(matches!(spec(&s).unwrap().unwrap().0, Constraint::JsonSchema(Json::Object(_))));
        let err = |s: StructuredIn| spec(&s).unwrap_err().param;
        let both = StructuredIn {
            response_format: json(r#"{"type":"json_object"}"#),
            guided_regex: Some("a+".into()),
            ..Default::default()
        };
        assert_eq!(err(both).as_deref(), Some("guided_regex"));
        let bad_type =
            StructuredIn { response_format: json(r#"{"type":"grammar"}"#), ..Default::default() };
        assert_eq!(err(bad_type).as_deref(), Some("response_format"));
        let two = StructuredIn {
            structured_outputs: json(r#"{"regex":"a","choice":["a"]}"#),
            ..Default::default()
        };
        assert_eq!(err(two).as_deref(), Some("structured_outputs"));
        let grammar =
            StructuredIn { guided_grammar: json(r#""root ::= \"a\"""#), ..Default::default() };
        assert_eq!(
            spec(&grammar).unwrap().unwrap().0,
            Constraint::Grammar("root ::= \"a\"".into())
        );
        let tag = StructuredIn {
            structured_outputs: json(r#"{"structural_tag":"x"}"#),
            ..Default::default()
        };
        assert_eq!(err(tag).as_deref(), Some("structured_outputs.structural_tag"));
        let tag = r#"{"type":"structural_tag","structures":[{"begin":"<f=add>","schema":{"type":"object"},"end":"</f>"}],"triggers":["<f="]}"#;
        let s = StructuredIn { response_format: json(tag), ..Default::default() };
        let (c, param) = spec(&s).unwrap().unwrap();
        assert_eq!(param, "response_format");
        assert!(c.compile().unwrap().matches(b"x <f=add>{}</f> y"));
        let as_text = Json::String(tag.into());
        let s = StructuredIn {
            structured_outputs: Some(Json::Object(vec![("structural_tag".into(), as_text)])),
            ..Default::default()
        };
        assert_eq!(spec(&s).unwrap().unwrap().0, c);
        let no_begin = tag.replace(r#""begin":"<f=add>","#, "");
        let s = StructuredIn { response_format: json(&no_begin), ..Default::default() };
        assert!(spec(&s).unwrap_err().message.contains("structures[0].begin"));
        let cache = GrammarCache::new(4);
        let bad = (
            Constraint::JsonSchema(Json::parse(r#"{"type":"number","minimum":1}"#).unwrap()),
            "guided_json",
        );
        let e = compile(&cache, Some(&bad)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("guided_json"));
        assert!(e.message.contains("minimum"), "{}", e.message);
    }
}
