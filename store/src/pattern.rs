//! A small regular-expression matcher for PEFT's module patterns.
//!
//! PEFT matches `target_modules` (when a string), `exclude_modules` (when a string) and the keys
//! of `rank_pattern` / `alpha_pattern` as Python `re` patterns against module paths such as
//! `model.layers.3.self_attn.q_proj`. Real adapters use simple patterns (`.*\.(q_proj|v_proj)`,
//! `model.layers.1[0-5].mlp.down_proj`), so rather than pull in a regex crate this implements the
//! subset they need: literals, `.`, escapes (`\.`, `\d`, `\w`, `\s` and their negations, `\A`,
//! `\Z`), classes `[a-z_]` / `[^...]`, groups `(...)`, `(?:...)`, `(?P<name>...)`, alternation,
//! the quantifiers `* + ? {n} {n,} {n,m}` (lazy forms too: only whether it matches matters) and
//! the anchors `^` / `$`. Anything else (look-around, back-references, flags) is rejected, so an
//! adapter is never matched by a pattern lorad misunderstood.
//!
//! Matching works on *sets of positions* (for each node: "from these start offsets, which end
//! offsets are reachable?"), which is polynomial in the input length: no pattern can make it
//! backtrack exponentially. Character classes are ASCII-only for `\d`/`\w`/`\s`; module paths are
//! ASCII.

/// Quantifier bounds above this are refused (Python allows more, nobody needs them here).
const MAX_REPEAT: u32 = 1000;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class { negated: bool, items: Vec<ClassItem> },
    Start,
    End,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat { node: Box<Node>, min: u32, max: Option<u32> },
}

#[derive(Debug, Clone, Copy)]
enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

impl ClassItem {
    fn matches(self, c: char) -> bool {
        match self {
            ClassItem::Range(lo, hi) => lo <= c && c <= hi,
            ClassItem::Digit(neg) => c.is_ascii_digit() != neg,
            ClassItem::Word(neg) => (c.is_ascii_alphanumeric() || c == '_') != neg,
            ClassItem::Space(neg) => c.is_ascii_whitespace() != neg,
        }
    }
}

impl Pattern {
    /// Compiles `src`; the error says what is unsupported or malformed.
    pub(crate) fn parse(src: &str) -> Result<Self, String> {
        let mut p = Parser { chars: src.chars().collect(), pos: 0 };
        let node = p.alternation()?;
        if p.pos < p.chars.len() {
            // Only an unmatched ')' stops the top-level alternation early.
            return Err(format!("unbalanced ')' at offset {}", p.pos));
        }
        Ok(Pattern { node })
    }

    /// PEFT's `rank_pattern`/`alpha_pattern` key semantics: `re.match(rf"(.*\.)?({key})$", path)`,
    /// i.e. the key matches the whole path or a dot-separated suffix of it.
    pub(crate) fn parse_suffix_key(key: &str) -> Result<Self, String> {
        Pattern::parse(&format!("(.*\\.)?({key})"))
    }

