//! Exact scores: the oracle every top-k method approximates.

use burn::tensor::{backend::Backend, Tensor};

use crate::shape::{group_heads, ungroup_heads};

/// Scaled logits `q . k * scale` of every query against every key.
///
/// - `q`: `[batch, query_heads, query_len, head_dim]`
/// - `k`: `[batch, kv_heads, kv_len, head_dim]`
/// - returns `[batch, query_heads, query_len, kv_len]`
pub fn exact_scores<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, scale: f64) -> Tensor<B, 4> {
    let [_, query_heads, _, _] = q.dims();
    let kv_heads = k.dims()[1];
    // Scaling the queries, not the logits: one pass over `q` instead of over the
    // `[.., query_len, kv_len]` logits, the largest tensor of a prefill's selection.
    let logits = group_heads(q.mul_scalar(scale), kv_heads).matmul(k.swap_dims(2, 3));
    ungroup_heads(logits, query_heads)
}
