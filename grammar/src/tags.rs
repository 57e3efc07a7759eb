//! Tagged sections in free text ("structural tags", as xgrammar and vLLM call them): the answer
//! is free text until it writes a trigger; from there it must go on with one of the tags whose
//! `begin` starts with that trigger, then JSON valid under the tag's schema, then its `end`.
//!
//! This is how a model that may or may not call tools is held to valid calls without being
//! forced to call: free text costs nothing, and once the model writes `<tool_call>` what
//! follows is a call of a tool that exists, with arguments its schema accepts.
//!
//! The free text is the language "no trigger occurs", recognised by the Aho-Corasick automaton
//! of the triggers: one rule per proper prefix of a trigger, tail calls only, so a long text is
//! one matcher state.

use std::collections::HashMap;

use crate::builder::{Builder, RuleId, Sym};
use crate::json::Json;
use crate::schema::{MAX_WHITESPACE, embed_schema};
use crate::{ByteSet, Grammar, GrammarError};

/// One kind of tagged section: `begin`, a JSON value valid under `schema`, `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    /// What opens the section; it starts with one of the triggers.
    pub begin: String,
    /// The JSON Schema of what the section holds.
    pub schema: Json,
    /// What closes the section.
    pub end: String,
}

/// What may follow a closed section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterTag {
    /// Free text again, with more sections (vLLM's `structural_tag`).
    Text,
    /// Only whitespace and further sections, then the end of the answer (tool calls).
    Tags {
        /// Most sections in all (`None`: any number).
        max: Option<u32>,
    },
    /// The sections are the items of one list, then the end of the answer (Mistral's
    /// `[TOOL_CALLS] [call, call]`): every tag's `begin` starts with `prefix` (a trigger and the
    /// list's opening); a later item is `separator`, whitespace, and its tag's `begin` without
    /// `prefix`; `close` ends the list.
    List {
        /// Most items in all (`None`: any number).
        max: Option<u32>,
        /// What every `begin` starts with, written once before the first item.
        prefix: String,
        /// What goes between two items.
        separator: String,
        /// What ends the list.
        close: String,
    },
}

/// Sections of [`Tag`]s in free text.
#[derive(Debug, Clone, PartialEq)]
pub struct TagSpec {
    /// The kinds of section.
    pub tags: Vec<Tag>,
    /// Strings that open a section wherever they occur in the free text.
    pub triggers: Vec<String>,
    /// What follows a closed section.
    pub after: AfterTag,
    /// At least one section, and no text before the first (`tool_choice: "required"`).
    pub required: bool,
    /// Triggers open a section only at the very start of the answer; later they are plain
    /// text (formats whose calls are the whole answer: Llama 3's JSON calls).
    pub at_start: bool,
}

impl TagSpec {
    /// A key equal for equal specs.
    pub(crate) fn key(&self) -> String {
        let mut k = format!("tags\0{:?}\0{}\0{}\0", self.after, self.required, self.at_start);
        for t in &self.triggers {
            k.push_str(t);
            k.push('\0');
        }
        for t in &self.tags {
            k.push_str(&format!("{}\0{}\0{}\0", t.begin, t.schema.to_text(), t.end));
        }
        k
    }
}

/// What opens a Hermes tool call.
pub const HERMES_OPEN: &str = "<tool_call>";
/// What closes a Hermes tool call.
pub const HERMES_CLOSE: &str = "</tool_call>";

/// Tool calls in the Hermes format (what Hermes, Qwen 2.5 and SmolLM3 are trained on):
///
/// ```text
/// <tool_call>
/// {"name": "get_weather", "arguments": {"city": "Oslo"}}
/// </tool_call>
/// ```
///
/// `tools`: each tool's name (letters, digits, `_` and `-`: nothing to escape in JSON) and
/// parameter schema. `required`: the answer is calls only, at least one; otherwise text, then
/// optionally calls. `parallel: false` allows one call at most.
pub fn hermes_calls(tools: &[(String, Json)], required: bool, parallel: bool) -> TagSpec {
    let tags = tools
        .iter()
        .map(|(name, parameters)| Tag {
            begin: format!("{HERMES_OPEN}\n{{\"name\": \"{name}\", \"arguments\": "),
            schema: parameters.clone(),
            end: format!("}}\n{HERMES_CLOSE}"),
        })
        .collect();
    TagSpec {
        tags,
        triggers: vec![HERMES_OPEN.into()],
        after: AfterTag::Tags { max: (!parallel).then_some(1) },
        required,
        at_start: false,
    }
}

/// What opens a Llama 3 JSON tool call.
pub const LLAMA3_OPEN: &str = "{\"name\": \"";

