//! Reading contributed records from JSONL: parsing, normalization and validation.
//!
//! Everything here works on bytes and needs no tokenizer, so a client can check a file before
//! uploading it. The normalization is part of what the record hash commits to (see
//! `docs/datanet-format.md`): changing it changes every hash, so it is versioned with the hash.

use std::collections::HashMap;

use lorad_model::ChatMessage;
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use crate::error::RecordProblem;

/// Longest allowed `id` and `contributor`, in bytes after normalization.
pub const MAX_ID_BYTES: usize = 256;

/// The roles a chat message may have.
pub const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// A record's payload: plain text, or a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordContent {
    /// Plain text; every token of it is trained on.
    Text(String),
    /// A conversation ending with an assistant message; only the last assistant message is trained
    /// on.
    Chat(Vec<ChatMessage>),
}

impl RecordContent {
    /// The kind byte of the canonical record encoding: 0 for text, 1 for chat.
    pub fn kind_byte(&self) -> u8 {
        match self {
            Self::Text(_) => 0,
            Self::Chat(_) => 1,
        }
    }
}

/// One valid, normalized record as read from the input, before tokenization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's id, unique within the Datanet.
    pub id: String,
    /// Who contributed it.
    pub contributor: String,
    /// Its text or conversation.
    pub content: RecordContent,
}

impl RawRecord {
    /// The record's hash (see [`crate::record_hash`]).
    pub fn hash(&self) -> [u8; 32] {
        crate::hash::record_hash(&self.id, &self.contributor, &self.content)
    }
}

/// Normalizes one string field: Unicode NFC, `\r\n` and lone `\r` to `\n`, then leading and
/// trailing whitespace (Unicode `White_Space`, as Rust's `str::trim`) removed.
pub fn normalize(s: &str) -> String {
    let nfc: String = s.nfc().collect();
    // NFC never creates or removes a `\r`, so the order of these two steps does not matter.
    let unified =
        if nfc.contains('\r') { nfc.replace("\r\n", "\n").replace('\r', "\n") } else { nfc };
    match (unified.len(), unified.trim()) {
        (n, t) if t.len() == n => unified,
        (_, t) => t.to_owned(),
    }
}

/// Parses a JSONL file's bytes into valid records (with their 1-based line numbers) and problems
/// (one per bad line, in line order). Blank lines are skipped; a UTF-8 byte-order mark at the very
/// start is ignored.
///
/// Lines are split on `\n` before decoding, so an invalid UTF-8 sequence spoils only its own line.
/// A duplicate id is reported on its later line, naming the first; only records that are otherwise
/// valid claim an id.
pub fn parse_records(bytes: &[u8]) -> (Vec<(u64, RawRecord)>, Vec<RecordProblem>) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut records = Vec::new();
    let mut problems = Vec::new();
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(line) {
            Ok(record) => match first_line_of.get(&record.id) {
                Some(&first) => problems.push(RecordProblem::new(
                    line_no,
                    Some(record.id.clone()),
                    format!("duplicate id {:?} (first used on line {first})", record.id),
                )),
                None => {
                    first_line_of.insert(record.id.clone(), line_no);
                    records.push((line_no, record));
                }
            },
            Err((id, reason)) => problems.push(RecordProblem::new(line_no, id, reason)),
        }
    }
    (records, problems)
}

/// What a bad line yields: the id if it was readable, and the reason.
type LineError = (Option<String>, String);

/// Parses and validates one non-blank line.
fn parse_line(line: &[u8]) -> Result<RawRecord, LineError> {
    let text = std::str::from_utf8(line)
        .map_err(|e| (None, format!("invalid UTF-8 at byte {} of the line", e.valid_up_to())))?;
    let value: Value = serde_json::from_str(text).map_err(|e| (None, json_reason(&e)))?;
    let Value::Object(obj) = value else {
        return Err((None, format!("expected a JSON object, found {}", type_name(&value))));
    };
    let id = read_id(&obj)?;
    let with_id = |reason: String| (Some(id.clone()), reason);
    let contributor = read_contributor(&obj).map_err(with_id)?;
    let content = match (obj.get("text"), obj.get("messages")) {
        (Some(_), Some(_)) => {
            return Err(with_id("has both `text` and `messages`; a record has exactly one".into()));
        }
        (None, None) => {
            return Err(with_id("has neither `text` nor `messages`; a record needs one".into()));
        }
        (Some(t), None) => RecordContent::Text(read_text(t).map_err(with_id)?),
        (None, Some(m)) => RecordContent::Chat(read_messages(m).map_err(with_id)?),
    };
    Ok(RawRecord { id, contributor, content })
}

