//! HiP attention: a hierarchically pruned top-k mask of key blocks, then block-sparse
//! attention over the chosen blocks plus sink and window (Lee et al., ICLR 2025).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use super::budget::{HeadLayout, KeyBudget};
use super::method::{append_new_tokens, AttentionMethod};
use super::registry::MethodEntry;
use crate::attend::{
    dense_attention, gather_attention_unchecked, query_chunks, query_chunks_within, AttnOptions, AttnOutput,
    QueryPositions, MAX_GPU_CHUNK_ELEMENTS,
};
use crate::cache::KvCache;
use crate::error::AttnResult;
use crate::kernels::{self, BlockSizes, KernelWindow};
use crate::profile;
use crate::select::{
    hip_mask, sink_selection, window_selection, HipMask, HipMaskParams, KeySelection, Representative,
};
use crate::shape::AttnShape;

/// Config of [`HipAttention`]; defaults follow the paper.
#[derive(Config, Debug)]
pub struct HipAttentionConfig {
    /// Keys chosen per query block by the mask.
    #[config(default = 512)]
    pub mask_k: usize,
    /// Queries that share one mask.
    #[config(default = 64)]
    pub block_size_q: usize,
    /// Every `block_stride_q`-th query of a block takes part in scoring.
    #[config(default = 2)]
    pub block_stride_q: usize,
    /// Keys per key block.
    #[config(default = 2)]
    pub block_size_k: usize,
    /// Every `block_stride_k`-th key of a representative block takes part in scoring.
    #[config(default = 1)]
    pub block_stride_k: usize,
    /// First keys every query sees.
    #[config(default = 16)]
    pub sink: usize,
    /// Most recent keys every query sees.
    #[config(default = 256)]
    pub window: usize,
    /// Decode steps a mask is reused before it is made again (1: every step).
    #[config(default = 8)]
    pub refresh_interval: usize,
    /// The key block that stands for an interval when it is scored.
    #[config(default = "Representative::Center")]
    pub representative: Representative,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
}

/// What HiP keeps in the [`KvCache`] between decode steps: the keys its mask chose for the
/// last query, reused for `refresh_interval` steps.
#[derive(Debug, Clone)]
pub struct CachedMask<B: Backend> {
    /// Chosen keys `[batch, query_heads, 1, n]`, all before `range_end`.
    pub keys: Tensor<B, 4, Int>,
    /// Which entries are real, `[batch, query_heads, 1, n]`.
    pub valid: Tensor<B, 4, Bool>,
    /// The chosen key blocks' first keys `[batch, query_heads, 1, branches]`, -1 where
    /// none: what the block-sparse kernel reads.
    pub block_starts: Tensor<B, 4, Int>,
    /// Keys from here on were left to the window when the mask was made.
    pub range_end: usize,
    /// Tokens in the cache when the mask was made.
    pub made_at: usize,
}

/// HiP attention. Contexts no longer than `sink + window + mask_k` are attended densely.
#[derive(Module, Debug, Clone)]
pub struct HipAttention {
    /// The mask's knobs.
    #[module(skip)]
    pub params: HipMaskParams,
    /// Decode steps a mask is reused.
    #[module(skip)]
    pub refresh_interval: usize,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    #[module(skip)]
    pub scale: Option<f64>,
}

impl HipAttentionConfig {
    /// Creates the method (no parameters).
    pub fn init<B: Backend>(&self, _device: &B::Device) -> AttnResult<HipAttention> {
        let params = HipMaskParams {
            mask_k: self.mask_k,
            block_size_q: self.block_size_q,
            block_stride_q: self.block_stride_q,
            block_size_k: self.block_size_k,
            block_stride_k: self.block_stride_k,
            sink: self.sink,
            window: self.window,
            representative: self.representative,
        };
        params.validate()?;
        if self.refresh_interval == 0 {
            return Err(crate::error::AttnError::Config("refresh_interval must be at least 1".into()));
        }
        Ok(HipAttention { params, refresh_interval: self.refresh_interval, scale: self.scale })
    }
}

impl HipAttention {
    /// Keys a query may attend to at most: sink + window + mask.
    pub fn budget(&self) -> usize {
        self.params.sink + self.params.window + self.params.mask_k
    }

