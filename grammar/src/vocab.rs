//! [`Vocab`]: a tokenizer's tokens as bytes in a trie, and [`TokenMask`]: which tokens keep an
//! answer inside a grammar from a given state.
//!
//! The mask walks the trie once, advancing the matcher byte by byte and dropping a whole
//! subtree as soon as its prefix leaves the grammar. Within a walk, matcher states are interned
//! and each (state, set of stacks that accept the byte) transition is computed once, so a state
//! that lets most bytes through (inside a JSON string) costs a hash lookup per trie node rather
//! than a matcher step. Masks are cached per grammar and state: a string's interior, a number's
//! digits or the same schema across requests hit the cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::grammar::{Grammar, State};
use crate::{ByteSet, GrammarError};

/// Masks a grammar keeps before it starts over (each is `vocab / 8` bytes: 6 KiB for 49,152
/// tokens).
const MAX_CACHED_MASKS: usize = 4096;

/// Bytes of cached masks all grammars of the process may hold together: a grammar that would
/// go past it starts its own cache over. Caches are per grammar (a server keeps many), so
/// without a shared bound they could add up to gigabytes.
pub const MAX_CACHED_MASK_BYTES: usize = 256 << 20;

/// Bytes of cached masks held now, by every grammar.
static CACHED_MASK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// A tokenizer's vocabulary as bytes.
#[derive(Debug)]
pub struct Vocab {
    uid: u64,
    bytes: Vec<Option<Box<[u8]>>>,
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    /// Tokens whose bytes end here.
    tokens: Vec<u32>,
}

impl Vocab {
    /// The vocabulary from each token id's bytes, in id order; `None` for tokens no grammar
    /// may produce (special and control tokens: end-of-sequence is the engine's business).
    pub fn new(tokens: impl IntoIterator<Item = Option<Vec<u8>>>) -> Self {
        static NEXT_UID: AtomicU64 = AtomicU64::new(1);
        let mut nodes = vec![Node::default()];
        let mut bytes = Vec::new();
        for (id, tok) in tokens.into_iter().enumerate() {
            let tok = tok.filter(|t| !t.is_empty());
            if let Some(t) = &tok {
                let mut n = 0usize;
                for &b in t.iter() {
                    n = match nodes[n].children.binary_search_by_key(&b, |c| c.0) {
                        Ok(i) => nodes[n].children[i].1 as usize,
                        Err(i) => {
                            nodes.push(Node::default());
                            let child = (nodes.len() - 1) as u32;
                            nodes[n].children.insert(i, (b, child));
                            child as usize
                        }
                    };
                }
                nodes[n].tokens.push(id as u32);
            }
            bytes.push(tok.map(Vec::into_boxed_slice));
        }
        Self { uid: NEXT_UID.fetch_add(1, Ordering::Relaxed), bytes, nodes }
    }

    /// Number of token ids.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes of token `id`; `None` for a special token or an unknown id.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize)?.as_deref()
    }
}

/// The tokens a grammar allows next (end-of-sequence not included: see
/// [`State::is_accepting`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMask {
    bits: Vec<u64>,
}

impl TokenMask {
    fn new(n: usize) -> Self {
        Self { bits: vec![0; n.div_ceil(64)] }
    }

    fn set(&mut self, id: u32) {
        self.bits[id as usize / 64] |= 1 << (id % 64);
    }

    /// Whether token `id` is allowed.
    pub fn allows(&self, id: u32) -> bool {
        self.bits.get(id as usize / 64).is_some_and(|w| w >> (id % 64) & 1 == 1)
    }

