//! The paged KV cache: one [`KvPool`] per layer plus a block allocator.
//!
//! ## Invariants
//! * A block is owned by at most one sequence; [`BlockAllocator::free`] returns it exactly once.
//! * A sequence's block table covers every position it has written.

use candle_core::{DType, Device};
use lorad_kernels::KvPool;

use crate::Result;

/// Free-list allocator of fixed-size blocks.
#[derive(Debug)]
pub struct BlockAllocator {
    free: Vec<u32>,
    total: usize,
}

impl BlockAllocator {
    /// `total` blocks, all free.
    pub fn new(total: usize) -> Self {
        // Pop from the end: hand out low block ids first (nicer to read in logs).
        Self { free: (0..total as u32).rev().collect(), total }
    }

    /// Takes `n` blocks, or none if fewer are free.
    pub fn alloc(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.free.len() {
            return None;
        }
        let at = self.free.len() - n;
        Some(self.free.split_off(at))
    }

    /// Returns blocks to the free list.
    pub fn free(&mut self, blocks: impl IntoIterator<Item = u32>) {
        self.free.extend(blocks);
    }

    /// Free blocks.
    pub fn available(&self) -> usize {
        self.free.len()
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
