//! The paged KV cache: one [`KvPool`] per layer plus a block allocator that also keeps a
//! prefix cache.
//!
//! ## Prefix caching
//! A full block's K/V depend only on the tokens up to its end and on the adapter that computed
//! them, so a block is named by a hash chained over exactly that ([`block_hash`]): the parent
//! block's hash, a namespace (the adapter's content hash, and the request's cache salt if it
//! has one), the block's tokens. Full blocks are registered
//! under their hash as sequences compute them. A new sequence whose prompt starts with
//! registered blocks takes them (a reference each) instead of computing them again: a shared
//! system prompt or chat history is prefilled once (vLLM's automatic prefix caching). When a
//! sequence lets go of a registered block and no one else holds it, the block stays cached
//! until a fresh block is needed and it is the least recently released.
//!
//! ## Invariants
//! * A block is fresh (free), held (reference count ≥ 1), or cached (count 0, registered,
//!   evictable); [`BlockAllocator::free`] drops one reference per block given.
//! * Only full blocks are shared, and no sequence writes into a block below its `computed`
//!   position: a shared block is read-only.
//! * A sequence's block table covers every position it has written.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device};
use lorad_kernels::KvPool;
use sha2::{Digest, Sha256};

use crate::Result;

/// Name of a full block's contents: SHA-256 over the parent block's hash, the adapter and the
/// block's tokens (collisions would hand a sequence someone else's K/V, so no weak hash).
pub type BlockHash = [u8; 32];

/// The hash of a full block of `tokens` following the block hashed `parent` (none for the
/// first block) in `namespace`: the content hash of the adapter that computed it (empty: the
/// base model), followed by the request's cache salt if any.
pub fn block_hash(parent: Option<&BlockHash>, namespace: &str, tokens: &[u32]) -> BlockHash {
    let mut h = Sha256::new();
    h.update(parent.map_or(&[0u8; 32][..], |p| &p[..]));
    h.update((namespace.len() as u64).to_le_bytes());
    h.update(namespace.as_bytes());
    for t in tokens {
        h.update(t.to_le_bytes());
    }
    h.finalize().into()
}

/// Allocator of fixed-size blocks, with reference counts and the prefix cache.
#[derive(Debug)]
pub struct BlockAllocator {
    /// Fresh blocks (unregistered, unreferenced).
    free: Vec<u32>,
    total: usize,
    refs: Vec<u32>,
    /// The hash a block is registered under, if any.
    hash_of: Vec<Option<BlockHash>>,
    registered: HashMap<BlockHash, u32>,
    /// Cached blocks by release order (oldest first): evicted in that order.
    evictable: BTreeMap<u64, u32>,
    released_at: Vec<u64>,
    clock: u64,
}

impl BlockAllocator {
    /// `total` blocks, all free.
    pub fn new(total: usize) -> Self {
        Self {
            // Pop from the end: hand out low block ids first (nicer to read in logs).
            free: (0..total as u32).rev().collect(),
            total,
            refs: vec![0; total],
            hash_of: vec![None; total],
            registered: HashMap::new(),
            evictable: BTreeMap::new(),
            released_at: vec![0; total],
            clock: 0,
        }
    }

    /// Takes `n` fresh blocks (evicting the least recently released cached blocks when no
    /// free ones are left), or none if fewer than `n` can be had.
    pub fn alloc(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.available() {
            return None;
        }
        while self.free.len() < n {
            let (_, b) = self.evictable.pop_first()?;
            if let Some(h) = self.hash_of[b as usize].take() {
                self.registered.remove(&h);
            }
            self.free.push(b);
        }
        let at = self.free.len() - n;
        let blocks = self.free.split_off(at);
        for &b in &blocks {
            self.refs[b as usize] = 1;
        }
        Some(blocks)
    }

    /// Drops one reference to each block; a block no one holds is cached if registered, free
    /// otherwise.
    pub fn free(&mut self, blocks: impl IntoIterator<Item = u32>) {
        for b in blocks {
            let i = b as usize;
            debug_assert!(self.refs[i] > 0, "block {b} freed more often than taken");
            self.refs[i] = self.refs[i].saturating_sub(1);
            if self.refs[i] > 0 {
                continue;
            }
            if self.hash_of[i].is_some() {
                self.clock += 1;
                self.released_at[i] = self.clock;
                self.evictable.insert(self.clock, b);
            } else {
                self.free.push(b);
            }
        }
    }