/// A tool call in Llama 3's JSON format (what Llama 3.1 / 3.2 chat templates ask for when given
/// tools): the whole answer is `{"name": "get_weather", "parameters": {"city": "Oslo"}}`, or
/// it is text. One call per answer. `required`: the answer must be a call.
pub fn llama3_json_calls(tools: &[(String, Json)], required: bool) -> TagSpec {
    let tags = tools
        .iter()
        .map(|(name, parameters)| Tag {
            begin: format!("{LLAMA3_OPEN}{name}\", \"parameters\": "),
            schema: parameters.clone(),
            end: "}".into(),
        })
        .collect();
    TagSpec {
        tags,
        triggers: vec![LLAMA3_OPEN.into()],
        after: AfterTag::Tags { max: Some(1) },
        required,
        at_start: true,
    }
}

/// What opens Mistral's tool calls (a control token in Mistral's tokenizers, which lorad reads
/// as text).
pub const MISTRAL_OPEN: &str = "[TOOL_CALLS]";

/// Tool calls in Mistral's format (what the chat templates of Mistral 7B Instruct v0.3 and its
/// kin ask for): `[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}]`, one
/// list of calls after optional text. `required`: calls only; `parallel: false`: one call.
pub fn mistral_calls(tools: &[(String, Json)], required: bool, parallel: bool) -> TagSpec {
    let prefix = format!("{MISTRAL_OPEN} [");
    let tags = tools
        .iter()
        .map(|(name, parameters)| Tag {
            begin: format!("{prefix}{{\"name\": \"{name}\", \"arguments\": "),
            schema: parameters.clone(),
            end: "}".into(),
        })
        .collect();
    TagSpec {
        tags,
        triggers: vec![MISTRAL_OPEN.into()],
        after: AfterTag::List {
            max: (!parallel).then_some(1),
            prefix,
            separator: ",".into(),
            close: "]".into(),
        },
        required,
        at_start: false,
    }
}

/// What separates a call's name from its arguments in Mistral's newer syntax (a control token in
/// Mistral's tokenizers, which lorad reads as text).
pub const MISTRAL_ARGS: &str = "[ARGS]";

/// Tool calls in Mistral's newer syntax (the chat templates of Mistral Small 3.1 and later,
/// Magistral, Devstral, Ministral: tokenizer version 11 on): each call is
/// `[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}`, calls follow one another after optional
/// text. `required`: calls only; `parallel: false`: one call.
pub fn mistral_args_calls(tools: &[(String, Json)], required: bool, parallel: bool) -> TagSpec {
    let tags = tools
        .iter()
        .map(|(name, parameters)| Tag {
            begin: format!("{MISTRAL_OPEN}{name}{MISTRAL_ARGS}"),
            schema: parameters.clone(),
            end: String::new(),
        })
        .collect();
    TagSpec {
        tags,
        triggers: vec![MISTRAL_OPEN.into()],
        after: AfterTag::Tags { max: (!parallel).then_some(1) },
        required,
        at_start: false,
    }
}

fn invalid(at: impl Into<String>, reason: impl Into<String>) -> GrammarError {
    GrammarError::Invalid { at: at.into(), reason: reason.into() }
}

