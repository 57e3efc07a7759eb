//! Integers within bounds (JSON Schema's `minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum` on `"type": "integer"`), as grammar alternatives of canonical decimal
//! text: no leading zeros, a minus sign only before a non-zero magnitude.
//!
//! A range of magnitudes splits by digit count; within one count, `a..=b` becomes the
//! classic prefix decomposition (`123..=456`: `12[3-9]`, `1[3-9][0-9]`, `[23][0-9][0-9]`,
//! `4[0-4][0-9]`, `45[0-6]`), a handful of alternatives per digit.

use crate::ByteSet;
use crate::builder::{Builder, Sym};

fn digits(lo: u8, hi: u8) -> Sym {
    Sym::Bytes(ByteSet::range(lo, hi))
}

/// Decimal strings of equal length from `a` to `b` (`a <= b`, both ASCII digits).
fn same_len(a: &[u8], b: &[u8]) -> Vec<Vec<Sym>> {
    if a.is_empty() {
        return vec![Vec::new()];
    }
    if a.iter().all(|&d| d == b'0') && b.iter().all(|&d| d == b'9') {
        return vec![vec![digits(b'0', b'9'); a.len()]];
    }
    let (x, y) = (a[0], b[0]);
    let prefixed = |d: Sym, tails: Vec<Vec<Sym>>| {
        tails.into_iter().map(move |mut t| {
            t.insert(0, d);
            t
        })
    };
    if x == y {
        return prefixed(digits(x, x), same_len(&a[1..], &b[1..])).collect();
    }
    let rest = a.len() - 1;
    let mut alts: Vec<Vec<Sym>> =
        prefixed(digits(x, x), same_len(&a[1..], &vec![b'9'; rest])).collect();
    if y > x + 1 {
        let mut mid = vec![digits(x + 1, y - 1)];
        mid.extend(std::iter::repeat_n(digits(b'0', b'9'), rest));
        alts.push(mid);
    }
    alts.extend(prefixed(digits(y, y), same_len(&vec![b'0'; rest], &b[1..])));
    alts
}

/// Magnitudes `lo..=hi` (`hi` `None`: unbounded) in canonical decimal.
fn magnitudes(
    b: &mut Builder,
    lo: u128,
    hi: Option<u128>,
) -> Result<Vec<Vec<Sym>>, crate::GrammarError> {
    let a = lo.to_string().into_bytes();
    let nines = |n: usize| vec![b'9'; n];
    match hi {
        Some(h) if h < lo => Ok(Vec::new()),
        Some(h) => {
            let bh = h.to_string().into_bytes();
            if a.len() == bh.len() {
                return Ok(same_len(&a, &bh));
            }
            let mut alts = same_len(&a, &nines(a.len()));
            for len in a.len() + 1..bh.len() {
                let mut s = vec![digits(b'1', b'9')];
                s.extend(std::iter::repeat_n(digits(b'0', b'9'), len - 1));
                alts.push(s);
            }
            let mut first = vec![b'0'; bh.len()];
            first[0] = b'1';
            alts.extend(same_len(&first, &bh));
            Ok(alts)
        }
        None => {
            let mut alts = same_len(&a, &nines(a.len()));
            // Any longer number: a non-zero digit, then at least as many digits as `lo` has.
            let mut longer = vec![digits(b'1', b'9')];
            longer.extend(b.repeat(&[digits(b'0', b'9')], a.len() as u32, None)?);
            alts.push(longer);
            Ok(alts)
        }
    }
}

/// Integers in `lo..=hi` (either side open), as grammar alternatives; empty when none is.
pub(crate) fn integer_range(
    b: &mut Builder,
    lo: Option<i128>,
    hi: Option<i128>,
) -> Result<Vec<Vec<Sym>>, crate::GrammarError> {
    let mut alts = Vec::new();
    // Zero and up.
    if hi.is_none_or(|h| h >= 0) {
        let from = lo.map_or(0, |l| l.max(0)) as u128;
        alts.extend(magnitudes(b, from, hi.map(|h| h as u128))?);
    }
    // Below zero: a minus sign, then magnitudes from |min(hi, -1)| to |lo|.
    if lo.is_none_or(|l| l < 0) {
        let from = hi.map_or(1, |h| h.min(-1).unsigned_abs());
        let to = lo.map(i128::unsigned_abs);
        for mut alt in magnitudes(b, from, to)? {
            alt.insert(0, Sym::Bytes(ByteSet::byte(b'-')));
            alts.push(alt);
        }
    }
    Ok(alts)
}