    /// The block registered under `hash`, with a reference taken on it for the caller.
    pub fn take_cached(&mut self, hash: &BlockHash) -> Option<u32> {
        let b = *self.registered.get(hash)?;
        let i = b as usize;
        if self.refs[i] == 0 {
            self.evictable.remove(&self.released_at[i]);
        }
        self.refs[i] += 1;
        Some(b)
    }

    /// Registers the full, held block `b` under `hash`, unless that hash already names a block
    /// (the same contents computed twice at once: the first stays the cached one) or `b` is
    /// registered already.
    pub fn register(&mut self, b: u32, hash: BlockHash) {
        let i = b as usize;
        if self.hash_of[i].is_some() || self.registered.contains_key(&hash) {
            return;
        }
        self.hash_of[i] = Some(hash);
        self.registered.insert(hash, b);
    }

    /// Blocks a new sequence can get: free plus cached.
    pub fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// Cached blocks (registered, held by no sequence).
    pub fn cached(&self) -> usize {
        self.evictable.len()
    }

    /// All blocks.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// Per-layer pools and their shared allocator.
#[derive(Debug)]
pub struct KvCache {
    /// One pool per layer.
    pub pools: Vec<KvPool>,
    /// Block allocator shared by all layers (a block id names the same slots in every layer).
    pub blocks: BlockAllocator,
    /// Tokens per block.
    pub block_size: usize,
}

impl KvCache {
    /// A cache for at least `tokens` tokens.
    pub fn new(
        layers: usize,
        tokens: usize,
        block_size: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let num_blocks = tokens.div_ceil(block_size);
        let pools = (0..layers)
            .map(|_| KvPool::zeros(num_blocks, block_size, kv_heads, head_dim, dtype, device))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self { pools, blocks: BlockAllocator::new(num_blocks), block_size })
    }

    /// Capacity in tokens.
    pub fn capacity_tokens(&self) -> usize {
        self.blocks.total() * self.block_size
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u32) -> BlockHash {
        block_hash(None, "", &[n])
    }

    #[test]
    fn cached_blocks_are_shared_then_evicted_oldest_first() {
        let mut a = BlockAllocator::new(4);
        let x = a.alloc(2).unwrap();
        a.register(x[0], h(1));
        a.register(x[1], h(2));
        // A second sequence shares block 0's contents while the first still holds it.
        assert_eq!(a.take_cached(&h(1)), Some(x[0]));
        a.free(x.clone());
        // x[1] is cached now (no holder), x[0] still held by the second sequence.
        assert_eq!((a.available(), a.cached()), (3, 1));
        a.free([x[0]]);
        assert_eq!((a.available(), a.cached()), (4, 2));
        // Two fresh blocks come from the free list; the cached ones survive.
        let y = a.alloc(2).unwrap();
        assert!(!y.contains(&x[0]) && !y.contains(&x[1]));
        assert_eq!(a.take_cached(&h(2)), Some(x[1]));
        a.free([x[1]]);
        // Now x[0] (released first) is evicted before x[1].
        let z = a.alloc(1).unwrap();
        assert_eq!(z, vec![x[0]]);
        assert_eq!(a.take_cached(&h(1)), None);
        assert_eq!(a.take_cached(&h(2)), Some(x[1]));
        assert!(a.alloc(1).is_none(), "every block is held");
    }

    #[test]
    fn registering_twice_keeps_the_first() {
        let mut a = BlockAllocator::new(2);
        let x = a.alloc(2).unwrap();
        a.register(x[0], h(7));
        a.register(x[1], h(7));
        a.free(x.clone());
        assert_eq!(a.cached(), 1);
        assert_eq!(a.take_cached(&h(7)), Some(x[0]));
    }

    #[test]
    fn hashes_chain_over_parent_adapter_and_tokens() {
        let root = block_hash(None, "", &[1, 2]);
        assert_ne!(root, block_hash(None, "", &[1, 3]));
        assert_ne!(root, block_hash(None, "abc", &[1, 2]));
        assert_ne!(block_hash(Some(&root), "", &[5]), block_hash(None, "", &[5]));
        assert_eq!(root, block_hash(None, "", &[1, 2]));
    }
}
