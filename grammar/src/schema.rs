//! JSON and JSON Schema to grammar.
//!
//! What an answer may look like: compact or lightly formatted JSON (at most
//! [`MAX_WHITESPACE`] whitespace characters between tokens, so a model cannot pad forever),
//! object keys in the schema's order, declared properties only (a schema's extra properties
//! are allowed, not required, so leaving them out still validates), required ones always,
//! optional ones when the model chooses. Keywords that constrain values but cannot be enforced
//! while decoding (`multipleOf`, `uniqueItems`, bounds on non-integer numbers, ...) are refused
//! by name rather than ignored; annotations (`title`, `description`, ...) are ignored.

use std::collections::HashMap;

use crate::builder::{Builder, RuleId, Sym};
use crate::json::Json;
use crate::regex::regex_seq;
use crate::{ByteSet, Grammar, GrammarError};

/// Most whitespace characters allowed between two JSON tokens.
pub const MAX_WHITESPACE: u32 = 20;

/// Deepest nesting of subschemas a schema may have, `$ref`s followed included (request JSON
/// itself nests at most 128 deep).
pub const MAX_DEPTH: usize = 256;

/// Keywords that describe and do not constrain.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "examples",
    "default",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
    "strict",
];

/// Keywords this module enforces.
const ENFORCED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "nullable",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
];

/// Numeric bounds: enforced on integers, refused on other numbers.
const BOUNDS: [&str; 4] = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

