//! [`Constraint`]: what a request constrains its answer to, and [`GrammarCache`]: compiled
//! grammars kept by constraint, so a schema sent with every request is compiled once and its
//! token masks are reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::builder::Builder;
use crate::json::Json;
use crate::regex::regex_seq;
use crate::tags::TagSpec;
use crate::{ByteSet, Grammar, GrammarError, schema};

/// A structured-output constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON valid under this schema.
    JsonSchema(Json),
    /// Text matching this regular expression in full.
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// Text in the language of this GBNF grammar (llama.cpp's format; the start rule is
    /// `root`).
    Grammar(String),
    /// Free text with tagged JSON sections (tool calls; vLLM's `structural_tag`).
    Tags(TagSpec),
}

impl Constraint {
    /// Compiles the constraint.
    pub fn compile(&self) -> Result<Grammar, GrammarError> {
        match self {
            Self::JsonObject => schema::json_object(),
            Self::JsonSchema(s) => schema::json_schema(s),
            Self::Regex(p) => {
                let mut b = Builder::new("regex");
                let seq = regex_seq(&mut b, p, "regex", ByteSet::EMPTY)?;
                let root = b.rule(vec![seq])?;
                b.build(root)
            }
            Self::Grammar(src) => crate::gbnf::gbnf(src),
            Self::Tags(spec) => crate::tags::tags(spec),
            Self::Choice(options) => {
                if options.is_empty() {
                    return Err(GrammarError::Invalid {
                        at: "choice".into(),
                        reason: "at least one choice is needed".into(),
                    });
                }
                let mut b = Builder::new("choice");
                let root = b.choice(options.iter().map(|o| o.as_bytes().to_vec()).collect())?;
                b.build(root)
            }
        }
    }

    /// A key that is equal for equal constraints.
    fn key(&self) -> String {
        match self {
            Self::JsonObject => "json_object".into(),
            Self::JsonSchema(s) => format!("json_schema\0{}", s.to_text()),
            Self::Regex(p) => format!("regex\0{p}"),
            Self::Choice(o) => format!("choice\0{}", o.join("\0")),
            Self::Grammar(g) => format!("grammar\0{g}"),
            Self::Tags(spec) => spec.key(),
        }
    }
}

/// Compiled grammars by constraint, least recently used dropped first.
#[derive(Debug)]
pub struct GrammarCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    map: HashMap<String, (Arc<Grammar>, u64)>,
    tick: u64,
}

impl GrammarCache {
    /// A cache of at most `capacity` grammars (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Mutex::new(CacheInner::default()) }
    }

    /// The compiled grammar of `c`, compiled now unless cached.
    pub fn get(&self, c: &Constraint) -> Result<Arc<Grammar>, GrammarError> {
        let key = c.key();
        if let Ok(mut inner) = self.inner.lock() {
            inner.tick += 1;
            let tick = inner.tick;
            if let Some((g, used)) = inner.map.get_mut(&key) {
                *used = tick;
                return Ok(g.clone());
            }
        }
        // Compiled outside the lock: a large schema does not hold up other requests.
        let g = Arc::new(c.compile()?);
        if let Ok(mut inner) = self.inner.lock() {
            if inner.map.len() >= self.capacity
                && let Some(oldest) =
                    inner.map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
            {
                inner.map.remove(&oldest);
            }
            let tick = inner.tick;
            inner.map.insert(key, (g.clone(), tick));
        }
        Ok(g)
    }

    /// How many grammars are cached.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.map.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