/// Compiles `spec`.
pub(crate) fn tags(spec: &TagSpec) -> Result<Grammar, GrammarError> {
    if spec.tags.is_empty() {
        return Err(invalid("structures", "at least one structure is needed"));
    }
    if spec.triggers.is_empty() && !spec.required {
        return Err(invalid("triggers", "at least one trigger is needed"));
    }
    if let Some(i) = spec.triggers.iter().position(String::is_empty) {
        return Err(invalid(format!("triggers[{i}]"), "a trigger cannot be empty"));
    }
    for (i, t) in spec.tags.iter().enumerate() {
        if !spec.required && !spec.triggers.iter().any(|tr| t.begin.starts_with(tr.as_str())) {
            return Err(invalid(
                format!("structures[{i}].begin"),
                "must start with one of the triggers",
            ));
        }
    }
    let mut b = Builder::new("structural_tag");
    // Each tag's body once: `schema end`.
    let mut bodies = Vec::with_capacity(spec.tags.len());
    for (i, t) in spec.tags.iter().enumerate() {
        let (nb, value) = embed_schema(b, &t.schema, &format!("structures[{i}].schema"))?;
        b = nb;
        let mut body = vec![value];
        body.extend(Builder::literal(t.end.as_bytes()));
        bodies.push(body);
    }
    // Tags' begins as a trie: calls of many tools share `<tool_call>{"name": "` and follow
    // it as one parse, not one per tool.
    let whole = |b: &mut Builder, next: Option<Sym>| -> Result<Sym, GrammarError> {
        let items = spec
            .tags
            .iter()
            .zip(&bodies)
            .map(|(t, body)| {
                let mut then = body.clone();
                then.extend(next);
                (t.begin.as_bytes().to_vec(), then)
            })
            .collect();
        b.choice_then(items)
    };
    match &spec.after {
        AfterTag::Text if spec.at_start => {
            let any = b.star(&[Sym::Bytes(ByteSet::range(0, 255))])?;
            if spec.required {
                let first = whole(&mut b, Some(any))?;
                return b.build(first);
            }
            let root = start_text(&mut b, spec, &bodies, any, any)?;
            b.build(root)
        }
        AfterTag::Text => {
            let text = FreeText::new(spec);
            let root = b.reserve();
            text.define(&mut b, root, &bodies, Sym::Rule(root))?;
            if spec.required {
                let first = whole(&mut b, Some(Sym::Rule(root)))?;
                return b.build(first);
            }
            b.build(Sym::Rule(root))
        }
        AfterTag::Tags { max } | AfterTag::List { max, .. } => {
            let ws = b.repeat(&[Sym::Bytes(ByteSet::of(b" \t\n\r"))], 0, Some(MAX_WHITESPACE))?;
            let ws = b.rule(vec![ws])?;
            let (end, item) = match &spec.after {
                AfterTag::List { prefix, separator, close, .. } => {
                    // An item after the first: `separator`, the rest of a tag's begin, its body.
                    let mut items = Vec::with_capacity(spec.tags.len());
                    for (i, (t, body)) in spec.tags.iter().zip(&bodies).enumerate() {
                        let Some(rest) = t.begin.strip_prefix(prefix.as_str()) else {
                            return Err(invalid(
                                format!("structures[{i}].begin"),
                                "must start with the list's prefix",
                            ));
                        };
                        let mut item = Builder::literal(separator.as_bytes());
                        item.push(ws);
                        item.extend(Builder::literal(rest.as_bytes()));
                        item.extend_from_slice(body);
                        items.push(item);
                    }
                    let mut end = vec![ws];
                    end.extend(Builder::literal(close.as_bytes()));
                    end.push(ws);
                    (b.rule(vec![end])?, Some(items))
                }
                _ => (ws, None),
            };
            // A further section, then `next`: a whole tag, or a list's next item.
            let more = |b: &mut Builder, next: Sym| -> Result<Sym, GrammarError> {
                match &item {
                    Some(items) => b.rule(
                        items
                            .iter()
                            .map(|i| {
                                let mut alt = i.clone();
                                alt.push(next);
                                alt
                            })
                            .collect(),
                    ),
                    None => whole(b, Some(next)),
                }
            };
            // rest_k ::= end | ws MORE rest_(k-1): at most k more sections.
            let rest = match *max {
                Some(0) => return Err(invalid("max", "at least one section must be allowed")),
                Some(max) => {
                    let mut rest = end;
                    for _ in 1..max {
                        let m = more(&mut b, rest)?;
                        rest = b.rule(vec![vec![end], vec![ws, m]])?;
                    }
                    rest
                }
                None => {
                    let id = b.reserve();
                    let m = more(&mut b, Sym::Rule(id))?;
                    b.define(id, vec![vec![end], vec![ws, m]])?;
                    Sym::Rule(id)
                }
            };
            if spec.required {
                let first = whole(&mut b, Some(rest))?;
                return b.build(first);
            }
            if spec.at_start {
                let any = b.star(&[Sym::Bytes(ByteSet::range(0, 255))])?;
                let root = start_text(&mut b, spec, &bodies, rest, any)?;
                return b.build(root);
            }
            let text = FreeText::new(spec);
            let root = b.reserve();
            text.define(&mut b, root, &bodies, rest)?;
            b.build(Sym::Rule(root))
        }
    }
}

/// The empty prefix, then every other proper prefix of the triggers, once each.
fn trigger_prefixes(spec: &TagSpec) -> Vec<Vec<u8>> {
    let mut states: Vec<Vec<u8>> = vec![Vec::new()];
    for t in &spec.triggers {
        for n in 1..t.len() {
            let p = t.as_bytes()[..n].to_vec();
            if !states.contains(&p) {
                states.push(p);
            }
        }
    }
    states
}