    /// How many tokens are allowed.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Sets every disallowed entry of `logits` (one per token id) to minus infinity.
    pub fn apply(&self, logits: &mut [f32]) {
        for (i, l) in logits.iter_mut().enumerate() {
            if !self.allows(i as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// A grammar's computed masks, keyed by vocabulary and state.
#[derive(Debug, Default)]
pub(crate) struct MaskCache {
    masks: HashMap<(u64, State), Arc<TokenMask>>,
    /// Bytes of `masks`, counted in [`CACHED_MASK_BYTES`].
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl MaskCache {
    fn clear(&mut self) {
        self.masks.clear();
        CACHED_MASK_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
    }

    fn insert(&mut self, key: (u64, State), mask: Arc<TokenMask>) {
        let size = mask.bits.len() * 8;
        let total = CACHED_MASK_BYTES.load(Ordering::Relaxed);
        if self.masks.len() >= MAX_CACHED_MASKS || total + size > MAX_CACHED_MASK_BYTES {
            self.clear();
        }
        CACHED_MASK_BYTES.fetch_add(size, Ordering::Relaxed);
        self.bytes += size;
        self.masks.insert(key, mask);
    }
}

impl Drop for MaskCache {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Bytes of token masks cached by all grammars now (bounded by [`MAX_CACHED_MASK_BYTES`]).
pub fn cached_mask_bytes() -> usize {
    CACHED_MASK_BYTES.load(Ordering::Relaxed)
}

impl Grammar {
    /// The tokens of `vocab` that can come next in `state`, from the cache when it was
    /// computed before.
    pub fn mask(&self, vocab: &Vocab, state: &State) -> Arc<TokenMask> {
        let key = (vocab.uid, state.clone());
        if let Ok(mut c) = self.masks.lock()
            && let Some(m) = c.masks.get(&key).cloned()
        {
            c.hits += 1;
            return m;
        }
        let mask = Arc::new(self.compute_mask(vocab, state));
        if let Ok(mut c) = self.masks.lock() {
            c.misses += 1;
            c.insert(key, mask.clone());
        }
        mask
    }

    /// Whether the mask of `state` over `vocab` is cached (asking does not count as a hit).
    pub fn has_mask(&self, vocab: &Vocab, state: &State) -> bool {
        self.masks.lock().is_ok_and(|c| c.masks.contains_key(&(vocab.uid, state.clone())))
    }

    /// Mask cache hits and misses so far (for benchmarks and tests).
    pub fn mask_cache_stats(&self) -> (u64, u64) {
        self.masks.lock().map_or((0, 0), |c| (c.hits, c.misses))
    }

    /// The state after token `id`'s bytes.
    pub fn advance_token(
        &self,
        vocab: &Vocab,
        state: &State,
        id: u32,
    ) -> Result<State, GrammarError> {
        let bytes = vocab.token_bytes(id).ok_or(GrammarError::UnknownToken(id))?;
        self.advance_bytes(state, bytes).ok_or(GrammarError::Rejected(id))
    }

    fn compute_mask(&self, vocab: &Vocab, state: &State) -> TokenMask {
        let mut w = Walk {
            g: self,
            vocab,
            mask: TokenMask::new(vocab.len()),
            states: Vec::new(),
            ids: HashMap::new(),
            trans: HashMap::new(),
        };
        let root = w.intern(state.clone());
        w.walk(0, root);
        w.mask
    }
}

/// One mask computation: interned states and their transitions.
struct Walk<'a> {
    g: &'a Grammar,
    vocab: &'a Vocab,
    mask: TokenMask,
    /// Interned states with their stacks' top sets and the union of those.
    states: Vec<(State, Vec<ByteSet>, ByteSet)>,
    ids: HashMap<State, u32>,
    /// (state, which stacks accept the byte) → successor; `u32::MAX` for a dead successor.
    trans: HashMap<(u32, u128), u32>,
}

impl Walk<'_> {
    fn intern(&mut self, s: State) -> u32 {
        if let Some(&id) = self.ids.get(&s) {
            return id;
        }
        let tops = self.g.tops(&s);
        let union = tops.iter().fold(ByteSet::EMPTY, |u, t| u.union(*t));
        let id = self.states.len() as u32;
        self.ids.insert(s.clone(), id);
        self.states.push((s, tops, union));
        id
    }

    /// The successor of state `sid` on byte `b`, if it is alive.
    fn step(&mut self, sid: u32, b: u8) -> Option<u32> {
        let (_, tops, union) = &self.states[sid as usize];
        if !union.contains(b) {
            return None;
        }
        // Which stacks let `b` through; past 128 stacks the byte itself is the key.
        let key = if tops.len() <= 128 {
            tops.iter().enumerate().fold(0u128, |k, (i, t)| k | (u128::from(t.contains(b)) << i))
        } else {
            u128::from(b)
        };
        if let Some(&next) = self.trans.get(&(sid, key)) {
            return (next != u32::MAX).then_some(next);
        }
        let next = {
            let (state, tops, _) = &self.states[sid as usize];
            if tops.len() <= 128 {
                self.g.advance_where(state, |i, _| key >> i & 1 == 1)
            } else {
                self.g.advance(state, b)
            }
        };
        let id = if next.is_dead() { u32::MAX } else { self.intern(next) };
        self.trans.insert((sid, key), id);
        (id != u32::MAX).then_some(id)
    }

    fn walk(&mut self, node: usize, sid: u32) {
        let vocab = self.vocab;
        for &(b, child) in &vocab.nodes[node].children {
            let Some(next) = self.step(sid, b) else { continue };
            let child = child as usize;
            for &t in &vocab.nodes[child].tokens {
                self.mask.set(t);
            }
            if !vocab.nodes[child].children.is_empty() {
                self.walk(child, next);
            }
        }
    }
}