/// String formats enforced, as patterns (RFC 3339 dates and times, RFC 4122 UUIDs, dotted
/// IPv4, a plain e-mail shape).
const FORMATS: &[(&str, &str)] = &[
    ("date", r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"),
    (
        "time",
        r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
    ),
    (
        "date-time",
        r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
    ),
    ("uuid", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    (
        "ipv4",
        r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    ),
    ("email", r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}"),
];

/// Bytes a JSON string holds only escaped.
fn string_excluded() -> ByteSet {
    ByteSet::range(0, 0x1f).union(ByteSet::of(b"\"\\"))
}

/// The grammar of any JSON object (OpenAI's `json_object` mode).
pub fn json_object() -> Result<Grammar, GrammarError> {
    let mut j = JsonBuilder::new("json_object");
    let root = j.any_object()?;
    j.b.build(root)
}

/// The grammar of JSON values valid under `schema`.
pub fn json_schema(schema: &Json) -> Result<Grammar, GrammarError> {
    let mut c =
        SchemaConv { j: JsonBuilder::new("#"), root: schema, refs: HashMap::new(), depth: 0 };
    let root = c.conv(schema, "#")?;
    c.j.b.build(root)
}

/// Adds the grammar of JSON values valid under `schema` to `b` (for grammars that hold JSON
/// among other things); errors name `at` followed by the JSON pointer in `schema`.
pub(crate) fn embed_schema(
    b: Builder,
    schema: &Json,
    at: &str,
) -> Result<(Builder, Sym), GrammarError> {
    let mut c =
        SchemaConv { j: JsonBuilder::with(b), root: schema, refs: HashMap::new(), depth: 0 };
    let root = c.conv(schema, "#").map_err(|e| e.prefixed(at))?;
    Ok((c.j.b, root))
}

/// Builds JSON's pieces once each.
struct JsonBuilder {
    b: Builder,
    ws: Option<Sym>,
    chars: Option<Sym>,
    string: Option<Sym>,
    integer: Option<Sym>,
    number: Option<Sym>,
    value: Option<RuleId>,
}

fn lit(s: &str) -> Vec<Sym> {
    Builder::literal(s.as_bytes())
}

fn set(s: ByteSet) -> Sym {
    Sym::Bytes(s)
}

fn cat(parts: &[&[Sym]]) -> Vec<Sym> {
    parts.concat()
}

impl JsonBuilder {
    fn new(at: &str) -> Self {
        Self::with(Builder::new(at))
    }

    /// Adds JSON's pieces to `b`, which may hold other rules.
    fn with(b: Builder) -> Self {
        Self { b, ws: None, chars: None, string: None, integer: None, number: None, value: None }
    }

    /// Up to [`MAX_WHITESPACE`] spaces, tabs and newlines.
    fn ws(&mut self) -> Result<Sym, GrammarError> {
        if let Some(s) = self.ws {
            return Ok(s);
        }
        let seq = self.b.repeat(&[set(ByteSet::of(b" \t\n\r"))], 0, Some(MAX_WHITESPACE))?;
        let s = self.b.rule(vec![seq])?;
        self.ws = Some(s);
        Ok(s)
    }

    /// One character of a JSON string: unescaped (any UTF-8 character but `"`, `\` and
    /// controls) or an escape.
    fn char(&mut self) -> Result<Sym, GrammarError> {
        if let Some(s) = self.chars {
            return Ok(s);
        }
        let cont = set(ByteSet::range(0x80, 0xbf));
        let hex = set(ByteSet::range(b'0', b'9')
            .union(ByteSet::range(b'a', b'f'))
            .union(ByteSet::range(b'A', b'F')));
        let s = self.b.rule(vec![
            vec![set(ByteSet::range(0x20, 0x7f).minus(string_excluded()))],
            vec![set(ByteSet::range(0xc2, 0xdf)), cont],
            vec![set(ByteSet::range(0xe0, 0xef)), cont, cont],
            vec![set(ByteSet::range(0xf0, 0xf4)), cont, cont, cont],
            vec![set(ByteSet::byte(b'\\')), set(ByteSet::of(b"\"\\/bfnrt"))],
            cat(&[&lit("\\u"), &[hex, hex, hex, hex]]),
        ])?;
        self.chars = Some(s);
        Ok(s)
    }

    /// A string of `min..=max` characters.
    fn string_len(&mut self, min: u32, max: Option<u32>) -> Result<Sym, GrammarError> {
        let any = min == 0 && max.is_none();
        if any && let Some(s) = self.string {
            return Ok(s);
        }
        let c = self.char()?;
        let body = self.b.repeat(&[c], min, max)?;
        let s = self.b.rule(vec![cat(&[&lit("\""), &body, &lit("\"")])])?;
        if any {
            self.string = Some(s);
        }
        Ok(s)
    }

    fn string(&mut self) -> Result<Sym, GrammarError> {
        self.string_len(0, None)
    }

    /// A string whose unescaped content matches `pattern`.
    fn string_pattern(&mut self, pattern: &str, at: &str) -> Result<Sym, GrammarError> {
        let body = regex_seq(&mut self.b, pattern, at, string_excluded())?;
        self.b.rule(vec![cat(&[&lit("\""), &body, &lit("\"")])])
    }

    /// `-?(0|[1-9][0-9]*)`.
    fn integer(&mut self) -> Result<Sym, GrammarError> {
        if let Some(s) = self.integer {
            return Ok(s);
        }
        let digit = set(ByteSet::range(b'0', b'9'));
        let digits = self.b.star(&[digit])?;
        let minus = self.b.optional(lit("-"))?;
        let s = self.b.rule(vec![
            vec![minus, set(ByteSet::byte(b'0'))],
            vec![minus, set(ByteSet::range(b'1', b'9')), digits],
        ])?;
        self.integer = Some(s);
        Ok(s)
    }

    /// An integer, then an optional fraction and exponent.
    fn number(&mut self) -> Result<Sym, GrammarError> {
        if let Some(s) = self.number {
            return Ok(s);
        }
        let int = self.integer()?;
        let digit = set(ByteSet::range(b'0', b'9'));
        let digits = self.b.repeat(&[digit], 1, None)?;
        let frac = self.b.optional(cat(&[&lit("."), &digits]))?;
        let sign = self.b.optional(vec![set(ByteSet::of(b"+-"))])?;
        let exp = self.b.optional(cat(&[&[set(ByteSet::of(b"eE")), sign], &digits]))?;
        let s = self.b.rule(vec![vec![int, frac, exp]])?;
        self.number = Some(s);
        Ok(s)
    }

    /// Any JSON value.
    fn any_value(&mut self) -> Result<Sym, GrammarError> {
        if let Some(r) = self.value {
            return Ok(Sym::Rule(r));
        }
        let r = self.b.reserve();
        self.value = Some(r);
        let v = Sym::Rule(r);
        let string = self.string()?;
        let number = self.number()?;
        let object = self.map_of(v, string)?;
        let array = self.array_of(v, 0, None)?;
        self.b.define(
            r,
            vec![
                vec![object],
                vec![array],
                vec![string],
                vec![number],
                lit("true"),
                lit("false"),
                lit("null"),
            ],
        )?;
        Ok(v)
    }

    fn any_object(&mut self) -> Result<Sym, GrammarError> {
        let v = self.any_value()?;
        let string = self.string()?;
        self.map_of(v, string)
    }

    /// An object with any keys matching `key` (a string symbol), each value a `value`.
    fn map_of(&mut self, value: Sym, key: Sym) -> Result<Sym, GrammarError> {
        let ws = self.ws()?;
        let member = cat(&[&[key, ws], &lit(":"), &[ws, value]]);
        let more = self.b.star(&cat(&[&[ws], &lit(","), &[ws], &member]))?;
        let members = self.b.optional(cat(&[&member, &[more]]))?;
        self.b.rule(vec![cat(&[&lit("{"), &[ws, members, ws], &lit("}")])])
    }

    /// An array of `min..=max` items.
    fn array_of(&mut self, item: Sym, min: u32, max: Option<u32>) -> Result<Sym, GrammarError> {
        let ws = self.ws()?;
        if max == Some(0) {
            return self.b.rule(vec![cat(&[&lit("["), &[ws], &lit("]")])]);
        }
        let sep_item = cat(&[&[ws], &lit(","), &[ws, item]]);
        let more = self.b.repeat(&sep_item, min.saturating_sub(1), max.map(|m| m - 1))?;
        let items = cat(&[&[item], &more]);
        let body = if min == 0 { vec![self.b.optional(items)?] } else { items };
        self.b.rule(vec![cat(&[&lit("["), &[ws], &body, &[ws], &lit("]")])])
    }
}

/// Converts one schema and the schemas it refers to.
struct SchemaConv<'a> {
    j: JsonBuilder,
    root: &'a Json,
    /// `$ref` targets already converted (or being converted: recursive schemas).
    refs: HashMap<String, RuleId>,
    /// Schemas being converted (the recursion depth), `$ref`s followed included.
    depth: usize,
}

impl<'a> SchemaConv<'a> {
    fn unsupported(keyword: &str, at: &str) -> GrammarError {
        GrammarError::Unsupported { keyword: keyword.to_owned(), at: at.to_owned() }
    }

    fn invalid(at: &str, reason: impl Into<String>) -> GrammarError {
        GrammarError::Invalid { at: at.to_owned(), reason: reason.into() }
    }

    /// Converts `schema`, refusing nesting past [`MAX_DEPTH`]: conversion recurses into every
    /// subschema and `$ref` target, and a client's schema (a chain of a few thousand `$ref`s is
    /// only kilobytes) must not overflow the thread's stack.
    fn conv(&mut self, schema: &'a Json, at: &str) -> Result<Sym, GrammarError> {
        if self.depth >= MAX_DEPTH {
            return Err(Self::invalid(
                at,
                format!("subschemas nested more than {MAX_DEPTH} deep (counting `$ref`s followed)"),
            ));
        }
        self.depth += 1;
        let out = self.conv_inner(schema, at);
        self.depth -= 1;
        out
    }

    fn conv_inner(&mut self, schema: &'a Json, at: &str) -> Result<Sym, GrammarError> {
        let m = match schema {
            Json::Bool(true) => return self.j.any_value(),
            Json::Bool(false) => {
                return Err(Self::invalid(at, "the schema `false` allows nothing"));
            }
            Json::Object(m) => m,
            _ => return Err(Self::invalid(at, "a schema must be an object or a boolean")),
        };
        for (k, _) in m {
            if !ENFORCED.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
                return Err(Self::unsupported(k, at));
            }
        }
        let has = |k: &str| schema.get(k).is_some();
        let structural: Vec<&str> = ENFORCED.iter().copied().filter(|k| has(k)).collect();
        // Keywords that replace the rest of the schema; combined with others, the schema
        // would be an intersection, which is refused by name.
        for exclusive in ["$ref", "const", "enum", "anyOf", "oneOf", "allOf"] {
            if has(exclusive)
                && let Some(other) = structural.iter().find(|&&k| k != exclusive && k != "type")
            {
                return Err(Self::invalid(
                    at,
                    format!("`{exclusive}` alongside `{other}` is not supported"),
                ));
            }
        }
        if let Some(r) = schema.get("$ref") {
            return self.reference(r, at);
        }
        if let Some(c) = schema.get("const") {
            return self.j.b.rule(vec![lit(&c.to_text())]);
        }
        if let Some(e) = schema.get("enum") {
            let Json::Array(values) = e else {
                return Err(Self::invalid(at, "`enum` must be an array"));
            };
            if values.is_empty() {
                return Err(Self::invalid(at, "`enum` must not be empty"));
            }
            return self.j.b.choice(values.iter().map(|v| v.to_text().into_bytes()).collect());
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            let Some(list) = schema.get(key) else { continue };
            let Json::Array(items) = list else {
                return Err(Self::invalid(at, format!("`{key}` must be an array")));
            };
            if items.is_empty() {
                return Err(Self::invalid(at, format!("`{key}` must not be empty")));
            }
            if key == "allOf" && items.len() > 1 {
                return Err(Self::unsupported("allOf (more than one schema)", at));
            }
            let mut alts = Vec::new();
            for (i, item) in items.iter().enumerate() {
                alts.push(vec![self.conv(item, &format!("{at}/{key}/{i}"))?]);
            }
            return self.j.b.rule(alts);
        }
        let types = self.types(schema, at)?;
        let bounded = BOUNDS.iter().find(|k| has(k));
        if let Some(k) = bounded
            && types.iter().any(|t| matches!(*t, "number" | "any"))
        {
            // Ranges of decimals (with fractions and exponents) are not enforced.
            return Err(Self::unsupported(&format!("{k} (on a non-integer number)"), at));
        }
        let mut alts = Vec::new();
        for t in types {
            alts.push(vec![match t {
                "string" => self.string(schema, at)?,
                "integer" if bounded.is_some() => self.integer_in_bounds(schema, at)?,
                "integer" => self.j.integer()?,
                "number" => self.j.number()?,
                "boolean" => self.j.b.rule(vec![lit("true"), lit("false")])?,
                "null" => self.j.b.rule(vec![lit("null")])?,
                "object" => self.object(schema, at)?,
                "array" => self.array(schema, at)?,
                _ => self.j.any_value()?,
            }]);
        }
        if matches!(schema.get("nullable"), Some(Json::Bool(true))) {
            alts.push(lit("null"));
        }
        if alts.len() == 1 && alts[0].len() == 1 {
            return Ok(alts[0][0]);
        }
        self.j.b.rule(alts)
    }

    /// The schema's types: `type` (a name or a list), or what its keywords imply, or any.
    fn types(&self, schema: &Json, at: &str) -> Result<Vec<&'static str>, GrammarError> {
        const NAMES: [&str; 7] =
            ["string", "integer", "number", "boolean", "null", "object", "array"];
        let name = |v: &Json| {
            v.as_str()
                .and_then(|s| NAMES.iter().copied().find(|&n| n == s))
                .ok_or_else(|| Self::invalid(at, format!("unknown type {}", v.to_text())))
        };
        match schema.get("type") {
            Some(Json::Array(list)) if !list.is_empty() => list.iter().map(name).collect(),
            Some(Json::Array(_)) => Err(Self::invalid(at, "`type` must not be empty")),
            Some(t) => Ok(vec![name(t)?]),
            None => {
                let has = |ks: &[&str]| ks.iter().any(|k| schema.get(k).is_some());
                Ok(if has(&["properties", "required", "additionalProperties"]) {
                    vec!["object"]
                } else if has(&["items", "minItems", "maxItems"]) {
                    vec!["array"]
                } else if has(&["minLength", "maxLength", "pattern", "format"]) {
                    vec!["string"]
                } else {
                    vec!["any"]
                })
            }
        }
    }

    fn count(schema: &Json, key: &str, at: &str) -> Result<Option<u32>, GrammarError> {
        match schema.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(|| {
                Self::invalid(at, format!("`{key}` must be a non-negative integer"))
            }),
        }
    }

    /// An integer within the schema's bounds (draft 4's boolean `exclusiveMinimum` /
    /// `exclusiveMaximum` and draft 6's numeric ones both read).
    fn integer_in_bounds(&mut self, schema: &Json, at: &str) -> Result<Sym, GrammarError> {
        // Beyond ±2^53 an f64 bound no longer names one integer.
        const LIMIT: f64 = 9_007_199_254_740_992.0;
        let num = |k: &str| -> Result<Option<f64>, GrammarError> {
            match schema.get(k) {
                None | Some(Json::Bool(_)) => Ok(None),
                Some(Json::Number(n)) => match n.as_f64() {
                    Some(v) if v.abs() <= LIMIT => Ok(Some(v)),
                    _ => Err(Self::invalid(at, format!("`{k}` is beyond ±2^53"))),
                },
                Some(_) => Err(Self::invalid(at, format!("`{k}` must be a number"))),
            }
        };
        let flag = |k: &str| matches!(schema.get(k), Some(Json::Bool(true)));
        let mut lo: Option<i128> = None;
        let mut hi: Option<i128> = None;
        let raise = |cur: Option<i128>, v: i128| Some(cur.map_or(v, |c| c.max(v)));
        let lower = |cur: Option<i128>, v: i128| Some(cur.map_or(v, |c| c.min(v)));
        if let Some(m) = num("minimum")? {
            lo = raise(
                lo,
                if flag("exclusiveMinimum") { m.floor() as i128 + 1 } else { m.ceil() as i128 },
            );
        }
        if let Some(m) = num("exclusiveMinimum")? {
            lo = raise(lo, m.floor() as i128 + 1);
        }
        if let Some(m) = num("maximum")? {
            hi = lower(
                hi,
                if flag("exclusiveMaximum") { m.ceil() as i128 - 1 } else { m.floor() as i128 },
            );
        }
        if let Some(m) = num("exclusiveMaximum")? {
            hi = lower(hi, m.ceil() as i128 - 1);
        }
        if let (Some(l), Some(h)) = (lo, hi)
            && l > h
        {
            return Err(Self::invalid(at, "no integer lies within the bounds"));
        }
        let alts = crate::numeric::integer_range(&mut self.j.b, lo, hi)?;
        self.j.b.rule(alts)
    }

    fn string(&mut self, schema: &Json, at: &str) -> Result<Sym, GrammarError> {
        let min = Self::count(schema, "minLength", at)?;
        let max = Self::count(schema, "maxLength", at)?;
        let pattern = match (schema.get("pattern"), schema.get("format")) {
            (Some(_), Some(_)) => {
                return Err(Self::invalid(at, "`pattern` alongside `format` is not supported"));
            }
            (Some(p), None) => {
                Some(p.as_str().ok_or_else(|| Self::invalid(at, "`pattern` must be a string"))?)
            }
            (None, Some(f)) => {
                let name =
                    f.as_str().ok_or_else(|| Self::invalid(at, "`format` must be a string"))?;
                let Some(&(_, p)) = FORMATS.iter().find(|(n, _)| *n == name) else {
                    return Err(Self::unsupported(&format!("format: {name}"), at));
                };
                Some(p)
            }
            (None, None) => None,
        };
        match pattern {
            Some(_) if min.is_some() || max.is_some() => Err(Self::invalid(
                at,
                "`minLength`/`maxLength` alongside `pattern` or `format` is not supported",
            )),
            Some(p) => self.j.string_pattern(p, &format!("{at}/pattern")),
            None => {
                let min = min.unwrap_or(0);
                if max.is_some_and(|m| m < min) {
                    return Err(Self::invalid(at, "`maxLength` is less than `minLength`"));
                }
                self.j.string_len(min, max)
            }
        }
    }

    fn object(&mut self, schema: &'a Json, at: &str) -> Result<Sym, GrammarError> {
        let props: &[(String, Json)] = match schema.get("properties") {
            None => &[],
            Some(Json::Object(p)) => p,
            Some(_) => return Err(Self::invalid(at, "`properties` must be an object")),
        };
        let required: Vec<&str> = match schema.get("required") {
            None => Vec::new(),
            Some(Json::Array(r)) => r
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| Self::invalid(at, "`required` must list strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Self::invalid(at, "`required` must be an array")),
        };
        if let Some(missing) = required.iter().find(|r| !props.iter().any(|(k, _)| k == *r)) {
            return Err(Self::invalid(
                at,
                format!("required property \"{missing}\" is not in `properties`"),
            ));
        }
        if props.is_empty() {
            return match schema.get("additionalProperties") {
                None | Some(Json::Bool(true)) => self.j.any_object(),
                Some(Json::Bool(false)) => {
                    let ws = self.j.ws()?;
                    self.j.b.rule(vec![cat(&[&lit("{"), &[ws], &lit("}")])])
                }
                Some(extra) => {
                    let v = self.conv(extra, &format!("{at}/additionalProperties"))?;
                    let key = self.j.string()?;
                    self.j.map_of(v, key)
                }
            };
        }
        let ws = self.j.ws()?;
        let mut members = Vec::with_capacity(props.len());
        for (k, v) in props {
            let value = self.conv(v, &format!("{at}/properties/{}", escape_pointer(k)))?;
            let key = Json::String(k.clone()).to_text();
            members.push((
                cat(&[&lit(&key), &[ws], &lit(":"), &[ws, value]]),
                required.contains(&k.as_str()),
            ));
        }
        // From the last property back: `first` is what may follow "{" (no comma before the
        // next member), `rest` what follows a member (each member after a comma).
        let (mut first, mut rest) = (Vec::<Sym>::new(), Vec::<Sym>::new());
        for (member, req) in members.into_iter().rev() {
            let with_first = cat(&[&member, &rest]);
            let with_rest = cat(&[&[ws], &lit(","), &[ws], &member, &rest]);
            let (f, r) = if req {
                (self.j.b.rule(vec![with_first])?, self.j.b.rule(vec![with_rest])?)
            } else {
                (self.j.b.rule(vec![with_first, first])?, self.j.b.rule(vec![with_rest, rest])?)
            };
            (first, rest) = (vec![f], vec![r]);
        }
        self.j.b.rule(vec![cat(&[&lit("{"), &[ws], &first, &[ws], &lit("}")])])
    }

    fn array(&mut self, schema: &'a Json, at: &str) -> Result<Sym, GrammarError> {
        let min = Self::count(schema, "minItems", at)?.unwrap_or(0);
        let max = Self::count(schema, "maxItems", at)?;
        if max.is_some_and(|m| m < min) {
            return Err(Self::invalid(at, "`maxItems` is less than `minItems`"));
        }
        let item = match schema.get("items") {
            None => self.j.any_value()?,
            Some(s @ (Json::Object(_) | Json::Bool(_))) => self.conv(s, &format!("{at}/items"))?,
            Some(_) => return Err(Self::unsupported("items (as an array)", at)),
        };
        self.j.array_of(item, min, max)
    }

    /// A `$ref` to this document (`#`, `#/$defs/...`, any JSON pointer): one rule per target,
    /// so recursive schemas (trees, linked lists) work.
    fn reference(&mut self, r: &Json, at: &str) -> Result<Sym, GrammarError> {
        let Some(target) = r.as_str() else {
            return Err(Self::invalid(at, "`$ref` must be a string"));
        };
        if let Some(&id) = self.refs.get(target) {
            return Ok(Sym::Rule(id));
        }
        let Some(pointer) = target.strip_prefix('#') else {
            return Err(Self::unsupported(
                &format!("$ref: {target} (only references within the schema)"),
                at,
            ));
        };
        let Some(resolved) = self.root.pointer(pointer) else {
            return Err(Self::invalid(at, format!("`$ref` target {target} does not exist")));
        };
        let id = self.j.b.reserve();
        self.refs.insert(target.to_owned(), id);
        let sym = self.conv(resolved, target)?;
        self.j.b.define(id, vec![vec![sym]])?;
        Ok(Sym::Rule(id))
    }
}

/// A key as a JSON pointer token.
fn escape_pointer(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}