    /// Per query of a mask's chunk: sink ∪ the block's mask ∪ window, causal.
    ///
    /// `mask` covers the queries at `positions` (`query_len` of them, from a block start).
    pub fn selection<B: Backend>(
        &self,
        mask: &HipMask<B>,
        positions: &QueryPositions,
        query_len: usize,
    ) -> AttnResult<KeySelection<B>> {
        let (keys, valid) = mask.keys();
        let [b, h, blocks, n] = keys.dims();
        let bq = self.params.block_size_q;
        let per_query = |x: Tensor<B, 4, burn::tensor::Int>| {
            x.reshape([b, h, blocks, 1, n]).expand([b, h, blocks, bq, n]).reshape([b, h, blocks * bq, n])
        };
        let keys = per_query(keys).narrow(2, 0, query_len);
        let valid = per_query(valid.int()).narrow(2, 0, query_len).bool();
        let device = keys.device();
        let last = crate::positions::last_visible_keys::<B>(positions, query_len, 1, &device)
            .reshape([1, 1, query_len, 1])
            .expand([b, h, query_len, n]);
        let valid = valid.bool_and(keys.clone().lower_equal(last));
        self.union_with_sink_window(KeySelection { indices: keys, valid }, positions, self.params.window)
    }

    fn union_with_sink_window<B: Backend>(
        &self,
        mask: KeySelection<B>,
        positions: &QueryPositions,
        window: usize,
    ) -> AttnResult<KeySelection<B>> {
        let [b, h, t, _] = mask.dims();
        let device = mask.indices.device();
        let mut sets = vec![mask];
        sets.extend(sink_selection(positions, [b, h, t], self.params.sink, &device));
        sets.extend(window_selection(positions, [b, h, t], self.params.sink, window, &device));
        KeySelection::union(sets, positions.kv_len)
    }

    /// Attention over sink, window and the mask's blocks in the block-sparse kernel, on a
    /// CubeCL backend: no per-query key lists are built.
    fn block_kernel<B: Backend>(
        &self,
        q: &Tensor<B, 4>,
        k: &Tensor<B, 4>,
        v: &Tensor<B, 4>,
        mask: &HipMask<B>,
        positions: &QueryPositions,
        scale: f64,
    ) -> Option<AttnOutput<B>> {
        if !self.block_kernel_applies(q, k, v, positions) {
            return None;
        }
        let p = &self.params;
        let at = KernelWindow { first_position: positions.offset, sink: p.sink, window: p.window };
        kernels::block_sparse_attention(q, k, v, Some((&mask.kernel_blocks(), self.block_sizes())), at, scale)
    }

    /// Whether [`Self::block_kernel`] attends (a causal call the block-sparse kernel takes).
    fn block_kernel_applies<B: Backend>(
        &self,
        q: &Tensor<B, 4>,
        k: &Tensor<B, 4>,
        v: &Tensor<B, 4>,
        positions: &QueryPositions,
    ) -> bool {
        positions.causal && kernels::block_sparse_applies(q, k, v)
    }

    /// The mask's units, as the block-sparse kernel reads them.
    fn block_sizes(&self) -> BlockSizes {
        BlockSizes { query_block: self.params.block_size_q, key_block: self.params.block_size_k }
    }

    /// Attention of a decode query over the cached mask, if it is recent enough: in the
    /// block-sparse kernel on a CubeCL backend (no key lists, no sort), else over the union
    /// of sink, mask and window.
    fn reuse<B: Backend>(
        &self,
        (q, k, v): (&Tensor<B, 4>, &Tensor<B, 4>, &Tensor<B, 4>),
        shape: &AttnShape,
        positions: &QueryPositions,
        cache: &KvCache<B>,
        scale: f64,
    ) -> AttnResult<Option<AttnOutput<B>>> {
        let Some(mask) = cache.state::<CachedMask<B>>() else { return Ok(None) };
        let [b, h, _, _] = mask.keys.dims();
        let fresh = shape.kv_len - mask.made_at < self.refresh_interval;
        if !fresh || shape.query_len != 1 || (b, h) != (shape.batch, shape.query_heads) {
            return Ok(None);
        }
        // Keys added since the mask was made lie past its range: widen the window to them.
        let last = positions.last_visible(0);
        let window = self.params.window.max(last + 1 - mask.range_end);
        if kernels::kernels_active::<B>() && positions.causal {
            let at = KernelWindow { first_position: positions.offset, sink: self.params.sink, window };
            let blocks = Some((&mask.block_starts, self.block_sizes()));
            if let Some(out) = kernels::block_sparse_attention(q, k, v, blocks, at, scale) {
                return Ok(Some(out));
            }
        }
        let selection = KeySelection { indices: mask.keys.clone(), valid: mask.valid.clone() };
        let selection = self.union_with_sink_window(selection, positions, window)?;
        Ok(Some(gather_attention_unchecked(q.clone(), k.clone(), v.clone(), &selection, shape, scale)))
    }
}

