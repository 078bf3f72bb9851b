//! The select-then-attend pipeline that every top-k method runs.

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::attend::{
    gather_attention_unchecked, query_chunks, query_chunks_within, AttnOptions, AttnOutput,
    MAX_GPU_CHUNK_ELEMENTS,
};
use crate::error::{AttnError, AttnResult};
use crate::hash::ranked_group_matching_bits;
use crate::kernels::{self, KernelWindow};
use crate::positions::QueryPositions;
use crate::profile;
use crate::select::{
    budget_union, candidate_page_scores, page_keys, page_selection, top_k_selection, KeySelection,
    SparseBudget,
};
use crate::shape::AttnShape;

/// What chooses the heavy keys, outside the sink and the window.
pub(crate) enum Scorer<'a, B: Backend> {
    /// Nothing: sink + window only.
    None,
    /// `score(query_start, query_len)` gives float scores
    /// `[batch, query_heads, query_len, kv_len]` of those queries.
    Exact(&'a dyn Fn(usize, usize) -> AttnResult<Tensor<B, 4>>),
    /// Matching bits of query signatures `[batch, query_heads, query_len, words]` against key
    /// signatures `[batch, signature_heads, kv_len, words]`, summed over `group` consecutive
    /// query heads that then share one key list (1: a list per query head); ties go to the
    /// earlier key.
    Signatures { query: Tensor<B, 4, Int>, key: Tensor<B, 4, Int>, group: usize },
    /// Whole pages of `page_size` keys: `score(query_start, query_len)` gives page scores
    /// `[batch, query_heads, query_len, pages]`; the heavy budget is rounded up to pages.
    Pages { score: &'a dyn Fn(usize, usize) -> AttnResult<Tensor<B, 4>>, page_size: usize },
}

impl<B: Backend> Scorer<'_, B> {
    /// Query heads that share one key list.
    fn group(&self) -> usize {
        match self {
            Scorer::Signatures { group, .. } => *group,
            _ => 1,
        }
    }

    /// Elements per query head that the kernel path holds at once for a query: the scores
    /// of every key for exact scorers, of every page (and the chosen keys) for page
    /// scorers, the chosen keys otherwise.
    fn kernel_elements_per_query(&self, kv_len: usize, heavy: usize) -> usize {
        match self {
            Scorer::Exact(_) => kv_len,
            Scorer::Pages { page_size, .. } => kv_len.div_ceil(*page_size).max(heavy),
            Scorer::None | Scorer::Signatures { .. } => heavy.max(1),
        }
    }

    /// The heavy keys of queries `start..start + len` at `positions` (the reference path).
    fn heavy_selection(
        &self,
        start: usize,
        len: usize,
        positions: &QueryPositions,
        budget: &SparseBudget,
        heavy: usize,
    ) -> AttnResult<Option<KeySelection<B>>> {
        let (sink, window) = (budget.sink, budget.window);
        match self {
            Scorer::None => Ok(None),
            Scorer::Exact(score) => top_k_selection(score(start, len)?, positions, sink, window, heavy),
            Scorer::Signatures { query, key, group } => {
                let scores =
                    ranked_group_matching_bits(query.clone().narrow(2, start, len), key.clone(), *group);
                let shared = top_k_selection(scores, positions, sink, window, heavy)?;
                Ok(shared.map(|s| s.per_query_head(*group)))
            }
            Scorer::Pages { score, page_size } => {
                let pages = heavy.div_ceil(*page_size);
                Ok(Some(page_selection(score(start, len)?, positions, *page_size, sink, window, pages)?))
            }
        }
    }

    /// The heavy keys of queries `start..start + len` by the kernels (i32 `[batch, heads,
    /// len, n]`, `-1` for none), `None` when they do not apply.
    fn kernel_heavy(
        &self,
        start: usize,
        len: usize,
        positions: &QueryPositions,
        at: KernelWindow,
        heavy: usize,
        device: &B::Device,
    ) -> AttnResult<Option<Tensor<B, 4, Int>>> {
        Ok(match self {
            Scorer::None => None,
            Scorer::Exact(score) => {
                let scores = profile::span::<B, _>("score", device, || score(start, len))?;
                profile::span::<B, _>("top-k", device, || kernels::top_k_by_scores(&scores, at, heavy))
            }
            Scorer::Signatures { query, key, group } => {
                kernels::top_k_by_signatures(&query.clone().narrow(2, start, len), key, *group, at, heavy)
            }
            Scorer::Pages { score, page_size } => {
                let scores =
                    candidate_page_scores(score(start, len)?, positions, *page_size, at.sink, at.window);
                let [b, h, t, pages] = scores.dims();
                // One row per query, every page visible: the candidates are already masked.
                let every_page = KernelWindow { first_position: pages - 1, sink: 0, window: 0 };
                let wanted = heavy.div_ceil(*page_size).min(pages);
                kernels::top_k_by_scores(&scores.reshape([b, h * t, 1, pages]), every_page, wanted).map(
                    |best| {
                        page_keys(best.reshape([b, h, t, wanted]), positions, *page_size, at.sink, at.window)
                    },
                )
            }
        })
    }
}

