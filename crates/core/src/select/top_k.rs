//! Top-k of a score over the keys that neither the sink nor the window covers.

use burn::tensor::{backend::Backend, Int, Tensor};

use super::key_selection::KeySelection;
use crate::error::{AttnError, AttnResult};
use crate::positions::QueryPositions;

/// The `k` highest-scoring keys of each query among the keys in `sink..=last - window`
/// (causal) that sink and window leave out.
///
/// - `scores`: `[batch, heads, query_len, kv_len]`; higher is better. NaN scores count as
///   the lowest, so such keys are never chosen.
/// - returns a selection of width `k`; when a query has fewer than `k` candidates, the
///   missing entries are padding.
///
/// Errors when `k` exceeds the context. Returns `None` for `k = 0`.
pub fn top_k_selection<B: Backend>(
    scores: Tensor<B, 4>,
    positions: &QueryPositions,
    sink: usize,
    window: usize,
    k: usize,
) -> AttnResult<Option<KeySelection<B>>> {
    let [batch, heads, query_len, kv_len] = scores.dims();
    positions.check(query_len, kv_len)?;
    if k > kv_len {
        return Err(AttnError::BudgetExceedsContext { budget: k, context: kv_len });
    }
    if k == 0 {
        return Ok(None);
    }
    let device = scores.device();
    let last = crate::positions::last_visible_keys::<B>(positions, query_len, 1, &device)
        .reshape([query_len, 1])
        .expand([query_len, kv_len]);
    let keys = Tensor::<B, 1, Int>::arange(0..kv_len as i64, &device)
        .reshape([1, kv_len])
        .expand([query_len, kv_len]);
    let excluded = keys
        .clone()
        .lower_elem(sink as i64)
        .bool_or(keys.greater(last.sub_scalar(window as i64)))
        .reshape([1, 1, query_len, kv_len])
        .expand([batch, heads, query_len, kv_len]);
    let scores = scores.clone().mask_fill(scores.is_nan(), f32::NEG_INFINITY);
    let (values, indices) = scores.mask_fill(excluded, f32::NEG_INFINITY).topk_with_indices(k, 3);
    let valid = values.not_equal_elem(f32::NEG_INFINITY);
    Ok(Some(KeySelection { indices, valid }))
}
