//! Regular expressions to grammar symbols, through `regex-syntax`'s high-level IR: the
//! pattern's syntax (classes, case folding, Unicode) is the regex crate's, and every class
//! becomes the UTF-8 byte sequences of its ranges, so a token that ends inside a multi-byte
//! character is judged correctly. A pattern must match the whole answer; anchors are no-ops,
//! word boundaries are refused.

use regex_syntax::hir::{Class, ClassUnicode, Hir, HirKind, Look};
use regex_syntax::utf8::Utf8Sequences;

use crate::builder::{Builder, Sym};
use crate::{ByteSet, GrammarError};

/// Longest pattern accepted, in bytes.
const MAX_PATTERN: usize = 16 * 1024;

/// The symbols of `pattern` appended to a grammar under construction. Bytes in `exclude` are
/// removed from every terminal (inside a JSON string: the quote, the backslash and control
/// characters, which would need escaping).
pub(crate) fn regex_seq(
    b: &mut Builder,
    pattern: &str,
    at: &str,
    exclude: ByteSet,
) -> Result<Vec<Sym>, GrammarError> {
    let err = |reason: String| GrammarError::Regex { at: at.to_owned(), reason };
    if pattern.len() > MAX_PATTERN {
        return Err(err(format!("longer than {MAX_PATTERN} bytes")));
    }
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .map_err(|e| err(e.to_string().lines().last().unwrap_or_default().trim().to_owned()))?;
    Conv { b, at, exclude }.seq(&hir)
}

struct Conv<'a> {
    b: &'a mut Builder,
    at: &'a str,
    exclude: ByteSet,
}

impl Conv<'_> {
    fn seq(&mut self, hir: &Hir) -> Result<Vec<Sym>, GrammarError> {
        Ok(match hir.kind() {
            HirKind::Empty => Vec::new(),
            HirKind::Literal(lit) => {
                lit.0.iter().map(|&c| Sym::Bytes(ByteSet::byte(c).minus(self.exclude))).collect()
            }
            HirKind::Class(Class::Bytes(c)) => {
                let set = c
                    .ranges()
                    .iter()
                    .fold(ByteSet::EMPTY, |s, r| s.union(ByteSet::range(r.start(), r.end())));
                vec![Sym::Bytes(set.minus(self.exclude))]
            }
            HirKind::Class(Class::Unicode(c)) => unicode_class(self.b, c, self.exclude)?,
            HirKind::Look(look) => match look {
                Look::Start
                | Look::End
                | Look::StartLF
                | Look::EndLF
                | Look::StartCRLF
                | Look::EndCRLF => Vec::new(),
                other => {
                    return Err(GrammarError::Regex {
                        at: self.at.to_owned(),
                        reason: format!("{other:?} assertions cannot be enforced token by token"),
                    });
                }
            },
            HirKind::Repetition(rep) => {
                let sub = self.seq(&rep.sub)?;
                // One rule for the repeated part keeps the unrolled copies small.
                let unit = if sub.len() > 1 { vec![self.b.rule(vec![sub])?] } else { sub };
                self.b.repeat(&unit, rep.min, rep.max)?
            }
            HirKind::Capture(cap) => self.seq(&cap.sub)?,
            HirKind::Concat(parts) => {
                let mut out = Vec::new();
                for p in parts {
                    out.extend(self.seq(p)?);
                }
                out
            }
            HirKind::Alternation(alts) => {
                let alts = alts.iter().map(|a| self.seq(a)).collect::<Result<Vec<_>, _>>()?;
                vec![self.b.rule(alts)?]
            }
        })
    }
}

/// A Unicode class as grammar symbols: each range as its UTF-8 byte sequences, multi-byte
/// sequences grouped by their continuation ranges, so a class such as `[^"]` or `\w` becomes
/// a handful of alternatives, not one per code point range. Bytes in `exclude` are removed.
pub(crate) fn unicode_class(
    b: &mut Builder,
    class: &ClassUnicode,
    exclude: ByteSet,
) -> Result<Vec<Sym>, GrammarError> {
    let mut ascii = ByteSet::EMPTY;
    let mut groups: Vec<(Vec<(u8, u8)>, ByteSet)> = Vec::new();
    for r in class.ranges() {
        for seq in Utf8Sequences::new(r.start(), r.end()) {
            let ranges = seq.as_slice();
            let first = ByteSet::range(ranges[0].start, ranges[0].end);
            if ranges.len() == 1 {
                ascii = ascii.union(first);
                continue;
            }
            let tail: Vec<(u8, u8)> = ranges[1..].iter().map(|r| (r.start, r.end)).collect();
            match groups.iter_mut().find(|g| g.0 == tail) {
                Some(g) => g.1 = g.1.union(first),
                None => groups.push((tail, first)),
            }
        }
    }
    let mut alts = Vec::new();
    let ascii = ascii.minus(exclude);
    if !ascii.is_empty() {
        alts.push(vec![Sym::Bytes(ascii)]);
    }
    for (tail, first) in groups {
        let mut alt = vec![Sym::Bytes(first)];
        alt.extend(tail.iter().map(|&(lo, hi)| Sym::Bytes(ByteSet::range(lo, hi))));
        alts.push(alt);
    }
    Ok(match alts.len() {
        0 => vec![Sym::Bytes(ByteSet::EMPTY)],
        1 => alts.remove(0),
        _ => vec![b.rule(alts)?],
    })
}