/// Queries from which sink-and-window attention runs in the block kernel (tiles of
/// queries) rather than a key list per query (decode steps, which split the list instead).
const BLOCK_KERNEL_QUERIES: usize = 16;

/// Causal sparse attention of `q` over the whole cached `k`, `v`: per chunk of queries,
/// score the keys with `scorer`, select the budget's keys, attend to them. On a CubeCL
/// backend the selection and the attention run as kernels (see [`crate::kernels`]).
pub(crate) fn select_then_attend<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    budget: &SparseBudget,
    scale: Option<f64>,
    scorer: Scorer<'_, B>,
) -> AttnResult<AttnOutput<B>> {
    budget.validate()?;
    let shape = AttnShape::of(&q, &k, &v)?;
    let mut options = AttnOptions::causal();
    options.scale = scale;
    let positions = options.positions(&shape)?;
    let scale = options.scale_for(shape.head_dim);
    let heavy = if matches!(scorer, Scorer::None) { 0 } else { budget.heavy_count(shape.kv_len) };
    if budget.sink == 0 && budget.window == 0 && heavy == 0 {
        return Err(AttnError::Config("the budget selects no key: set sink, window or heavy".into()));
    }
    let use_kernels = kernels::kernels_active::<B>();
    if use_kernels && heavy == 0 && shape.query_len >= BLOCK_KERNEL_QUERIES {
        // Sink and window only: tiles of consecutive queries share most of their keys, so
        // the block kernel reads each key once per tile (on tensor cores where it can).
        let at = KernelWindow { first_position: positions.offset, sink: budget.sink, window: budget.window };
        let attended = profile::span::<B, _>("attend", &q.device(), || {
            kernels::block_sparse_attention(&q, &k, &v, None, at, scale)
        });
        if let Some(out) = attended {
            return Ok(out);
        }
    }
    let chunks = if use_kernels {
        // A kernel chunk holds its exact or page scores, or only its chosen keys (no key
        // lists of the budget, no gathered rows): chunks as large as that allows, since
        // each costs launches.
        let per_query =
            shape.batch * shape.query_heads * scorer.kernel_elements_per_query(shape.kv_len, heavy);
        query_chunks_within(shape.query_len, per_query, MAX_GPU_CHUNK_ELEMENTS)
    } else {
        vec![(0, shape.query_len)]
    };
    let mut parts = Vec::new();
    for (start, len) in chunks {
        if use_kernels {
            let q_chunk = q.clone().narrow(2, start, len);
            let chunk_positions = positions.shifted(start);
            let at = KernelWindow {
                first_position: positions.offset + start,
                sink: budget.sink,
                window: budget.window,
            };
            let chosen = if heavy == 0 {
                None
            } else {
                profile::span::<B, _>("select", &q.device(), || {
                    scorer.kernel_heavy(start, len, &chunk_positions, at, heavy, &q.device())
                })?
            };
            if heavy == 0 || chosen.is_some() {
                let group = scorer.group();
                let attended = profile::span::<B, _>("attend", &q.device(), || {
                    kernels::sparse_attention(&q_chunk, &k, &v, chosen.as_ref(), group, at, scale)
                });
                if let Some(out) = attended {
                    parts.push(out);
                    continue;
                }
            }
        }
        // The reference path, in chunks of its own bound (a kernel may have declined a
        // chunk sized for the kernels).
        let reference_per_query = shape.batch * shape.query_heads * shape.kv_len;
        for (sub_start, sub_len) in query_chunks(len, reference_per_query) {
            let (start, len) = (start + sub_start, sub_len);
            let chunk_positions = positions.shifted(start);
            let dims = [shape.batch, shape.query_heads, len];
            let chosen = scorer.heavy_selection(start, len, &chunk_positions, budget, heavy)?;
            let selection = budget_union(chosen, &chunk_positions, dims, budget, &q.device())?;
            let chunk_shape = AttnShape { query_len: len, ..shape };
            parts.push(gather_attention_unchecked(
                q.clone().narrow(2, start, len),
                k.clone(),
                v.clone(),
                &selection,
                &chunk_shape,
                scale,
            ));
        }
    }
    Ok(AttnOutput::cat(parts))
}
