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

    /// Exactly one of `words`, as a trie: words that share a prefix share its terminals, and
    /// at every byte one branch goes on. A plain alternation of N words gives the matcher N
    /// stacks to carry (and past [`crate::grammar::MAX_STACKS`] refuses the constraint as too
    /// ambiguous); the trie carries one, plus one per word that could end there. Branches
    /// are tail calls, so the matcher's stacks stay shallow however long the words are, and
    /// the building is a work list, not recursion, so no list of words exhausts the stack.
    pub fn choice(&mut self, words: Vec<Vec<u8>>) -> Result<Sym, GrammarError> {
        // `choice_then` sorts and removes duplicates.
        self.choice_then(words.into_iter().map(|w| (w, Vec::new())).collect())
    }

    /// [`Builder::choice`] where each word is followed by its own continuation (a tool call's
    /// opening, then that tool's arguments): the trie is over the words, and each leaf goes on
    /// with its item's continuation. Equal words may have different continuations.
    pub fn choice_then(
        &mut self,
        mut items: Vec<(Vec<u8>, Vec<Sym>)>,
    ) -> Result<Sym, GrammarError> {
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items.dedup();
        if items.is_empty() {
            return Err(GrammarError::Invalid {
                at: self.at.clone(),
                reason: "at least one choice is needed".into(),
            });
        }
        let word = |i: usize| -> &[u8] { &items[i].0 };
        let root = self.reserve();
        // (rule, items[lo..hi], depth): the words share their first `depth` bytes, which the
        // caller matched; `rule` matches the rest of exactly one item.
        let mut work = vec![(root, 0, items.len(), 0)];
        while let Some((rule, lo, hi, depth)) = work.pop() {
            // Sorted: the first and last words' common prefix is everyone's.
            let common = word(lo)[depth..].iter().zip(&word(hi - 1)[depth..]);
            let at = depth + common.take_while(|(a, b)| a == b).count();
            let mut branch: Vec<Vec<Sym>> = Vec::new();
            let mut i = lo;
            // Words that end here sort before their extensions.
            while i < hi && word(i).len() == at {
                branch.push(items[i].1.clone());
                i += 1;
            }
            while i < hi {
                let byte = word(i)[at];
                let end = i + (i..hi).take_while(|&k| word(k)[at] == byte).count();
                if end - i == 1 {
                    let mut alt = Self::literal(&word(i)[at..]);
                    alt.extend_from_slice(&items[i].1);
                    branch.push(alt);
                } else {
                    let child = self.reserve();
                    branch.push(vec![Sym::Bytes(ByteSet::byte(byte)), Sym::Rule(child)]);
                    work.push((child, i, end, at + 1));
                }
                i = end;
            }
            let mut prefix = Self::literal(&word(lo)[depth..at]);
            let alts = match branch.len() {
                1 => {
                    prefix.extend(branch.pop().unwrap_or_default());
                    vec![prefix]
                }
                _ if prefix.is_empty() => branch,
                _ => {
                    prefix.push(self.rule(branch)?);
                    vec![prefix]
                }
            };
            self.define(rule, alts)?;
        }
        Ok(Sym::Rule(root))
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