    /// Python's `re.fullmatch(pattern, s) is not None`.
    pub(crate) fn full_match(&self, s: &str) -> bool {
        let input: Vec<char> = s.chars().collect();
        let mut starts = vec![false; input.len() + 1];
        starts[0] = true;
        eval(&self.node, &input, &starts)[input.len()]
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alternation(&mut self) -> Result<Node, String> {
        let mut alts = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.concat()?);
        }
        Ok(if alts.len() == 1 { alts.remove(0) } else { Node::Alt(alts) })
    }

    fn concat(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(Node::Concat(items))
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let (min, max) = match self.peek() {
            Some('*') => {
                self.pos += 1;
                (0, None)
            }
            Some('+') => {
                self.pos += 1;
                (1, None)
            }
            Some('?') => {
                self.pos += 1;
                (0, Some(1))
            }
            Some('{') => match self.braces() {
                Some(bounds) => bounds,
                // Python reads a '{' that does not form a quantifier as a literal.
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        if let Some(max) = max
            && max < min
        {
            return Err(format!("quantifier {{{min},{max}}} has max < min"));
        }
        if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
            return Err(format!("quantifier bound above {MAX_REPEAT}"));
        }
        // A trailing '?' makes it lazy, which does not change *whether* a full match exists.
        if self.peek() == Some('?') {
            self.pos += 1;
        }
        if matches!(self.peek(), Some('*' | '+' | '?')) {
            return Err(format!("multiple repeat at offset {}", self.pos));
        }
        Ok(Node::Repeat { node: Box::new(atom), min, max })
    }

    /// Parses `{n}`, `{n,}`, `{,m}` or `{n,m}` at the cursor; `None` (cursor untouched) otherwise.
    fn braces(&mut self) -> Option<(u32, Option<u32>)> {
        let rest: String = self.chars[self.pos..].iter().collect();
        let close = rest.find('}')?;
        let body = &rest[1..close];
        let num = |s: &str| -> Option<Option<u32>> {
            if s.is_empty() {
                Some(None)
            } else if s.bytes().all(|b| b.is_ascii_digit()) {
                // Saturate: an absurd bound is then refused by the MAX_REPEAT check.
                Some(Some(s.parse().unwrap_or(u32::MAX)))
            } else {
                None
            }
        };
        let bounds = match body.split_once(',') {
            None => {
                let n = num(body)??;
                (n, Some(n))
            }
            Some((lo, hi)) => (num(lo)?.unwrap_or(0), num(hi)?),
        };
        self.pos += rest[..=close].chars().count();
        Some(bounds)
    }

    fn atom(&mut self) -> Result<Node, String> {
        let at = self.pos;
        let Some(c) = self.peek() else { return Err("unexpected end of pattern".into()) };
        self.pos += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '*' | '+' | '?' => return Err(format!("nothing to repeat at offset {at}")),
            '(' => {
                if self.peek() == Some('?') {
                    self.pos += 1;
                    match self.peek() {
                        Some(':') => self.pos += 1,
                        Some('P') if self.chars.get(self.pos + 1) == Some(&'<') => {
                            let rest = &self.chars[self.pos..];
                            let Some(end) = rest.iter().position(|&c| c == '>') else {
                                return Err(format!("unterminated group name at offset {at}"));
                            };
                            self.pos += end + 1;
                        }
                        _ => {
                            return Err(format!(
                                "group extension `(?` at offset {at} (look-around, flags, ...) is not supported"
                            ));
                        }
                    }
                }
                let inner = self.alternation()?;
                if self.peek() != Some(')') {
                    return Err(format!("missing ')' for group opened at offset {at}"));
                }
                self.pos += 1;
                inner
            }
            '[' => self.class()?,
            '\\' => match self.escape()? {
                Escape::Char(c) => Node::Char(c),
                Escape::Class(item) => Node::Class { negated: false, items: vec![item] },
                Escape::Start => Node::Start,
                Escape::End => Node::End,
            },
            c => Node::Char(c),
        })
    }

    fn escape(&mut self) -> Result<Escape, String> {
        let Some(c) = self.peek() else { return Err("pattern ends with a lone backslash".into()) };
        self.pos += 1;
        Ok(match c {
            'd' => Escape::Class(ClassItem::Digit(false)),
            'D' => Escape::Class(ClassItem::Digit(true)),
            'w' => Escape::Class(ClassItem::Word(false)),
            'W' => Escape::Class(ClassItem::Word(true)),
            's' => Escape::Class(ClassItem::Space(false)),
            'S' => Escape::Class(ClassItem::Space(true)),
            'A' => Escape::Start,
            'Z' => Escape::End,
            'n' => Escape::Char('\n'),
            't' => Escape::Char('\t'),
            c if c.is_ascii_punctuation() || c == ' ' => Escape::Char(c),
            c => return Err(format!("escape `\\{c}` is not supported")),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let open = self.pos - 1;
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(format!("unterminated character class at offset {open}"));
            };
            self.pos += 1;
            // A ']' right after '[' or '[^' is a literal, as in Python.
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                match self.escape()? {
                    Escape::Char(c) => c,
                    Escape::Class(item) => {
                        items.push(item);
                        continue;
                    }
                    Escape::Start | Escape::End => {
                        return Err("anchor escape inside a character class".into());
                    }
                }
            } else {
                c
            };
            // `a-z` is a range unless the '-' is last in the class.
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                self.pos += 1;
                let Some(mut hi) = self.peek() else { continue };
                self.pos += 1;
                if hi == '\\' {
                    match self.escape()? {
                        Escape::Char(c) => hi = c,
                        _ => return Err("class escape used as a range bound".into()),
                    }
                }
                if hi < lo {
                    return Err(format!("bad character range {lo}-{hi}"));
                }
                items.push(ClassItem::Range(lo, hi));
            } else {
                items.push(ClassItem::Range(lo, lo));
            }
        }
        Ok(Node::Class { negated, items })
    }
}

enum Escape {
    Char(char),
    Class(ClassItem),
    Start,
    End,
}

