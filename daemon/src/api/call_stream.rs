//! Reading tool calls while they are generated, so a stream sends each call's id and name as
//! soon as its header is written and its arguments as they come (what OpenAI and vLLM stream),
//! rather than whole calls at the end.
//!
//! The grammar holds the answer to its format's exact literals (`tags.rs`), so a call's header
//! is a fixed pattern around the tool's name, and its arguments are one JSON value whose end a
//! small scanner finds (strings and nesting counted). Anything else — which a constrained
//! answer never writes — stops the scan; the stream then falls back to reading whole calls
//! when the answer ends.

use super::call_format::CallFormat;

/// One piece of a pattern.
#[derive(Debug, Clone, Copy)]
enum P {
    /// Any whitespace, possibly none.
    Ws,
    /// These exact characters.
    Lit(&'static str),
    /// A tool name (letters, digits, `_`, `-`), up to the character that ends it.
    Name,
}

/// How far a pattern matches the start of a text.
#[derive(Debug, PartialEq, Eq)]
enum Match {
    /// All of it, in `len` bytes, naming `name` if the pattern has a [`P::Name`].
    Whole { len: usize, name: Option<String> },
    /// The text ends inside the pattern, matching so far.
    Partial,
    /// The text leaves the pattern.
    No,
}

fn match_pattern(pattern: &[P], text: &str) -> Match {
    let mut at = 0;
    let mut name = None;
    for piece in pattern {
        let rest = &text[at..];
        match *piece {
            P::Ws => {
                let ws = rest.len() - rest.trim_start().len();
                at += ws;
                if at == text.len() {
                    return Match::Partial;
                }
            }
            P::Lit(lit) => {
                if rest.len() < lit.len() {
                    return if lit.starts_with(rest) { Match::Partial } else { Match::No };
                }
                if !rest.starts_with(lit) {
                    return Match::No;
                }
                at += lit.len();
            }
            P::Name => {
                let len = rest.find(|c: char| !super::tools::name_char(c)).unwrap_or(rest.len());
                if len == rest.len() {
                    return Match::Partial;
                }
                if len == 0 {
                    return Match::No;
                }
                name = Some(rest[..len].to_owned());
                at += len;
            }
        }
    }
    Match::Whole { len: at, name }
}

const HERMES_HEADER: &[P] = &[
    P::Ws,
    P::Lit("<tool_call>"),
    P::Ws,
    P::Lit("{\"name\": \""),
    P::Name,
    P::Lit("\", \"arguments\": "),
];
const HERMES_AFTER: &[P] = &[P::Ws, P::Lit("}"), P::Ws, P::Lit("</tool_call>")];
const LLAMA3_HEADER: &[P] =
    &[P::Ws, P::Lit("{\"name\": \""), P::Name, P::Lit("\", \"parameters\": ")];
const CLOSE_BRACE: &[P] = &[P::Ws, P::Lit("}")];
const MISTRAL_FIRST: &[P] = &[
    P::Ws,
    P::Lit("[TOOL_CALLS]"),
    P::Ws,
    P::Lit("["),
    P::Ws,
    P::Lit("{\"name\": \""),
    P::Name,
    P::Lit("\", \"arguments\": "),
];
const MISTRAL_NEXT: &[P] =
    &[P::Ws, P::Lit(","), P::Ws, P::Lit("{\"name\": \""), P::Name, P::Lit("\", \"arguments\": ")];
const MISTRAL_CLOSE: &[P] = &[P::Ws, P::Lit("]")];
const MISTRAL_ARGS_HEADER: &[P] = &[P::Ws, P::Lit("[TOOL_CALLS]"), P::Name, P::Lit("[ARGS]")];

/// Where the end of one JSON value is, found a character at a time.
#[derive(Debug, Clone, Default)]
struct JsonEnd {
    started: bool,
    /// A container (object or array); else a string or a scalar.
    container: bool,
    string: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl JsonEnd {
    /// Feeds `c`; `Some(true)` when the value ended with `c`, `Some(false)` when it ended just
    /// before `c` (a scalar's delimiter), `None` while it goes on.
    fn feed(&mut self, c: char) -> Option<bool> {
        if !self.started {
            self.started = true;
            self.container = matches!(c, '{' | '[');
            self.string = c == '"';
            self.depth = usize::from(self.container);
            self.in_string = self.string;
            return None;
        }
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.in_string = false;
                if self.string {
                    return Some(true);
                }
            }
            return None;
        }
        if !self.container {
            return matches!(c, ',' | '}' | ']' | ' ' | '\t' | '\n' | '\r').then_some(false);
        }
        match c {
            '"' => self.in_string = true,
            '{' | '[' => self.depth += 1,
            '}' | ']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    return Some(true);
                }
            }
            _ => {}
        }
        None
    }
}