/// serde_json's message without its "at line 1 column N" suffix, which would be misleading for a
/// single JSONL line; the column is kept.
fn json_reason(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    format!("invalid JSON at column {}: {msg}", e.column())
}

/// The JSON type of `v`, for messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `id`: a string, or a non-negative integer written as its decimal string.
fn read_id(obj: &Map<String, Value>) -> Result<String, LineError> {
    let raw = match obj.get("id") {
        None => return Err((None, "missing field `id`".into())),
        Some(Value::String(s)) => normalize(s),
        Some(Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
        Some(v) => {
            return Err((
                None,
                format!("`id` must be a string or a non-negative integer, found {}", type_name(v)),
            ));
        }
    };
    let shown = (!raw.is_empty()).then(|| raw.clone());
    check_label("id", &raw, false).map_err(|reason| (shown, reason))?;
    Ok(raw)
}

/// `contributor`: a string without control characters.
fn read_contributor(obj: &Map<String, Value>) -> Result<String, String> {
    match obj.get("contributor") {
        None => Err("missing field `contributor`".into()),
        Some(Value::String(s)) => {
            let c = normalize(s);
            check_label("contributor", &c, true)?;
            Ok(c)
        }
        Some(v) => Err(format!("`contributor` must be a string, found {}", type_name(v))),
    }
}

/// The length and character rules of `id` and `contributor`.
fn check_label(field: &str, s: &str, no_control: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("`{field}` is empty after trimming whitespace"));
    }
    if s.len() > MAX_ID_BYTES {
        return Err(format!("`{field}` is {} bytes long; at most {MAX_ID_BYTES} allowed", s.len()));
    }
    if s.contains('\0') {
        return Err(format!("`{field}` contains a NUL character"));
    }
    if no_control && s.chars().any(char::is_control) {
        return Err(format!("`{field}` contains a control character"));
    }
    Ok(())
}

/// A normalized text or message content: non-empty, NUL-free, and short enough for the u32 length
/// prefix of the canonical encoding.
fn check_body(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty after trimming whitespace"));
    }
    if s.contains('\0') {
        return Err(format!("{what} contains a NUL character"));
    }
    if u32::try_from(s.len()).is_err() {
        return Err(format!("{what} is {} bytes long; at most {} allowed", s.len(), u32::MAX));
    }
    Ok(())
}

/// `text`: a string.
fn read_text(v: &Value) -> Result<String, String> {
    let Value::String(s) = v else {
        return Err(format!("`text` must be a string, found {}", type_name(v)));
    };
    let t = normalize(s);
    check_body("`text`", &t)?;
    Ok(t)
}