/// From the set of start offsets `starts`, the set of offsets where `node` can end.
fn eval(node: &Node, input: &[char], starts: &[bool]) -> Vec<bool> {
    let n = input.len();
    let step = |pred: &dyn Fn(char) -> bool| {
        let mut out = vec![false; n + 1];
        for (p, &on) in starts.iter().enumerate().take(n) {
            if on && pred(input[p]) {
                out[p + 1] = true;
            }
        }
        out
    };
    match node {
        Node::Char(c) => step(&|x| x == *c),
        Node::Any => step(&|x| x != '\n'),
        Node::Class { negated, items } => {
            step(&|x| items.iter().any(|item| item.matches(x)) != *negated)
        }
        Node::Start => {
            let mut out = vec![false; n + 1];
            out[0] = starts[0];
            out
        }
        Node::End => {
            let mut out = vec![false; n + 1];
            out[n] = starts[n];
            out
        }
        Node::Concat(items) => {
            let mut cur = starts.to_vec();
            for item in items {
                if !cur.contains(&true) {
                    break;
                }
                cur = eval(item, input, &cur);
            }
            cur
        }
        Node::Alt(alts) => {
            let mut out = vec![false; n + 1];
            for alt in alts {
                union(&mut out, &eval(alt, input, starts));
            }
            out
        }
        Node::Repeat { node, min, max } => {
            let mut result = vec![false; n + 1];
            if *min == 0 {
                union(&mut result, starts);
            }
            let mut cur = starts.to_vec();
            let mut i = 0u32;
            while max.is_none_or(|m| i < m) {
                i += 1;
                cur = eval(node, input, &cur);
                if !cur.contains(&true) {
                    break;
                }
                if i >= *min {
                    // Once `result` holds every count in [min, i), a `cur` adding nothing new
                    // means no later count can either (eval distributes over unions): stop.
                    if (i > *min || *min == 0) && subset(&cur, &result) {
                        break;
                    }
                    union(&mut result, &cur);
                }
            }
            result
        }
    }
}

fn union(into: &mut [bool], other: &[bool]) {
    for (a, &b) in into.iter_mut().zip(other) {
        *a |= b;
    }
}