#[derive(Debug, Clone)]
enum Phase {
    /// Before a call's header (`first`: the answer's first call).
    Header { first: bool },
    /// Inside call `index`'s arguments; `sent` is where the text sent so far ends.
    Args { scan: JsonEnd, sent: usize },
    /// After a call's arguments: its closing.
    After,
    /// Mistral: after a call, either `, {next}` or the list's `]`.
    Between,
    /// Every call is closed and nothing may follow.
    Done,
    /// The text left the format: nothing more is read as it comes.
    Lost,
}

/// What the text since a call began says so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CallDelta {
    /// Call `index` is `name`'s.
    Open { index: u32, name: String },
    /// More of call `index`'s arguments.
    Args { index: u32, text: String },
}

/// Reads calls from the text since the first call began, as it grows.
#[derive(Debug, Clone)]
pub(crate) struct CallScanner {
    format: CallFormat,
    phase: Phase,
    /// Bytes of the text read.
    pos: usize,
    /// Calls opened so far.
    opened: u32,
}

impl CallScanner {
    pub(crate) fn new(format: CallFormat) -> Self {
        Self { format, phase: Phase::Header { first: true }, pos: 0, opened: 0 }
    }

    /// Calls opened so far (their deltas were returned).
    pub(crate) fn opened(&self) -> u32 {
        self.opened
    }

    /// Whether the calls read so far are the whole answer: every call closed and, after them,
    /// at most whitespace (`text` is everything since the first call began).
    pub(crate) fn complete(&self, text: &str) -> bool {
        let rest_blank = text[self.pos..].trim().is_empty();
        match (&self.phase, self.format) {
            (Phase::Done, _) => rest_blank,
            (Phase::Header { first: false }, CallFormat::Hermes | CallFormat::MistralArgs) => {
                rest_blank
            }
            _ => false,
        }
    }

