//! Equal-cost comparisons: how many keys every method may attend to, and the head layout
//! that some methods' configs need.

use serde::Serialize;

use crate::error::{AttnError, AttnResult};

/// The attention heads of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeadLayout {
    /// Dimension of queries and keys.
    pub head_dim: usize,
    /// Query heads.
    pub query_heads: usize,
    /// Key/value heads (a divisor of `query_heads`).
    pub kv_heads: usize,
}

/// Keys per query of the sparse methods at a sparsity: `total = context / sparsity`, of
/// which `sink` first keys and `window` recent keys are fixed and `heavy` are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeyBudget {
    /// All keys a query attends to.
    pub total: usize,
    /// Keys at the start.
    pub sink: usize,
    /// Most recent keys.
    pub window: usize,
    /// Keys chosen by the method.
    pub heavy: usize,
}

impl KeyBudget {
    /// Sink keys of every budget.
    pub const SINK: usize = 16;
    /// Window keys of every budget.
    pub const WINDOW: usize = 64;
    /// The smallest budget: sink, window and 16 chosen keys.
    pub const MIN_TOTAL: usize = Self::SINK + Self::WINDOW + 16;

    /// The budget for `context` keys at `sparsity` (8.0 attends to an eighth), at least
    /// [`KeyBudget::MIN_TOTAL`]. Errors when `sparsity < 1`.
    pub fn new(context: usize, sparsity: f64) -> AttnResult<Self> {
        if !(sparsity >= 1.0 && sparsity.is_finite()) {
            return Err(AttnError::Config(format!(
                "sparsity is the factor of keys skipped (8 attends to 1/8 of them) and must be >= 1, got {sparsity}"
            )));
        }
        let total = ((context as f64 / sparsity).round() as usize).max(Self::MIN_TOTAL);
        Ok(Self { total, sink: Self::SINK, window: Self::WINDOW, heavy: total - Self::SINK - Self::WINDOW })
    }
}