fn subset(a: &[bool], b: &[bool]) -> bool {
    a.iter().zip(b).all(|(&x, &y)| !x || y)
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    fn m(p: &str, s: &str) -> bool {
        Pattern::parse(p).unwrap_or_else(|e| panic!("{p}: {e}")).full_match(s)
    }

    #[test]
    fn literals_and_dots() {
        assert!(m("q_proj", "q_proj"));
        assert!(!m("q_proj", "xq_proj"));
        assert!(m(r"model\.layers\.0\.self_attn\.q_proj", "model.layers.0.self_attn.q_proj"));
        assert!(!m(r"a\.b", "axb"));
        assert!(m("a.b", "axb"));
    }

    #[test]
    fn common_target_module_forms() {
        let p = r".*\.(q_proj|v_proj)";
        assert!(m(p, "model.layers.3.self_attn.q_proj"));
        assert!(m(p, "model.layers.3.self_attn.v_proj"));
        assert!(!m(p, "model.layers.3.self_attn.k_proj"));
        assert!(m("q_proj|v_proj", "v_proj"));
        assert!(!m("q_proj|v_proj", "model.layers.0.self_attn.v_proj"));
        let p = r"model\.layers\.(1[0-5]|[0-9])\.mlp\.(gate|up|down)_proj";
        assert!(m(p, "model.layers.12.mlp.up_proj"));
        assert!(m(p, "model.layers.7.mlp.down_proj"));
        assert!(!m(p, "model.layers.16.mlp.up_proj"));
        assert!(m(r"^.*layers\.\d+\.self_attn\.[qkvo]_proj$", "model.layers.29.self_attn.o_proj"));
        assert!(m(r"(?:.*\.)?(?P<m>[^.]+_proj)", "a.b.gate_proj"));
    }

    #[test]
    fn suffix_keys_follow_peft_get_pattern_key() {
        let k = Pattern::parse_suffix_key("q_proj").unwrap();
        assert!(k.full_match("model.layers.0.self_attn.q_proj"));
        assert!(k.full_match("q_proj"));
        // Suffix must start at a dot boundary.
        assert!(!k.full_match("model.layers.0.self_attn.xq_proj"));
        let k = Pattern::parse_suffix_key("layers.1.self_attn.q_proj").unwrap();
        assert!(k.full_match("model.layers.1.self_attn.q_proj"));
        assert!(!k.full_match("model.layers.11.self_attn.q_proj"));
    }

    #[test]
    fn quantifiers() {
        assert!(m("a{2,3}", "aa"));
        assert!(m("a{2,3}", "aaa"));
        assert!(!m("a{2,3}", "aaaa"));
        assert!(m("a{2}b+c?", "aabbb"));
        assert!(m("x{,2}", ""));
        assert!(m("a{x", "a{x"), "a brace that is no quantifier is literal");
        assert!(m("(a*)*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("(a*)*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac"));
        assert!(m(".*?_proj", "q_proj"));
    }

    #[test]
    fn classes() {
        assert!(m("[^.]+", "abc"));
        assert!(!m("[^.]+", "a.c"));
        assert!(m("[]a]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m(r"[\d_]+", "1_2"));
    }

    /// Random patterns of the supported subset, rendered in Python's syntax for [`Pattern`] and
    /// in the `regex` crate's for an independent matcher: both must agree on every input.
    #[test]
    fn agrees_with_the_regex_crate_on_random_patterns() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261206);
        let mut checked = 0usize;
        for case in 0..4000 {
            let g = oracle::random_pattern(&mut rng, 4);
            let (py, rs) = (g.python(), g.rust());
            let ours = Pattern::parse(&py).unwrap_or_else(|e| panic!("case {case}: {py}: {e}"));
            let re = regex::Regex::new(&format!(r"\A(?:{rs})\z"))
                .unwrap_or_else(|e| panic!("case {case}: {rs}: {e}"));
            let mut inputs: Vec<String> = (0..12).map(|_| g.sample(&mut rng)).collect();
            inputs.extend((0..12).map(|_| {
                let n = rng.random_range(0..7);
                (0..n)
                    .map(|_| oracle::ALPHABET[rng.random_range(0..oracle::ALPHABET.len())])
                    .collect()
            }));
            for s in &inputs {
                assert_eq!(
                    ours.full_match(s),
                    re.is_match(s),
                    "case {case}: pattern {py:?} (regex {rs:?}) on {s:?}"
                );
                checked += usize::from(re.is_match(s));
            }
        }
        // The sampled inputs must make the positive side of the comparison count too.
        assert!(checked > 20000, "only {checked} matching inputs: the generator is too strict");
    }

    #[test]
    fn unsupported_is_rejected() {
        for p in ["(?=a)", r"(a)\1", "(?i)a", "a**", "*a", "(a", "a)", "[a", r"\b", "a{3,2}"] {
            assert!(Pattern::parse(p).is_err(), "{p} should be rejected");
        }
    }

    /// A generator of patterns inside [`Pattern`]'s subset, and of strings they likely match.
    mod oracle {
        use rand::Rng;

        /// The characters inputs are made of: letters, a digit, the separators of module paths.
        pub(super) const ALPHABET: [char; 6] = ['a', 'b', 'q', '1', '.', '_'];

        pub(super) enum G {
            Lit(char),
            Any,
            /// `\d`, `\w`, `\s` (index 0-2), negated when the flag is set.
            Esc(u8, bool),
            Class(bool, Vec<(char, char)>),
            Start,
            End,
            Group(Box<G>, u8),
            Cat(Vec<G>),
            Alt(Vec<G>),
            Rep(Box<G>, u32, Option<u32>, bool),
        }

        pub(super) fn random_pattern(rng: &mut impl Rng, depth: u32) -> G {
            let leaf = depth == 0 || rng.random_bool(0.35);
            if leaf {
                return match rng.random_range(0..12) {
                    0 => G::Any,
                    1 => G::Esc(rng.random_range(0..3), rng.random_bool(0.3)),
                    2 => {
                        let n = rng.random_range(1..4);
                        let items = (0..n)
                            .map(|_| match rng.random_range(0..3) {
                                0 => ('a', 'q'),
                                1 => ('0', '9'),
                                _ => {
                                    let c = ALPHABET[rng.random_range(0..ALPHABET.len())];
                                    (c, c)
                                }
                            })
                            .collect();
                        G::Class(rng.random_bool(0.3), items)
                    }
                    3 if rng.random_bool(0.3) => G::Start,
                    4 if rng.random_bool(0.3) => G::End,
                    _ => G::Lit(ALPHABET[rng.random_range(0..ALPHABET.len())]),
                };
            }
            match rng.random_range(0..4) {
                0 => G::Cat(
                    (0..rng.random_range(1..4)).map(|_| random_pattern(rng, depth - 1)).collect(),
                ),
                1 => G::Alt(
                    (0..rng.random_range(2..4)).map(|_| random_pattern(rng, depth - 1)).collect(),
                ),
                2 => G::Group(Box::new(random_pattern(rng, depth - 1)), rng.random_range(0..3)),
                _ => {
                    let (min, max) = match rng.random_range(0..6) {
                        0 => (0, None),
                        1 => (1, None),
                        2 => (0, Some(1)),
                        3 => (rng.random_range(0..3), None),
                        _ => {
                            let lo = rng.random_range(0..3);
                            (lo, Some(lo + rng.random_range(0..3)))
                        }
                    };
                    // Quantify a group, so no quantifier follows another or an anchor.
                    let inner = G::Group(Box::new(random_pattern(rng, depth - 1)), 1);
                    G::Rep(Box::new(inner), min, max, rng.random_bool(0.2))
                }
            }
        }

        fn lit(c: char) -> String {
            if c == '.' { "\\.".into() } else { c.to_string() }
        }

        impl G {
            /// Python `re` syntax, as PEFT's configs write it.
            pub(super) fn python(&self) -> String {
                self.render(true)
            }

            /// The `regex` crate's syntax for the same language.
            pub(super) fn rust(&self) -> String {
                self.render(false)
            }

            fn render(&self, py: bool) -> String {
                match self {
                    G::Lit(c) => lit(*c),
                    G::Any => ".".into(),
                    G::Esc(k, neg) => {
                        let c = ['d', 'w', 's'][usize::from(*k)];
                        // The regex crate's classes are Unicode: the same on ASCII input.
                        format!("\\{}", if *neg { c.to_ascii_uppercase() } else { c })
                    }
                    G::Class(neg, items) => {
                        let body: String = items
                            .iter()
                            .map(|&(lo, hi)| {
                                let e =
                                    |c: char| if c == '.' { "\\.".into() } else { c.to_string() };
                                if lo == hi { e(lo) } else { format!("{}-{}", e(lo), e(hi)) }
                            })
                            .collect();
                        format!("[{}{body}]", if *neg { "^" } else { "" })
                    }
                    G::Start => if py { "^" } else { "\\A" }.into(),
                    G::End => if py { "$" } else { "\\z" }.into(),
                    G::Group(g, kind) => {
                        let open = match kind {
                            0 => "(",
                            1 => "(?:",
                            _ => "(?P<n>",
                        };
                        // Named groups must be unique in the regex crate: it gets a plain one.
                        let open = if !py && *kind == 2 { "(" } else { open };
                        format!("{open}{})", g.render(py))
                    }
                    G::Cat(items) => items
                        .iter()
                        .map(|g| match g {
                            G::Alt(_) => format!("(?:{})", g.render(py)),
                            _ => g.render(py),
                        })
                        .collect(),
                    G::Alt(alts) => alts.iter().map(|g| g.render(py)).collect::<Vec<_>>().join("|"),
                    G::Rep(g, min, max, lazy) => {
                        let q = match (min, max) {
                            (0, None) => "*".to_string(),
                            (1, None) => "+".to_string(),
                            (0, Some(1)) => "?".to_string(),
                            (n, None) => format!("{{{n},}}"),
                            (0, Some(m)) if py => format!("{{,{m}}}"),
                            (n, Some(m)) if n == m => format!("{{{n}}}"),
                            (n, Some(m)) => format!("{{{n},{m}}}"),
                        };
                        format!("{}{q}{}", g.render(py), if *lazy { "?" } else { "" })
                    }
                }
            }

            /// A string this pattern probably matches (anchors are ignored while sampling, so
            /// the oracle decides).
            pub(super) fn sample(&self, rng: &mut impl Rng) -> String {
                let pick = |rng: &mut dyn rand::RngCore, ok: &dyn Fn(char) -> bool| -> String {
                    for _ in 0..16 {
                        let c = ALPHABET[rng.random_range(0..ALPHABET.len())];
                        if ok(c) {
                            return c.to_string();
                        }
                    }
                    String::new()
                };
                match self {
                    G::Lit(c) => c.to_string(),
                    G::Any => pick(rng, &|_| true),
                    G::Esc(k, neg) => pick(rng, &|c| {
                        let m = match k {
                            0 => c.is_ascii_digit(),
                            1 => c.is_ascii_alphanumeric() || c == '_',
                            _ => c.is_ascii_whitespace(),
                        };
                        m != *neg
                    }),
                    G::Class(neg, items) => {
                        pick(rng, &|c| items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg)
                    }
                    G::Start | G::End => String::new(),
                    G::Group(g, _) => g.sample(rng),
                    G::Cat(items) => items.iter().map(|g| g.sample(rng)).collect(),
                    G::Alt(alts) => alts[rng.random_range(0..alts.len())].sample(rng),
                    G::Rep(g, min, max, _) => {
                        let hi = max.unwrap_or(min + 2);
                        let n = rng.random_range(*min..=hi);
                        (0..n).map(|_| g.sample(rng)).collect()
                    }
                }
            }
        }
    }
}
