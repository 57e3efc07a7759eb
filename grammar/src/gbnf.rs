//! GBNF (llama.cpp's grammar format, which xgrammar and vLLM's `grammar` field take) to a
//! [`Grammar`]: `name ::= alternatives` rules starting from `root`; string literals,
//! character classes (`[a-z]`, `[^"\\]`) and `.` over Unicode characters; grouping;
//! `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`; `#` comments. A rule's alternatives may continue on
//! the next lines when those start with `|`, and a group may span lines.

use std::collections::HashMap;

use regex_syntax::hir::{ClassUnicode, ClassUnicodeRange};

use crate::builder::{Builder, RuleId, Sym};
use crate::regex::unicode_class;
use crate::{ByteSet, Grammar, GrammarError};

/// Longest grammar source accepted, in bytes.
const MAX_SOURCE: usize = 64 * 1024;
/// Deepest nesting of parenthesized groups (regex-syntax's own limit is 250).
const MAX_NESTING: usize = 256;

/// Compiles GBNF source.
pub(crate) fn gbnf(src: &str) -> Result<Grammar, GrammarError> {
    if src.len() > MAX_SOURCE {
        return Err(GrammarError::Invalid {
            at: "grammar".into(),
            reason: format!("longer than {MAX_SOURCE} bytes"),
        });
    }
    let mut p = Parser {
        s: src.chars().collect(),
        pos: 0,
        b: Builder::new("grammar"),
        rules: HashMap::new(),
        defined: Vec::new(),
        depth: 0,
    };
    p.grammar()?;
    let Some(&root) = p.rules.get("root") else {
        return Err(p.err("no `root` rule"));
    };
    for (name, id) in &p.rules {
        if !p.defined.contains(id) {
            return Err(p.err(&format!("rule `{name}` is used but never defined")));
        }
    }
    p.b.build(Sym::Rule(root))
}

struct Parser {
    s: Vec<char>,
    pos: usize,
    b: Builder,
    rules: HashMap<String, RuleId>,
    defined: Vec<RuleId>,
    /// Groups open at the current position: the parser recurses into each, so a request's
    /// grammar could otherwise nest deep enough to overflow the thread's stack.
    depth: usize,
}

