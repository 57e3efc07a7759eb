//! [`Grammar`] and its matcher [`State`]: a compiled grammar is a flat array of elements; a
//! state is the set of stacks of element positions a nondeterministic pushdown matcher can be
//! in after the bytes seen so far (llama.cpp's grammar sampler works the same way). A stack's
//! top is always a byte set; an empty stack means the text so far is a complete match.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::vocab::MaskCache;
use crate::{ByteSet, GrammarError};

/// One compiled grammar element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    /// A terminal: one byte of the set.
    Set(ByteSet),
    /// A call of the rule with this index.
    Rule(u32),
    /// The end of an alternative: return to the caller.
    End,
}

/// Deepest stack a matcher keeps: deeper nesting (or a left-recursive rule) ends that path
/// instead of growing without bound.
const MAX_DEPTH: usize = 2048;

/// Most stacks a state keeps. A constraint ambiguous enough to need more at once (say
/// `.{0,500}.{0,500}`, where every split of the text so far is a parse) would make each
/// token mask cost seconds; a byte that would lead past this many parses is refused instead,
/// so the answer stays inside a part of the grammar that can be followed in bounded time.
pub const MAX_STACKS: usize = 1024;

/// Most rule calls one expansion makes before giving up: with [`MAX_STACKS`], what bounds the
/// work of one byte however the grammar nests empty matches (`(a?){0,100000}`).
const MAX_CALLS: usize = 16 * MAX_STACKS;

/// A compiled grammar: what structured output constrains an answer to.
pub struct Grammar {
    elems: Vec<Elem>,
    /// Each rule's alternatives, as positions in `elems`.
    alts: Vec<Box<[u32]>>,
    start: State,
    /// Token masks already computed, per vocabulary and state.
    pub(crate) masks: Mutex<MaskCache>,
    /// Distinguishes grammars in logs and caches.
    id: u64,
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar")
            .field("id", &self.id)
            .field("rules", &self.alts.len())
            .field("elements", &self.elems.len())
            .finish_non_exhaustive()
    }
}

/// Where a matcher is: the set of stacks it can be in (sorted, no duplicates).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct State {
    pub(crate) stacks: Vec<Vec<u32>>,
}

impl State {
    /// Whether the text so far is a complete match (end-of-sequence may come now).
    pub fn is_accepting(&self) -> bool {
        self.stacks.iter().any(Vec::is_empty)
    }

    /// Whether more text can follow.
    pub fn can_continue(&self) -> bool {
        self.stacks.iter().any(|s| !s.is_empty())
    }

    /// Whether no text extends what was seen: the matcher has failed.
    pub fn is_dead(&self) -> bool {
        self.stacks.is_empty()
    }

    /// How many parses the matcher follows at once (what a token mask's cost grows with).
    pub fn parses(&self) -> usize {
        self.stacks.len()
    }
}

impl Grammar {
    pub(crate) fn new(
        elems: Vec<Elem>,
        alts: Vec<Box<[u32]>>,
        at: String,
    ) -> Result<Self, GrammarError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let mut g = Self {
            elems,
            alts,
            start: State::default(),
            masks: Mutex::new(MaskCache::default()),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        let mut out = Reached::default();
        let complete = g.expand(vec![0], &mut out, &mut HashSet::new());
        g.start = normalize(out.stacks);
        if !complete || g.start.stacks.len() > MAX_STACKS {
            return Err(GrammarError::Invalid {
                at,
                reason: format!("too ambiguous: more than {MAX_STACKS} ways to start"),
            });
        }
        if g.start.is_dead() || !g.can_ever_accept() {
            return Err(GrammarError::Empty { at });
        }
        Ok(g)
    }

    /// This grammar's process-unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The state before any byte.
    pub fn start(&self) -> State {
        self.start.clone()
    }

    /// The state after `byte`; dead when the grammar does not allow it.
    pub fn advance(&self, state: &State, byte: u8) -> State {
        self.advance_where(state, |_, set| set.contains(byte))
    }

    /// The state after `bytes`, or `None` as soon as they leave the grammar.
    pub fn advance_bytes(&self, state: &State, bytes: &[u8]) -> Option<State> {
        let mut s = state.clone();
        for &b in bytes {
            s = self.advance(&s, b);
            if s.is_dead() {
                return None;
            }
        }
        Some(s)
    }

    /// Whether `text` is a complete match.
    pub fn matches(&self, text: &[u8]) -> bool {
        self.advance_bytes(&self.start, text).is_some_and(|s| s.is_accepting())
    }

    /// The byte set on top of each stack (empty for an accepting stack).
    pub(crate) fn tops(&self, state: &State) -> Vec<ByteSet> {
        state
            .stacks
            .iter()
            .map(|s| match s.last().map(|&p| self.elems[p as usize]) {
                Some(Elem::Set(set)) => set,
                _ => ByteSet::EMPTY,
            })
            .collect()
    }

