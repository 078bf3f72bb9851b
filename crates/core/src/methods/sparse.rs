//! The select-then-attend pipeline that every top-k method runs.

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::attend::{gather_attention_unchecked, AttnOptions, AttnOutput};
use crate::error::{AttnError, AttnResult};
use crate::hash::ranked_matching_bits;
use crate::kernels::{self, KernelWindow};
use crate::select::{budget_selection, SparseBudget};
use crate::shape::AttnShape;

/// What ranks the keys outside the sink and the window.
pub(crate) enum Scorer<'a, B: Backend> {
    /// Nothing: sink + window only.
    None,
    /// `score(query_start, query_len)` gives float scores
    /// `[batch, query_heads, query_len, kv_len]` of those queries.
    Exact(&'a dyn Fn(usize, usize) -> AttnResult<Tensor<B, 4>>),
    /// Matching bits of query signatures `[batch, query_heads, query_len, words]` against key
    /// signatures `[batch, signature_heads, kv_len, words]`; ties go to the earlier key.
    Signatures { query: Tensor<B, 4, Int>, key: Tensor<B, 4, Int> },
}

impl<B: Backend> Scorer<'_, B> {
    /// Float scores of queries `start..start + len` (the reference path).
    fn scores(&self, start: usize, len: usize) -> AttnResult<Option<Tensor<B, 4>>> {
        Ok(match self {
            Scorer::None => None,
            Scorer::Exact(score) => Some(score(start, len)?),
            Scorer::Signatures { query, key } => {
                Some(ranked_matching_bits(query.clone().narrow(2, start, len), key.clone()))
            }
        })
    }

    /// The top `k` keys of queries `start..start + len` by the kernels, `None` when they do
    /// not apply.
    fn kernel_top_k(
        &self,
        start: usize,
        len: usize,
        at: KernelWindow,
        k: usize,
    ) -> AttnResult<Option<Tensor<B, 4, Int>>> {
        Ok(match self {
            Scorer::None => None,
            Scorer::Exact(score) => kernels::top_k_by_scores(&score(start, len)?, at, k),
            Scorer::Signatures { query, key } => {
                kernels::top_k_by_signatures(&query.clone().narrow(2, start, len), key, 1, at, k)
            }
        })
    }
}

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
    let per_query = shape.batch * shape.query_heads * shape.kv_len;
    let use_kernels = kernels::kernels_active::<B>();
    let mut parts = Vec::new();
    for (start, len) in crate::attend::query_chunks(shape.query_len, per_query) {
        let q_chunk = q.clone().narrow(2, start, len);
        if use_kernels {
            let at = KernelWindow {
                first_position: positions.offset + start,
                sink: budget.sink,
                window: budget.window,
            };
            let chosen = if heavy == 0 { None } else { scorer.kernel_top_k(start, len, at, heavy)? };
            if heavy == 0 || chosen.is_some() {
                if let Some(out) = kernels::sparse_attention(&q_chunk, &k, &v, chosen.as_ref(), 1, at, scale)
                {
                    parts.push(out);
                    continue;
                }
            }
        }
        let chunk_positions = positions.shifted(start);
        let scores = scorer.scores(start, len)?;
        let dims = [shape.batch, shape.query_heads, len];
        let selection = budget_selection(scores, &chunk_positions, dims, budget, &q.device())?;
        let chunk_shape = AttnShape { query_len: len, ..shape };
        parts.push(gather_attention_unchecked(
            q_chunk,
            k.clone(),
            v.clone(),
            &selection,
            &chunk_shape,
            scale,
        ));
    }
    Ok(AttnOutput::cat(parts))
}