/// An answer that opens a section if it starts with a trigger (the section then goes on with
/// `after`), and is any text (`any`) once it has not.
fn start_text(
    b: &mut Builder,
    spec: &TagSpec,
    bodies: &[Vec<Sym>],
    after: Sym,
    any: Sym,
) -> Result<Sym, GrammarError> {
    let states = trigger_prefixes(spec);
    let ids: Vec<RuleId> = states.iter().map(|_| b.reserve()).collect();
    for (si, state) in states.iter().enumerate() {
        let mut to: Vec<ByteSet> = vec![ByteSet::EMPTY; states.len()];
        let mut plain = ByteSet::EMPTY;
        let mut alts: Vec<Vec<Sym>> = vec![Vec::new()];
        for byte in 0..=255u8 {
            let mut w = state.clone();
            w.push(byte);
            if let Some(t) = spec.triggers.iter().position(|t| t.as_bytes() == w.as_slice()) {
                alts.push(vec![
                    Sym::Bytes(ByteSet::byte(byte)),
                    opened(b, spec, t, bodies, after)?,
                ]);
            } else if let Some(next) = states.iter().position(|p| *p == w) {
                to[next] = to[next].union(ByteSet::byte(byte));
            } else {
                plain = plain.union(ByteSet::byte(byte));
            }
        }
        for (next, set) in to.into_iter().enumerate() {
            if set != ByteSet::EMPTY {
                alts.push(vec![Sym::Bytes(set), Sym::Rule(ids[next])]);
            }
        }
        if plain != ByteSet::EMPTY {
            alts.push(vec![Sym::Bytes(plain), any]);
        }
        b.define(ids[si], alts)?;
    }
    Ok(Sym::Rule(ids[0]))
}

/// The automaton of "free text in which no trigger occurs", over the proper prefixes of the
/// triggers.
struct FreeText<'a> {
    spec: &'a TagSpec,
    /// State `i` is having just written `states[i]`, the longest suffix of the text that is a
    /// proper prefix of a trigger; state 0 is the empty prefix.
    states: Vec<Vec<u8>>,
}

impl<'a> FreeText<'a> {
    fn new(spec: &'a TagSpec) -> Self {
        Self { spec, states: trigger_prefixes(spec) }
    }

    /// Defines `root` as the free text, where a section that closes goes on with `after`.
    fn define(
        &self,
        b: &mut Builder,
        root: RuleId,
        bodies: &[Vec<Sym>],
        after: Sym,
    ) -> Result<(), GrammarError> {
        let index: HashMap<&[u8], usize> =
            self.states.iter().enumerate().map(|(i, s)| (s.as_slice(), i)).collect();
        let mut ids = vec![root];
        ids.extend((1..self.states.len()).map(|_| b.reserve()));
        // The rest of a section once `trigger` is written: each tag it opens.
        let mut fire: HashMap<usize, Sym> = HashMap::new();
        for (si, state) in self.states.iter().enumerate() {
            let mut to: Vec<ByteSet> = vec![ByteSet::EMPTY; self.states.len()];
            let mut alts: Vec<Vec<Sym>> = vec![Vec::new()];
            for byte in 0..=255u8 {
                let mut w = state.clone();
                w.push(byte);
                // The longest trigger the text now ends with opens a section.
                let fired = (0..self.spec.triggers.len())
                    .filter(|&t| w.ends_with(self.spec.triggers[t].as_bytes()))
                    .max_by_key(|&t| self.spec.triggers[t].len());
                if let Some(t) = fired {
                    let rest = match fire.get(&t) {
                        Some(&s) => s,
                        None => {
                            let s = opened(b, self.spec, t, bodies, after)?;
                            fire.insert(t, s);
                            s
                        }
                    };
                    alts.push(vec![Sym::Bytes(ByteSet::byte(byte)), rest]);
                    continue;
                }
                let next = (0..w.len()).find_map(|k| index.get(&w[k..]).copied()).unwrap_or(0);
                to[next] = to[next].union(ByteSet::byte(byte));
            }
            for (next, set) in to.into_iter().enumerate() {
                if set != ByteSet::EMPTY {
                    alts.push(vec![Sym::Bytes(set), Sym::Rule(ids[next])]);
                }
            }
            b.define(ids[si], alts)?;
        }
        Ok(())
    }
}

/// What follows trigger `t`: the rest of the `begin` of each tag it opens, its body, then
/// `after`.
fn opened(
    b: &mut Builder,
    spec: &TagSpec,
    t: usize,
    bodies: &[Vec<Sym>],
    after: Sym,
) -> Result<Sym, GrammarError> {
    let trigger = spec.triggers[t].as_str();
    let items: Vec<(Vec<u8>, Vec<Sym>)> = spec
        .tags
        .iter()
        .zip(bodies)
        .filter_map(|(tag, body)| {
            let rest = tag.begin.strip_prefix(trigger)?;
            let mut then = body.clone();
            then.push(after);
            Some((rest.as_bytes().to_vec(), then))
        })
        .collect();
    if items.is_empty() {
        return Err(invalid(
            format!("triggers[{t}]"),
            "no structure's begin starts with this trigger",
        ));
    }
    b.choice_then(items)
}