    /// Advances the stacks `accept(index, top set)` lets through by one byte. The successor
    /// of a stack does not depend on which byte of its set matched, which lets the token
    /// mask walk share one successor between every byte the same stacks accept.
    pub(crate) fn advance_where(
        &self,
        state: &State,
        accept: impl Fn(usize, &ByteSet) -> bool,
    ) -> State {
        // Both span every stack of `state`: parses that converge (at the end of each
        // alternative) are expanded once, and the cap counts distinct parses, not paths to
        // them (two overlapping classes in a repetition reach the same stacks many ways).
        let mut out = Reached::default();
        let mut seen = HashSet::new();
        for (i, stack) in state.stacks.iter().enumerate() {
            let Some(&top) = stack.last() else { continue };
            let Elem::Set(set) = self.elems[top as usize] else { continue };
            if !accept(i, &set) {
                continue;
            }
            let mut next = stack.clone();
            next.pop();
            self.push_return(&mut next, top + 1);
            if !self.expand(next, &mut out, &mut seen) {
                return State::default();
            }
        }
        let state = normalize(out.stacks);
        if state.stacks.len() > MAX_STACKS { State::default() } else { state }
    }

    /// Continues at `pos` after the element before it, unless that ends the alternative (a
    /// tail call: the caller's own return position is already on the stack).
    fn push_return(&self, stack: &mut Vec<u32>, pos: u32) {
        if self.elems[pos as usize] != Elem::End {
            stack.push(pos);
        }
    }

    /// Expands `start` until each stack's top is a byte set (or the stack is empty) and adds
    /// the results to `out`; returns `false` when it gave up past [`MAX_STACKS`] stacks or
    /// [`MAX_CALLS`] rule calls. `seen` holds the stacks already expanded at a rule call
    /// (by this call or an earlier one into the same `out`): meeting one again is a cycle
    /// through empty matches (say `(a*)*`) or a parse converging with another, and adds
    /// nothing. A work list, not recursion, so no grammar can exhaust the thread's stack.
    fn expand(&self, start: Vec<u32>, out: &mut Reached, seen: &mut HashSet<Vec<u32>>) -> bool {
        let mut work = vec![start];
        let mut calls = 0usize;
        while let Some(mut stack) = work.pop() {
            loop {
                let Some(&top) = stack.last() else {
                    out.stacks.push(stack);
                    break;
                };
                match self.elems[top as usize] {
                    Elem::Set(_) => {
                        out.stacks.push(stack);
                        break;
                    }
                    Elem::End => {
                        stack.pop();
                    }
                    Elem::Rule(r) => {
                        calls += 1;
                        if !out.within_cap() || calls > MAX_CALLS {
                            return false;
                        }
                        if stack.len() > MAX_DEPTH || !seen.insert(stack.clone()) {
                            break;
                        }
                        stack.pop();
                        self.push_return(&mut stack, top + 1);
                        for &a in self.alts[r as usize].iter() {
                            let mut s = stack.clone();
                            s.push(a);
                            work.push(s);
                        }
                        break;
                    }
                }
            }
        }
        true
    }

    /// Whether some text is a complete match: the start rule is productive. Computed as a
    /// fixpoint over rules (a rule is productive when one alternative has only terminals and
    /// productive rules), so a grammar that can only recurse forever is refused up front.
    fn can_ever_accept(&self) -> bool {
        let mut productive = vec![false; self.alts.len()];
        let seq_ok = |mut p: usize, productive: &[bool]| loop {
            match self.elems[p] {
                Elem::End => return true,
                Elem::Set(s) if s.is_empty() => return false,
                Elem::Set(_) => {}
                Elem::Rule(r) if !productive[r as usize] => return false,
                Elem::Rule(_) => {}
            }
            p += 1;
        };
        loop {
            let mut changed = false;
            for r in 0..self.alts.len() {
                if !productive[r] && self.alts[r].iter().any(|&a| seq_ok(a as usize, &productive)) {
                    productive[r] = true;
                    changed = true;
                }
            }
            if !changed {
                return seq_ok(0, &productive);
            }
        }
    }
}

/// The stacks an expansion has reached, deduplicated only when their count passes the next
/// check: duplicates are common (parses converge at the end of every alternative) but
/// hashing each stack as it comes costs more than sorting now and then.
struct Reached {
    stacks: Vec<Vec<u32>>,
    /// Count past which the stacks are deduplicated again.
    check_at: usize,
}

impl Default for Reached {
    fn default() -> Self {
        Self { stacks: Vec::new(), check_at: MAX_STACKS }
    }
}

impl Reached {
    /// Whether at most [`MAX_STACKS`] distinct stacks have been reached. Deduplicates once
    /// per [`MAX_STACKS`] stacks added, so the checks cost O(n log n) in all.
    fn within_cap(&mut self) -> bool {
        if self.stacks.len() <= self.check_at {
            return true;
        }
        self.stacks.sort_unstable();
        self.stacks.dedup();
        self.check_at = self.stacks.len() + MAX_STACKS;
        self.stacks.len() <= MAX_STACKS
    }
}

/// Sorts and deduplicates stacks into a state.
fn normalize(mut stacks: Vec<Vec<u32>>) -> State {
    stacks.sort_unstable();
    stacks.dedup();
    State { stacks }
}
