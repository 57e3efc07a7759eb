//! Random regular expressions for differential tests: patterns the `regex` crate and lorad's
//! grammar both take, built from a small tree so that a sampler can draw texts each probably
//! matches (random texts alone almost never match a random pattern, and agreement only on
//! refusals would prove little).

use rand::Rng;

/// Characters of the patterns' literals and of the texts: ASCII, two-byte, three-byte (CJK)
/// and four-byte (emoji) UTF-8, and characters that case folding pairs.
pub(crate) const ALPHABET: [char; 12] =
    ['a', 'b', 'K', 'k', '1', '-', ' ', 'é', 'É', 'ω', '中', '🚀'];

/// The regex crate's judge of whole-text matches of `pattern` (regex-crate syntax).
pub(crate) fn full_match_oracle(pattern: &str) -> regex::Regex {
    regex::Regex::new(&format!(r"\A(?:{pattern})\z"))
        .unwrap_or_else(|e| panic!("the regex crate refuses {pattern:?}: {e}"))
}

/// A pattern's tree.
#[derive(Debug)]
pub(crate) enum Re {
    /// One literal character.
    Lit(char),
    /// `.`
    Any,
    /// `\d`, `\w` or `\s` (0, 1, 2), upper-cased (negated) when the flag is set.
    Perl(u8, bool),
    /// `[...]` of ranges, negated when the flag is set.
    Class(bool, Vec<(char, char)>),
    /// A non-capturing group, case-insensitive when the flag is set.
    Group(Box<Re>, bool),
    /// Concatenation.
    Cat(Vec<Re>),
    /// Alternation (rendered inside a group where it would bind wrongly).
    Alt(Vec<Re>),
    /// `{min,max}` (`max` unbounded when `None`), lazy when the flag is set.
    Rep(Box<Re>, u32, Option<u32>, bool),
}

/// A random tree at most `depth` deep; with `plain`, only what GBNF can say too (no Perl
/// classes, no case folding).
pub(crate) fn random_re(rng: &mut impl Rng, depth: u32, plain: bool) -> Re {
    let pick = |rng: &mut dyn rand::RngCore| ALPHABET[rng.random_range(0..ALPHABET.len())];
    if depth == 0 || rng.random_bool(0.35) {
        return match rng.random_range(0..10) {
            0 => Re::Any,
            1 if !plain => Re::Perl(rng.random_range(0..3), rng.random_bool(0.3)),
            2 | 3 => {
                let items = (0..rng.random_range(1..4))
                    .map(|_| {
                        let (x, y) = (pick(rng), pick(rng));
                        if rng.random_bool(0.5) { (x, x) } else { (x.min(y), x.max(y)) }
                    })
                    .collect();
                Re::Class(rng.random_bool(0.3), items)
            }
            _ => Re::Lit(pick(rng)),
        };
    }
    match rng.random_range(0..5) {
        0 | 1 => {
            Re::Cat((0..rng.random_range(2..4)).map(|_| random_re(rng, depth - 1, plain)).collect())
        }
        2 => {
            Re::Alt((0..rng.random_range(2..4)).map(|_| random_re(rng, depth - 1, plain)).collect())
        }
        3 => Re::Group(Box::new(random_re(rng, depth - 1, plain)), !plain && rng.random_bool(0.3)),
        _ => {
            let (min, max) = match rng.random_range(0..5) {
                0 => (0, None),
                1 => (1, None),
                2 => (0, Some(1)),
                _ => {
                    let lo = rng.random_range(0..3);
                    (lo, Some(lo + rng.random_range(0..3)))
                }
            };
            Re::Rep(Box::new(random_re(rng, depth - 1, plain)), min, max, rng.random_bool(0.2))
        }
    }
}

fn escaped(c: char) -> String {
    if c.is_ascii_punctuation() || c == ' ' { format!("\\{c}") } else { c.to_string() }
}

/// `*`, `+`, `?` or `{n}`, `{n,}`, `{n,m}`: the same in both syntaxes.
fn quantifier(min: u32, max: Option<u32>) -> String {
    match (min, max) {
        (0, None) => "*".to_string(),
        (1, None) => "+".to_string(),
        (0, Some(1)) => "?".to_string(),
        (n, None) => format!("{{{n},}}"),
        (n, Some(m)) if n == m => format!("{{{n}}}"),
        (n, Some(m)) => format!("{{{n},{m}}}"),
    }
}

