//! Streaming training data: each item is a chunk of consecutive queries of one captured
//! passage, batched against all keys up to its end, for every layer at once. Only the
//! per-token queries and keys are held; (query, key) pairs exist one batch at a time.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::{backend::Backend, Tensor};
use burn_sparse_attn_core::rng::SplitMix64;

use crate::capture::CapturedQk;

/// A chunk of queries: passage `passage`, positions `start..start + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryChunk {
    /// Index of the passage.
    pub passage: usize,
    /// First query position.
    pub start: usize,
    /// Queries.
    pub count: usize,
}

/// `len` query chunks of `count` queries drawn at random (deterministically from the seed
/// and the index) from `passages`, starting at position `min_start` or later.
#[derive(Debug, Clone)]
pub struct QueryChunks {
    /// Token counts of the passages.
    pub passage_lens: Vec<usize>,
    /// Queries per chunk.
    pub count: usize,
    /// Earliest first query position.
    pub min_start: usize,
    /// Chunks per epoch.
    pub len: usize,
    /// Seed of the draws.
    pub seed: u64,
}

impl Dataset<QueryChunk> for QueryChunks {
    fn get(&self, index: usize) -> Option<QueryChunk> {
        if index >= self.len || self.passage_lens.is_empty() {
            return None;
        }
        let mut rng = SplitMix64::new(self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let passage = rng.below(self.passage_lens.len());
        let last = self.passage_lens[passage].saturating_sub(self.count);
        let start = self.min_start.min(last) + rng.below(last.saturating_sub(self.min_start) + 1);
        Some(QueryChunk { passage, start, count: self.count })
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Queries and keys of every layer for one chunk.
#[derive(Debug, Clone)]
pub struct QkBatch<B: Backend> {
    /// Per layer, queries `[1, heads, count, head_dim]`.
    pub queries: Vec<Tensor<B, 4>>,
    /// Per layer, keys `[1, kv_heads, start + count, head_dim]`.
    pub keys: Vec<Tensor<B, 4>>,
    /// First query position.
    pub start: usize,
}

/// Cuts [`QkBatch`]es out of captured passages (batches hold one chunk; make chunks larger
/// for more queries per step).
#[derive(Debug, Clone)]
pub struct QkBatcher {
    /// The passages.
    pub passages: Arc<Vec<CapturedQk>>,
}

impl<B: Backend> Batcher<B, QueryChunk, QkBatch<B>> for QkBatcher {
    fn batch(&self, items: Vec<QueryChunk>, device: &B::Device) -> QkBatch<B> {
        let chunk = items[0];
        let passage = &self.passages[chunk.passage];
        let end = chunk.start + chunk.count;
        let layers = 0..passage.layers.len();
        QkBatch {
            queries: layers.clone().map(|l| passage.queries(l, chunk.start, chunk.count, device)).collect(),
            keys: layers.map(|l| passage.keys(l, end, device)).collect(),
            start: chunk.start,
        }
    }
}
