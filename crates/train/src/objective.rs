//! What training optimises and measures: the relaxed score `tanh(phi_q) . tanh(phi_k)`
//! through a sigmoid with class-weighted binary cross-entropy, and recall of the true top-k
//! keys among the keys the hard signatures rank first.

use burn::tensor::{activation::softplus, backend::Backend, Bool, Tensor};
use burn_sparse_attn_core::{AttnResult, HashMapping};

use crate::labels::expand_heads;

/// Relaxed scores `[1, heads, count, end]`: `tanh(phi_q) . tanh(phi_k)` of queries
/// `q: [1, heads, count, d]` and keys `k: [1, kv_heads, end, d]` (the sigmoid's argument).
pub fn relaxed_scores<B: Backend>(
    mapping: &HashMapping<B>,
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
) -> AttnResult<Tensor<B, 4>> {
    let heads = q.dims()[1];
    let phi_q = mapping.query_codes(q).tanh();
    let phi_k = expand_heads(mapping.key_codes(k)?.tanh(), heads);
    Ok(phi_q.matmul(phi_k.transpose()))
}

/// Mean over eligible pairs of `-(w y log s(x) + (1 - y) log(1 - s(x)))`, `s` the sigmoid,
/// `w = pos_weight` (positives are rare: top-k of thousands).
pub fn weighted_bce<B: Backend>(
    scores: Tensor<B, 4>,
    labels: Tensor<B, 4, Bool>,
    eligible: Tensor<B, 4, Bool>,
    pos_weight: f64,
) -> Tensor<B, 1> {
    let dims = scores.dims();
    let eligible = eligible.expand(dims).float();
    let y = labels.float();
    // -log s(x) = softplus(-x); -log(1 - s(x)) = softplus(x).
    let positive = softplus(scores.clone().neg(), 1.0).mul_scalar(pos_weight) * y.clone();
    let negative = softplus(scores, 1.0) * y.neg().add_scalar(1.0);
    let total = ((positive + negative) * eligible.clone()).sum();
    total / eligible.sum().clamp_min(1.0)
}

/// Expected recall `[1]` of the labelled keys among each query's `budget` best eligible keys
/// by `hard: [1, heads, count, end]` (whole scores in `0..=bits`, e.g. matching bits), ties
/// at the cut shared in proportion (the expectation over random tie-breaking). Rows without
/// labels do not count.
pub fn recall_at_budget<B: Backend>(
    hard: Tensor<B, 4>,
    labels: Tensor<B, 4, Bool>,
    eligible: Tensor<B, 4, Bool>,
    bits: usize,
    budget: usize,
) -> Tensor<B, 1> {
    let dims = hard.dims();
    let eligible = eligible.expand(dims);
    let labels = labels.bool_and(eligible.clone());
    let pred = hard.mask_fill(eligible.bool_not(), -1.0);
    // cut = the largest t with at least `budget` eligible keys scoring >= t (-1 when none).
    let mut cut = pred.zeros_like().narrow(3, 0, 1).sub_scalar(1.0);
    for t in 0..=bits {
        let enough =
            pred.clone().greater_equal_elem(t as f64).float().sum_dim(3).greater_equal_elem(budget as f64);
        cut = cut + enough.float();
    }
    let cut = cut.expand(dims);
    let above = pred.clone().greater(cut.clone()).float();
    let at_cut = pred.equal(cut).float();
    let y = labels.float();
    let free = (above.clone().sum_dim(3).neg().add_scalar(budget as f64)).clamp_min(0.0);
    let share = (free / at_cut.clone().sum_dim(3).clamp_min(1.0)).clamp_max(1.0);
    let found = (above * y.clone()).sum_dim(3) + (at_cut * y.clone()).sum_dim(3) * share;
    let positives = y.sum_dim(3);
    let has = positives.clone().greater_elem(0.0).float();
    let recall = found / positives.clamp_min(1.0);
    (recall * has.clone()).sum() / has.sum().clamp_min(1.0)
}