/// `messages`: an array of `{role, content}`; `system` only first; ends with `assistant`.
fn read_messages(v: &Value) -> Result<Vec<ChatMessage>, String> {
    let Value::Array(items) = v else {
        return Err(format!("`messages` must be an array, found {}", type_name(v)));
    };
    if items.is_empty() {
        return Err(
            "`messages` is empty; a chat record needs at least one assistant message".into()
        );
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(format!("messages[{i}] must be an object, found {}", type_name(item)));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.clone(),
            Some(Value::String(r)) => {
                return Err(format!(
                    "messages[{i}].role is {r:?}; expected one of system, user, assistant"
                ));
            }
            Some(r) => {
                return Err(format!("messages[{i}].role must be a string, found {}", type_name(r)));
            }
            None => return Err(format!("messages[{i}] is missing `role`")),
        };
        if role == "system" && i != 0 {
            return Err(format!("messages[{i}] is a system message; only the first may be"));
        }
        let content = match m.get("content") {
            Some(Value::String(c)) => normalize(c),
            Some(c) => {
                return Err(format!(
                    "messages[{i}].content must be a string, found {}",
                    type_name(c)
                ));
            }
            None => return Err(format!("messages[{i}] is missing `content`")),
        };
        check_body(&format!("messages[{i}].content"), &content)?;
        out.push(ChatMessage::new(role, content));
    }
    match out.last() {
        Some(last) if last.role == "assistant" => Ok(out),
        Some(last) => Err(format!(
            "the last message is a {} message; a chat record must end with an assistant message \
             (the part that is trained on)",
            last.role
        )),
        None => Err("`messages` is empty".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_nfc_newlines_trim() {
        // "e" + combining acute composes to U+00E9.
        assert_eq!(normalize(" \r\ne\u{301}\r\nx\ry \t"), "\u{e9}\nx\ny");
        assert_eq!(normalize("\u{a0}a\u{3000}"), "a");
        assert_eq!(normalize("plain"), "plain");
    }

    #[test]
    fn integer_ids_become_decimal_strings() {
        let (recs, probs) =
            parse_records(b"{\"id\": 42, \"contributor\": \"a\", \"text\": \"t\"}\n");
        assert!(probs.is_empty(), "{probs:?}");
        assert_eq!(recs[0].1.id, "42");
        let (_, probs) = parse_records(b"{\"id\": -1, \"contributor\": \"a\", \"text\": \"t\"}");
        assert!(probs[0].reason.contains("non-negative integer"), "{probs:?}");
        let (_, probs) = parse_records(b"{\"id\": 1.5, \"contributor\": \"a\", \"text\": \"t\"}");
        assert_eq!(probs.len(), 1);
    }

    #[test]
    fn label_rules() {
        let long = "x".repeat(257);
        let input = format!(
            "{{\"id\":\"{long}\",\"contributor\":\"a\",\"text\":\"t\"}}\n\
             {{\"id\":\"b\",\"contributor\":\"a\\u0007b\",\"text\":\"t\"}}\n\
             {{\"id\":\"c\",\"contributor\":\"a\",\"text\":\"t\\u0000\"}}\n\
             {{\"id\":\"d\",\"contributor\":\"a\",\"messages\":[{{\"role\":\"user\",\"content\":\"q\"}},{{\"role\":\"system\",\"content\":\"s\"}},{{\"role\":\"assistant\",\"content\":\"a\"}}]}}\n\
             {{\"id\":\"e\",\"contributor\":\"a\",\"messages\":[{{\"role\":\"system\",\"content\":\" \"}},{{\"role\":\"assistant\",\"content\":\"a\"}}]}}\n\
             {{\"id\":\"f\",\"contributor\":\"a\",\"messages\":[{{\"role\":\"User\",\"content\":\"q\"}},{{\"role\":\"assistant\",\"content\":\"a\"}}]}}\n\
             [1]\n\
             {{\"id\":\"g\",\"contributor\":\"a\",\"messages\":[]}}\n"
        );
        let (recs, probs) = parse_records(input.as_bytes());
        assert!(recs.is_empty());
        let reasons: Vec<_> = probs.iter().map(|p| (p.line, p.reason.as_str())).collect();
        assert_eq!(probs.len(), 8, "{reasons:?}");
        assert!(probs[0].reason.contains("257 bytes"));
        assert!(probs[1].reason.contains("control character"));
        assert!(probs[2].reason.contains("NUL"));
        assert!(probs[3].reason.contains("only the first"));
        assert!(probs[4].reason.contains("messages[0].content is empty"));
        assert!(probs[5].reason.contains("\"User\""));
        assert!(probs[6].reason.contains("JSON object"));
        assert!(probs[7].reason.contains("empty"));
    }

    #[test]
    fn bom_and_crlf_lines() {
        let input = b"\xEF\xBB\xBF{\"id\":\"a\",\"contributor\":\"c\",\"text\":\"x\"}\r\n\r\n  \n";
        let (recs, probs) = parse_records(input);
        assert!(probs.is_empty(), "{probs:?}");
        assert_eq!(recs.len(), 1);
    }
}
