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

/// The UTF-8 byte sequences of `class` as grammar symbols, without the single bytes in
/// `exclude`.
///
/// The sequences are laid out as a trie keyed by byte (leading bytes with the same
/// continuations share a branch): expanding the class then yields one matcher stack per
/// distinct leading byte group (at most a few dozen) instead of one per sequence (hundreds
/// for `\p{L}`), which nested repetitions like `(?:\p{L}+)*` multiply past
/// [`crate::grammar::MAX_STACKS`].
pub(crate) fn unicode_class(
    b: &mut Builder,
    class: &ClassUnicode,
    exclude: ByteSet,
) -> Result<Vec<Sym>, GrammarError> {
    let mut seqs: Vec<Vec<(u8, u8)>> = Vec::new();
    for r in class.ranges() {
        for seq in Utf8Sequences::new(r.start(), r.end()) {
            seqs.push(seq.as_slice().iter().map(|r| (r.start, r.end)).collect());
        }
    }
    let mut alts = utf8_trie(b, &seqs, exclude)?;
    Ok(match alts.len() {
        0 => vec![Sym::Bytes(ByteSet::EMPTY)],
        1 => alts.remove(0),
        _ => vec![b.rule(alts)?],
    })
}

/// Alternatives matching exactly `seqs` (byte-range sequences of one UTF-8 position onwards:
/// prefix-free, none empty), single bytes in `exclude` left out.
fn utf8_trie<S: AsRef<[(u8, u8)]>>(
    b: &mut Builder,
    seqs: &[S],
    exclude: ByteSet,
) -> Result<Vec<Vec<Sym>>, GrammarError> {
    // Continuations of each leading byte, then leading bytes grouped by equal continuations.
    let mut by_byte: Vec<Vec<&[(u8, u8)]>> = vec![Vec::new(); 256];
    for seq in seqs {
        let Some((&(lo, hi), tail)) = seq.as_ref().split_first() else { continue };
        for byte in lo..=hi {
            if tail.is_empty() && exclude.contains(byte) {
                continue;
            }
            by_byte[byte as usize].push(tail);
        }
    }
    // (continuations, the leading bytes that have exactly them)
    type Group<'s> = (Vec<&'s [(u8, u8)]>, ByteSet);
    let mut groups: Vec<Group<'_>> = Vec::new();
    for (byte, mut tails) in by_byte.into_iter().enumerate() {
        if tails.is_empty() {
            continue;
        }
        tails.sort_unstable();
        tails.dedup();
        let byte = ByteSet::range(byte as u8, byte as u8);
        match groups.iter_mut().find(|g| g.0 == tails) {
            Some(g) => g.1 = g.1.union(byte),
            None => groups.push((tails, byte)),
        }
    }
    let mut alts = Vec::with_capacity(groups.len());
    for (tails, first) in groups {
        let mut alt = vec![Sym::Bytes(first)];
        match tails.as_slice() {
            [only] => alt.extend(only.iter().map(|&(lo, hi)| Sym::Bytes(ByteSet::range(lo, hi)))),
            _ => {
                let sub = utf8_trie(b, &tails, ByteSet::EMPTY)?;
                alt.push(b.rule(sub)?);
            }
        }
        alts.push(alt);
    }
    Ok(alts)
}
