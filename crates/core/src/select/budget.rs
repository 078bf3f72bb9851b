//! Sparse budgets: sink + window + heavy keys per query.

use serde::{Deserialize, Serialize};

use crate::error::{AttnError, AttnResult};

/// How many keys a query attends to: the first `sink`, the last `window`, and `heavy` more
/// chosen by a score.
///
/// `heavy` is a count when greater than 1, else a fraction of the context.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SparseBudget {
    /// Keys at the start of the context every query sees.
    pub sink: usize,
    /// Most recent keys every query sees (its own position included).
    pub window: usize,
    /// Extra keys chosen by score: a count when > 1, else a fraction of the context.
    pub heavy: f64,
}

impl SparseBudget {
    /// Checks the budget: `heavy` finite and non-negative, and whole when it is a count.
    pub fn validate(&self) -> AttnResult<()> {
        let h = self.heavy;
        if !h.is_finite() || h < 0.0 || (h > 1.0 && h.fract() != 0.0) {
            return Err(AttnError::Config(format!(
                "heavy must be a whole count > 1 or a fraction in [0, 1], got {h}"
            )));
        }
        Ok(())
    }

    /// Heavy keys for a context of `kv_len` keys, at most the context.
    pub fn heavy_count(&self, kv_len: usize) -> usize {
        let count =
            if self.heavy > 1.0 { self.heavy as usize } else { (self.heavy * kv_len as f64).ceil() as usize };
        count.min(kv_len)
    }

    /// Whether the budget covers every key of a context of `kv_len` keys for every query
    /// (then the method is exact).
    pub fn covers(&self, kv_len: usize) -> bool {
        self.sink + self.window + self.heavy_count(kv_len) >= kv_len
    }
}