    /// Reads what `text` (everything since the first call began) adds since the last call.
    pub(crate) fn feed(&mut self, text: &str) -> Vec<CallDelta> {
        let mut out = Vec::new();
        loop {
            let rest = &text[self.pos..];
            match &mut self.phase {
                Phase::Done | Phase::Lost => return out,
                Phase::Header { first } => {
                    let pattern = match (self.format, *first) {
                        (CallFormat::Hermes, _) => HERMES_HEADER,
                        (CallFormat::Llama3Json, _) => LLAMA3_HEADER,
                        (CallFormat::Mistral, true) => MISTRAL_FIRST,
                        (CallFormat::Mistral, false) => MISTRAL_NEXT,
                        (CallFormat::MistralArgs, _) => MISTRAL_ARGS_HEADER,
                    };
                    match match_pattern(pattern, rest) {
                        Match::Whole { len, name } => {
                            self.pos += len;
                            let index = self.opened;
                            self.opened += 1;
                            out.push(CallDelta::Open { index, name: name.unwrap_or_default() });
                            self.phase = Phase::Args { scan: JsonEnd::default(), sent: self.pos };
                        }
                        Match::Partial => return out,
                        Match::No => {
                            self.phase = Phase::Lost;
                            return out;
                        }
                    }
                }
                Phase::Args { scan, sent } => {
                    let index = self.opened - 1;
                    let mut end = None;
                    for (i, c) in rest.char_indices() {
                        // Whitespace before the value is not part of the arguments.
                        if !scan.started && c.is_whitespace() {
                            *sent = self.pos + i + c.len_utf8();
                            continue;
                        }
                        match scan.feed(c) {
                            Some(true) => end = Some(self.pos + i + c.len_utf8()),
                            Some(false) => end = Some(self.pos + i),
                            None => continue,
                        }
                        break;
                    }
                    let upto = end.unwrap_or(text.len());
                    if upto > *sent {
                        out.push(CallDelta::Args { index, text: text[*sent..upto].to_owned() });
                        *sent = upto;
                    }
                    match end {
                        Some(end) => {
                            self.pos = end;
                            self.phase = Phase::After;
                        }
                        None => {
                            self.pos = text.len();
                            return out;
                        }
                    }
                }
                Phase::After => {
                    let pattern = match self.format {
                        CallFormat::Hermes => HERMES_AFTER,
                        CallFormat::Llama3Json | CallFormat::Mistral => CLOSE_BRACE,
                        CallFormat::MistralArgs => &[],
                    };
                    match match_pattern(pattern, rest) {
                        Match::Whole { len, .. } => {
                            self.pos += len;
                            self.phase = match self.format {
                                CallFormat::Hermes | CallFormat::MistralArgs => {
                                    Phase::Header { first: false }
                                }
                                CallFormat::Llama3Json => Phase::Done,
                                CallFormat::Mistral => Phase::Between,
                            };
                        }
                        Match::Partial => return out,
                        Match::No => {
                            self.phase = Phase::Lost;
                            return out;
                        }
                    }
                }
                Phase::Between => match match_pattern(MISTRAL_CLOSE, rest) {
                    Match::Whole { len, .. } => {
                        self.pos += len;
                        self.phase = Phase::Done;
                    }
                    close => match (close, match_pattern(MISTRAL_NEXT, rest)) {
                        (_, Match::Whole { .. }) => self.phase = Phase::Header { first: false },
                        (Match::No, Match::No) => {
                            self.phase = Phase::Lost;
                            return out;
                        }
                        _ => return out,
                    },
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `step` bytes (on character boundaries); returns every delta
    /// with the arguments of each call joined.
    fn scan(format: CallFormat, text: &str, step: usize) -> (Vec<(u32, String, String)>, bool) {
        let mut s = CallScanner::new(format);
        let mut calls: Vec<(u32, String, String)> = Vec::new();
        let mut end = 0;
        while end < text.len() {
            end = (end + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            for d in s.feed(&text[..end]) {
                match d {
                    CallDelta::Open { index, name } => calls.push((index, name, String::new())),
                    CallDelta::Args { index, text } => calls[index as usize].2.push_str(&text),
                }
            }
        }
        let complete = s.complete(text);
        (calls, complete)
    }

    #[test]
    fn hermes_calls_stream_in_any_pieces() {
        let args = r#"{"city": "Oslo \"north\" }", "n": [1, {"a": 2}]}"#;
        let text = format!(
            "<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {args}}}\n</tool_call>\n<tool_call>\n{{\"name\": \"now\", \"arguments\": {{}}}}\n</tool_call>\n"
        );
        for step in [1, 2, 3, 7, 1000] {
            let (calls, complete) = scan(CallFormat::Hermes, &text, step);
            assert_eq!(
                calls,
                [(0, "get_weather".into(), args.into()), (1, "now".into(), "{}".into())],
                "step {step}"
            );
            assert!(complete, "step {step}");
        }
        // Cut inside the second call: not complete, the first call whole.
        let (calls, complete) = scan(CallFormat::Hermes, &text[..text.len() - 16], 5);
        assert_eq!(calls.len(), 2);
        assert!(!complete);
    }

    #[test]
    fn mistral_and_llama3_calls_stream() {
        let text = r#"[TOOL_CALLS] [{"name": "a", "arguments": {"x": "é,]}"}},  {"name": "b-2", "arguments": {}}]"#;
        for step in [1, 4, 100] {
            let (calls, complete) = scan(CallFormat::Mistral, text, step);
            assert_eq!(
                calls,
                [(0, "a".into(), r#"{"x": "é,]}"}"#.into()), (1, "b-2".into(), "{}".into())]
            );
            assert!(complete);
        }
        let (calls, complete) = scan(CallFormat::Mistral, &text[..60], 3);
        assert_eq!(calls.len(), 1);
        assert!(!complete);
        let llama = r#"{"name": "get_weather", "parameters": {"city": "Oslo"}}"#;
        let (calls, complete) = scan(CallFormat::Llama3Json, llama, 3);
        assert_eq!(calls, [(0, "get_weather".into(), r#"{"city": "Oslo"}"#.into())]);
        assert!(complete);
        // Scalar arguments end at their delimiter.
        let scalar = r#"{"name": "f", "parameters": 42}"#;
        assert_eq!(scan(CallFormat::Llama3Json, scalar, 1).0, [(0, "f".into(), "42".into())]);
    }

    #[test]
    fn mistral_args_calls_stream() {
        let text = r#"[TOOL_CALLS]get_weather[ARGS]{"x": "é[ARGS]}"}[TOOL_CALLS]b-2[ARGS] {}"#;
        for step in [1, 4, 100] {
            let (calls, complete) = scan(CallFormat::MistralArgs, text, step);
            assert_eq!(
                calls,
                [
                    (0, "get_weather".into(), r#"{"x": "é[ARGS]}"}"#.into()),
                    (1, "b-2".into(), "{}".into())
                ],
                "step {step}"
            );
            assert!(complete, "step {step}");
        }
        let (calls, complete) = scan(CallFormat::MistralArgs, &text[..text.len() - 1], 3);
        assert_eq!(calls.len(), 2);
        assert!(!complete);
        let (calls, complete) = scan(CallFormat::MistralArgs, "[TOOL_CALLS]f{}", 1);
        assert!(calls.is_empty() && !complete, "no [ARGS]");
    }

    #[test]
    fn text_that_leaves_the_format_stops_the_scan() {
        let (calls, complete) =
            scan(CallFormat::Hermes, "<tool_call>\n{\"nom\": \"x\"}</tool_call>", 4);
        assert!(calls.is_empty() && !complete);
        let text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call> and then text";
        let (calls, complete) = scan(CallFormat::Hermes, text, 3);
        assert_eq!(calls.len(), 1);
        assert!(!complete, "text after the calls");
        assert_eq!(match_pattern(&[P::Lit("ab")], "a"), Match::Partial);
        assert_eq!(match_pattern(&[P::Lit("ab")], "ac"), Match::No);
    }
}
