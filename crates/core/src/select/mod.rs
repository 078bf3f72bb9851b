//! Select: which keys each query attends to, as index sets.

mod budget;
mod hip_mask;
mod key_selection;
mod lsh;
mod pages;
mod scores;
mod sink_window;
mod top_k;

pub use budget::SparseBudget;
pub use hip_mask::{hip_mask, HipMask, HipMaskParams, Representative};
pub(crate) use hip_mask::{int_tensor, kv_row_starts};
pub use key_selection::KeySelection;
pub use lsh::{gray_position, gray_positions, lsh_buckets, stable_order, stable_order_below};
pub(crate) use pages::candidate_page_scores;
pub use pages::{page_selection, PageBounds};
pub use scores::exact_scores;
pub use sink_window::{sink_selection, window_selection};
pub use top_k::top_k_selection;

use burn::tensor::{backend::Backend, Tensor};

use crate::error::AttnResult;
use crate::positions::QueryPositions;

/// Sink + window + the top `heavy` keys by `scores`, merged without duplicates.
///
/// - `scores`: `[batch, query_heads, query_len, kv_len]`, or `None` for sink + window only
/// - returns a selection `[batch, query_heads, query_len, n]`, keys sorted per query
pub fn budget_selection<B: Backend>(
    scores: Option<Tensor<B, 4>>,
    positions: &QueryPositions,
    dims: [usize; 3],
    budget: &SparseBudget,
    device: &B::Device,
) -> AttnResult<KeySelection<B>> {
    let heavy = match scores {
        Some(scores) => {
            let count = budget.heavy_count(positions.kv_len);
            top_k_selection(scores, positions, budget.sink, budget.window, count)?
        }
        None => None,
    };
    budget_union(heavy, positions, dims, budget, device)
}

/// Sink + window + the given `heavy` keys (chosen outside sink and window), merged without
/// duplicates.
///
/// - `heavy`: a selection `[batch, query_heads, query_len, n]`, or `None`
/// - returns a selection `[batch, query_heads, query_len, n']`, keys sorted per query
pub fn budget_union<B: Backend>(
    heavy: Option<KeySelection<B>>,
    positions: &QueryPositions,
    dims: [usize; 3],
    budget: &SparseBudget,
    device: &B::Device,
) -> AttnResult<KeySelection<B>> {
    let mut sets: Vec<KeySelection<B>> = Vec::with_capacity(3);
    sets.extend(sink_selection(positions, dims, budget.sink, device));
    sets.extend(window_selection(positions, dims, budget.sink, budget.window, device));
    sets.extend(heavy);
    if sets.is_empty() {
        return Err(crate::error::AttnError::Config(
            "the budget selects no key: set sink, window or heavy".into(),
        ));
    }
    KeySelection::union(sets, positions.kv_len)
}