/// `[...]` of `items`, each bound written by `esc`.
fn class(neg: bool, items: &[(char, char)], esc: impl Fn(char) -> String) -> String {
    let body: String = items
        .iter()
        .map(|&(lo, hi)| match lo == hi {
            true => esc(lo),
            false => format!("{}-{}", esc(lo), esc(hi)),
        })
        .collect();
    format!("[{}{body}]", if neg { "^" } else { "" })
}

impl Re {
    /// The pattern's text in the regex crate's syntax.
    pub(crate) fn render(&self) -> String {
        match self {
            Re::Lit(c) => escaped(*c),
            Re::Any => ".".into(),
            Re::Perl(k, neg) => {
                let c = ['d', 'w', 's'][usize::from(*k)];
                format!("\\{}", if *neg { c.to_ascii_uppercase() } else { c })
            }
            Re::Class(neg, items) => class(*neg, items, escaped),
            Re::Group(r, fold) => format!("(?{}:{})", if *fold { "i" } else { "" }, r.render()),
            Re::Cat(items) => items.iter().map(Re::atom).collect(),
            Re::Alt(alts) => alts.iter().map(Re::render).collect::<Vec<_>>().join("|"),
            Re::Rep(r, min, max, lazy) => {
                format!("{}{}{}", r.atom(), quantifier(*min, *max), if *lazy { "?" } else { "" })
            }
        }
    }

    /// The same language in GBNF: an expression, with some groups hoisted into rules of
    /// their own (appended to `rules` as `name ::= body` lines). Trees with Perl classes or
    /// case folding have no GBNF form: see [`random_re`]'s `plain`.
    pub(crate) fn gbnf(&self, rng: &mut impl Rng, rules: &mut Vec<String>) -> String {
        let lit = |c: char| match c {
            '"' | '\\' => format!("\\{c}"),
            c => c.to_string(),
        };
        let in_class = |c: char| match c {
            ']' | '\\' | '-' | '^' => format!("\\{c}"),
            c => c.to_string(),
        };
        match self {
            Re::Lit(c) => format!("\"{}\"", lit(*c)),
            Re::Any => ".".into(),
            Re::Perl(..) => unreachable!("Perl classes are not generated with `plain`"),
            Re::Class(neg, items) => class(*neg, items, in_class),
            Re::Group(r, _) => {
                let body = r.gbnf(rng, rules);
                if rng.random_bool(0.4) {
                    let name = format!("r{}", rules.len());
                    rules.push(format!("{name} ::= {body}"));
                    name
                } else {
                    format!("( {body} )")
                }
            }
            Re::Cat(items) => items
                .iter()
                .map(|r| match r {
                    Re::Alt(_) => format!("( {} )", r.gbnf(rng, rules)),
                    _ => r.gbnf(rng, rules),
                })
                .collect::<Vec<_>>()
                .join(" "),
            Re::Alt(alts) => {
                alts.iter().map(|r| r.gbnf(rng, rules)).collect::<Vec<_>>().join(" | ")
            }
            Re::Rep(r, min, max, _) => {
                format!("( {} ){}", r.gbnf(rng, rules), quantifier(*min, *max))
            }
        }
    }

    /// The rendering, grouped when it is more than one atom.
    fn atom(&self) -> String {
        match self {
            Re::Lit(_) | Re::Any | Re::Perl(..) | Re::Class(..) | Re::Group(..) => self.render(),
            _ => format!("(?:{})", self.render()),
        }
    }

    /// A text this pattern probably matches (case folding and negated classes are drawn at
    /// random, so the regex crate decides).
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> String {
        let draw = |rng: &mut dyn rand::RngCore, ok: &dyn Fn(char) -> bool| -> String {
            (0..16)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                .find(|&c| ok(c))
                .map(String::from)
                .unwrap_or_default()
        };
        match self {
            Re::Lit(c) => c.to_string(),
            Re::Any => draw(rng, &|_| true),
            Re::Perl(k, neg) => draw(rng, &|c| {
                let m = match k {
                    0 => c.is_ascii_digit(),
                    1 => c.is_alphanumeric() || c == '_',
                    _ => c.is_whitespace(),
                };
                m != *neg
            }),
            Re::Class(neg, items) => {
                draw(rng, &|c| items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg)
            }
            Re::Group(r, _) => r.sample(rng),
            Re::Cat(items) => items.iter().map(|r| r.sample(rng)).collect(),
            Re::Alt(alts) => alts[rng.random_range(0..alts.len())].sample(rng),
            Re::Rep(r, min, max, _) => {
                let n = rng.random_range(*min..=max.unwrap_or(min + 2));
                (0..n).map(|_| r.sample(rng)).collect()
            }
        }
    }
}
