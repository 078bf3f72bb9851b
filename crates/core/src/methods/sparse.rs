//! The select-then-attend pipeline that every top-k method runs on the reference path.

use burn::tensor::{backend::Backend, Tensor};

use crate::attend::{gather_attention_unchecked, AttnOptions, AttnOutput};
use crate::error::AttnResult;
use crate::select::{budget_selection, SparseBudget};
use crate::shape::AttnShape;

/// Causal sparse attention of `q` over the whole cached `k`, `v`: per chunk of queries,
/// score the keys with `scorer` (none for sink + window only), select the budget's keys,
/// attend to them.
///
/// `scorer(query_start, query_len)` returns scores `[batch, query_heads, query_len, kv_len]`
/// of those queries.
pub(crate) fn select_then_attend<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    budget: &SparseBudget,
    scale: Option<f64>,
    scorer: Option<&dyn Fn(usize, usize) -> AttnResult<Tensor<B, 4>>>,
) -> AttnResult<AttnOutput<B>> {
    budget.validate()?;
    let shape = AttnShape::of(&q, &k, &v)?;
    let mut options = AttnOptions::causal();
    options.scale = scale;
    let positions = options.positions(&shape)?;
    let scale = options.scale_for(shape.head_dim);
    let per_query = shape.batch * shape.query_heads * shape.kv_len;
    let mut parts = Vec::new();
    for (start, len) in crate::attend::query_chunks(shape.query_len, per_query) {
        let chunk_positions = positions.shifted(start);
        let scores = scorer.map(|score| score(start, len)).transpose()?;
        let dims = [shape.batch, shape.query_heads, len];
        let selection = budget_selection(scores, &chunk_positions, dims, budget, &q.device())?;
        let chunk_shape = AttnShape { query_len: len, ..shape };
        let q = q.clone().narrow(2, start, len);
        parts.push(gather_attention_unchecked(q, k.clone(), v.clone(), &selection, &chunk_shape, scale));
    }
    Ok(AttnOutput::cat(parts))
}