impl<B: Backend> AttentionMethod<B> for HipAttention {
    fn forward_cached(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        let (k, v) = append_new_tokens(HipAttentionConfig::NAME, &q, k, v, cache)?;
        let shape = AttnShape::of(&q, &k, &v)?;
        let options = AttnOptions { scale: self.scale, ..AttnOptions::causal() };
        let positions = options.positions(&shape)?;
        let scale = options.scale_for(shape.head_dim);
        if shape.kv_len <= self.budget() {
            cache.set_state::<CachedMask<B>>(None);
            return dense_attention(q, k, v, &options);
        }
        if let Some(out) = self.reuse((&q, &k, &v), &shape, &positions, cache, scale)? {
            return Ok(out);
        }

        let p = &self.params;
        let blocks = shape.query_len.div_ceil(p.block_size_q);
        let scored = 2 * p.branches() * (p.block_size_k / p.block_stride_k);
        // Per query block: the scored keys' rows and logits, or only their positions and
        // flags (a few tensors) when the child-score kernel reads the rows itself; and the
        // per-query key lists of the reference attention, unless the block kernel attends.
        let round = if kernels::hip_child_scores_apply::<B>(p.block_size_q, p.block_stride_q, shape.head_dim)
        {
            4 * scored
        } else {
            scored * (p.block_size_q / p.block_stride_q + shape.head_dim)
        };
        let key_lists = if self.block_kernel_applies(&q, &k, &v, &positions) {
            0
        } else {
            p.block_size_q * self.budget()
        };
        let per_block = shape.batch * shape.query_heads * (round + key_lists);
        // On a GPU, chunks as large as the bound allows: each costs a mask's launches.
        let chunks = if kernels::kernels_active::<B>() {
            query_chunks_within(blocks, per_block, MAX_GPU_CHUNK_ELEMENTS)
        } else {
            query_chunks(blocks, per_block)
        };
        let mut parts = Vec::new();
        let mut last_mask = None;
        for (first_block, count) in chunks {
            let start = first_block * p.block_size_q;
            let len = (count * p.block_size_q).min(shape.query_len - start);
            let chunk_positions = positions.shifted(start);
            let q = q.clone().narrow(2, start, len);
            let device = q.device();
            let mask = profile::span::<B, _>("hip mask", &device, || {
                hip_mask(q.clone(), k.clone(), &chunk_positions, p)
            })?;
            let attended = profile::span::<B, _>("attend", &device, || {
                self.block_kernel(&q, &k, &v, &mask, &chunk_positions, scale)
            });
            let part = match attended {
                Some(part) => part,
                None => {
                    let selection = self.selection(&mask, &chunk_positions, len)?;
                    let chunk_shape = AttnShape { query_len: len, ..shape };
                    gather_attention_unchecked(q, k.clone(), v.clone(), &selection, &chunk_shape, scale)
                }
            };
            parts.push(part);
            last_mask = Some(mask);
        }
        cache.set_state(last_mask.map(|mask| last_block_mask(&mask, shape.kv_len)));
        Ok(AttnOutput::cat(parts))
    }
}

/// The mask of the last query block, kept for the next decode steps.
fn last_block_mask<B: Backend>(mask: &HipMask<B>, kv_len: usize) -> CachedMask<B> {
    let (keys, valid) = mask.keys();
    let blocks = keys.dims()[2];
    let block_starts = mask.kernel_blocks();
    CachedMask {
        keys: keys.narrow(2, blocks - 1, 1),
        valid: valid.narrow(2, blocks - 1, 1),
        block_starts: block_starts.narrow(2, blocks - 1, 1),
        range_end: *mask.range_ends.last().unwrap(),
        made_at: kv_len,
    }
}

impl MethodEntry for HipAttentionConfig {
    type Module<B: Backend> = HipAttention;
    const NAME: &'static str = "hip";
    const DESCRIPTION: &'static str =
        "sink + window + `mask_k` keys in blocks found by a hierarchical search (O(T log T) keys scored)";

    fn build<B: Backend>(&self, device: &B::Device) -> AttnResult<HipAttention> {
        self.init::<B>(device)
    }

    /// The chosen keys go to the mask (an even count: key blocks of 2), in query blocks of 32.
    fn for_budget(_heads: &HeadLayout, budget: &KeyBudget) -> Self {
        Self::new()
            .with_mask_k(budget.heavy.div_ceil(2) * 2)
            .with_block_size_q(32)
            .with_sink(budget.sink)
            .with_window(budget.window)
    }
}
