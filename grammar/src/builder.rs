//! [`Builder`]: grammars are built in code, from schemas, patterns and choices, never parsed
//! from a grammar language. Rules are lists of alternatives; an alternative is a sequence of
//! [`Sym`]s; repetition is right recursion, so a matcher's stacks do not grow with the length
//! of what repeats.

use crate::grammar::{Elem, Grammar};
use crate::{ByteSet, GrammarError};

/// A grammar symbol: a terminal byte set or a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sym {
    /// One byte from the set.
    Bytes(ByteSet),
    /// Any alternative of the rule.
    Rule(RuleId),
}

/// A rule of a [`Builder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(pub(crate) u32);

/// Most grammar elements one constraint may compile to (repetition counts multiply).
pub const MAX_ELEMENTS: usize = 1 << 20;

/// Collects rules; [`Builder::build`] compiles them into a [`Grammar`].
#[derive(Debug)]
pub struct Builder {
    rules: Vec<Option<Vec<Vec<Sym>>>>,
    size: usize,
    /// Where the constraint came from, for errors.
    at: String,
}

impl Builder {
    /// An empty builder; `at` names the constraint in errors.
    pub fn new(at: impl Into<String>) -> Self {
        Self { rules: Vec::new(), size: 0, at: at.into() }
    }

    /// A rule to be defined later (recursive grammars refer to a rule before defining it).
    pub fn reserve(&mut self) -> RuleId {
        self.rules.push(None);
        RuleId((self.rules.len() - 1) as u32)
    }

    /// Defines a reserved rule.
    pub fn define(&mut self, id: RuleId, alts: Vec<Vec<Sym>>) -> Result<(), GrammarError> {
        self.size += alts.iter().map(|a| a.len() + 1).sum::<usize>();
        if self.size > MAX_ELEMENTS {
            return Err(GrammarError::TooLarge { at: self.at.clone(), limit: MAX_ELEMENTS });
        }
        self.rules[id.0 as usize] = Some(alts);
        Ok(())
    }

    /// A new rule with these alternatives.
    pub fn rule(&mut self, alts: Vec<Vec<Sym>>) -> Result<Sym, GrammarError> {
        let id = self.reserve();
        self.define(id, alts)?;
        Ok(Sym::Rule(id))
    }

    /// The bytes of `s`, one terminal each.
    pub fn literal(s: &[u8]) -> Vec<Sym> {
        s.iter().map(|&b| Sym::Bytes(ByteSet::byte(b))).collect()
    }

    /// `seq` or nothing.
    pub fn optional(&mut self, seq: Vec<Sym>) -> Result<Sym, GrammarError> {
        self.rule(vec![seq, Vec::new()])
    }

    /// `seq` any number of times (`R ::= seq R | ε`).
    pub fn star(&mut self, seq: &[Sym]) -> Result<Sym, GrammarError> {
        let id = self.reserve();
        let mut more = seq.to_vec();
        more.push(Sym::Rule(id));
        self.define(id, vec![more, Vec::new()])?;
        Ok(Sym::Rule(id))
    }

    /// `seq` between `min` and `max` times (`None`: no upper bound), as a sequence.
    pub fn repeat(
        &mut self,
        seq: &[Sym],
        min: u32,
        max: Option<u32>,
    ) -> Result<Vec<Sym>, GrammarError> {
        let too_large = || GrammarError::TooLarge { at: self.at.clone(), limit: MAX_ELEMENTS };
        let optional = match max {
            Some(max) if max < min => {
                return Err(GrammarError::Invalid {
                    at: self.at.clone(),
                    reason: format!("at most {max} repetitions but at least {min}"),
                });
            }
            Some(max) => (max - min) as usize,
            None => 1,
        };
        let cost = (min as usize + optional).saturating_mul(seq.len() + 1);
        if self.size.saturating_add(cost) > MAX_ELEMENTS {
            return Err(too_large());
        }
        let mut out = Vec::with_capacity(seq.len() * min as usize + 1);
        for _ in 0..min {
            out.extend_from_slice(seq);
        }
        match max {
            None => out.push(self.star(seq)?),
            Some(_) if optional > 0 => {
                // opt_k ::= seq opt_(k-1) | ε, so at most k more copies.
                let mut tail: Option<Sym> = None;
                for _ in 0..optional {
                    let mut more = seq.to_vec();
                    more.extend(tail);
                    tail = Some(self.optional(more)?);
                }
                out.extend(tail);
            }
            Some(_) => {}
        }
        Ok(out)
    }

    /// Compiles the rules reachable from `root` into a [`Grammar`].
    pub fn build(self, root: Sym) -> Result<Grammar, GrammarError> {
        // Element 0 calls the root; element 1 ends it: a stack `[0]` is the start.
        let mut elems = Vec::with_capacity(self.size + 2);
        elems.push(match root {
            Sym::Rule(r) => Elem::Rule(r.0),
            Sym::Bytes(b) => Elem::Set(b),
        });
        elems.push(Elem::End);
        let mut alts = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.into_iter().enumerate() {
            let Some(rule) = rule else {
                return Err(GrammarError::Invalid {
                    at: self.at,
                    reason: format!("rule {i} was never defined"),
                });
            };
            let mut starts = Vec::with_capacity(rule.len());
            for alt in rule {
                starts.push(elems.len() as u32);
                elems.extend(alt.into_iter().map(|s| match s {
                    Sym::Bytes(b) => Elem::Set(b),
                    Sym::Rule(r) => Elem::Rule(r.0),
                }));
                elems.push(Elem::End);
            }
            alts.push(starts.into_boxed_slice());
        }
        Grammar::new(elems, alts, self.at)
    }
}