impl Parser {
    fn err(&self, reason: &str) -> GrammarError {
        let line = self.s[..self.pos.min(self.s.len())].iter().filter(|&&c| c == '\n').count() + 1;
        GrammarError::Invalid { at: format!("grammar line {line}"), reason: reason.to_owned() }
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    /// Skips spaces, tabs and comments, and newlines too when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => self.pos += 1,
                '\r' | '\n' if newlines => self.pos += 1,
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            self.pos += 1;
        }
        (self.pos > start).then(|| self.s[start..self.pos].iter().collect())
    }

    fn rule_id(&mut self, name: &str) -> RuleId {
        if let Some(&id) = self.rules.get(name) {
            return id;
        }
        let id = self.b.reserve();
        self.rules.insert(name.to_owned(), id);
        id
    }

    fn grammar(&mut self) -> Result<(), GrammarError> {
        loop {
            self.space(true);
            if self.peek().is_none() {
                return Ok(());
            }
            let name = self.name().ok_or_else(|| self.err("expected a rule name"))?;
            self.space(false);
            if self.s.get(self.pos..self.pos + 3) != Some(&[':', ':', '=']) {
                return Err(self.err(&format!("expected `::=` after `{name}`")));
            }
            self.pos += 3;
            self.space(true);
            let id = self.rule_id(&name);
            if self.defined.contains(&id) {
                return Err(self.err(&format!("rule `{name}` is defined twice")));
            }
            let alts = self.alternates(false)?;
            self.b.define(id, alts)?;
            self.defined.push(id);
        }
    }

    /// Alternatives up to the end of the rule (or of the group, when `nested`).
    fn alternates(&mut self, nested: bool) -> Result<Vec<Vec<Sym>>, GrammarError> {
        let mut alts = vec![self.sequence(nested)?];
        loop {
            let save = self.pos;
            self.space(true);
            if self.peek() == Some('|') {
                self.pos += 1;
                self.space(true);
                alts.push(self.sequence(nested)?);
            } else {
                // Not a continuation: the newline ended the rule.
                self.pos = save;
                return Ok(alts);
            }
        }
    }

    fn sequence(&mut self, nested: bool) -> Result<Vec<Sym>, GrammarError> {
        let mut seq = Vec::new();
        loop {
            self.space(nested);
            match self.peek() {
                None | Some('|' | ')' | '\n' | '\r') => return Ok(seq),
                Some(_) => {
                    let item = self.item()?;
                    let item = self.postfix(item)?;
                    seq.extend(item);
                }
            }
        }
    }

    fn item(&mut self) -> Result<Vec<Sym>, GrammarError> {
        match self.peek() {
            Some('"') => {
                self.pos += 1;
                let mut out = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated string")),
                        Some('"') => {
                            self.pos += 1;
                            return Ok(Builder::literal(out.as_bytes()));
                        }
                        Some(_) => out.push(self.char_in_literal()?),
                    }
                }
            }
            Some('[') => {
                self.pos += 1;
                let negated = self.peek() == Some('^');
                if negated {
                    self.pos += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated character class")),
                        Some(']') => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => {
                            let lo = self.char_in_literal()?;
                            let hi = if self.peek() == Some('-')
                                && self.s.get(self.pos + 1) != Some(&']')
                            {
                                self.pos += 1;
                                self.char_in_literal()?
                            } else {
                                lo
                            };
                            if hi < lo {
                                return Err(self.err(&format!("range {lo:?}-{hi:?} is backwards")));
                            }
                            ranges.push(ClassUnicodeRange::new(lo, hi));
                        }
                    }
                }
                let mut class = ClassUnicode::new(ranges);
                if negated {
                    class.negate();
                }
                unicode_class(&mut self.b, &class, ByteSet::EMPTY)
            }
            Some('.') => {
                self.pos += 1;
                let class = ClassUnicode::new([ClassUnicodeRange::new('\0', char::MAX)]);
                unicode_class(&mut self.b, &class, ByteSet::EMPTY)
            }
            Some('(') => {
                if self.depth >= MAX_NESTING {
                    return Err(self.err(&format!("groups nested more than {MAX_NESTING} deep")));
                }
                self.pos += 1;
                self.space(true);
                self.depth += 1;
                let alts = self.alternates(true);
                self.depth -= 1;
                let alts = alts?;
                self.space(true);
                if self.peek() != Some(')') {
                    return Err(self.err("expected `)`"));
                }
                self.pos += 1;
                Ok(vec![self.b.rule(alts)?])
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                let name = self.name().unwrap_or_default();
                Ok(vec![Sym::Rule(self.rule_id(&name))])
            }
            Some(c) => Err(self.err(&format!("unexpected {c:?}"))),
            None => Err(self.err("unexpected end")),
        }
    }

    /// `*`, `+`, `?` or `{m,n}` after an item.
    fn postfix(&mut self, item: Vec<Sym>) -> Result<Vec<Sym>, GrammarError> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                self.pos += 1;
                let end = self.s[self.pos..].iter().position(|&c| c == '}').map(|i| self.pos + i);
                let Some(end) = end else { return Err(self.err("unterminated `{`")) };
                let body: String =
                    self.s[self.pos..end].iter().filter(|c| !c.is_whitespace()).collect();
                self.pos = end;
                let num = |t: &str| {
                    t.parse::<u32>().map_err(|_| self.err(&format!("bad repetition `{{{body}}}`")))
                };
                match body.split_once(',') {
                    None => (num(&body)?, Some(num(&body)?)),
                    Some((m, "")) => (num(m)?, None),
                    Some((m, n)) => (num(m)?, Some(num(n)?)),
                }
            }
            _ => return Ok(item),
        };
        self.pos += 1;
        let unit = if item.len() > 1 { vec![self.b.rule(vec![item])?] } else { item };
        self.b.repeat(&unit, min, max)
    }

    /// One character of a string or class, escapes decoded.
    fn char_in_literal(&mut self) -> Result<char, GrammarError> {
        let c = self.peek().ok_or_else(|| self.err("unexpected end"))?;
        self.pos += 1;
        if c != '\\' {
            return Ok(c);
        }
        let e = self.peek().ok_or_else(|| self.err("unexpected end after `\\`"))?;
        self.pos += 1;
        let hex = |p: &mut Self, n: usize| -> Result<char, GrammarError> {
            let digits: String = p.s.get(p.pos..p.pos + n).unwrap_or_default().iter().collect();
            p.pos += n;
            u32::from_str_radix(&digits, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| p.err(&format!("bad escape `{digits}`")))
        };
        Ok(match e {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'x' => hex(self, 2)?,
            'u' => hex(self, 4)?,
            'U' => hex(self, 8)?,
            other => other,
        })
    }
}
