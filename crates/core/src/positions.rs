//! Where queries sit among the keys, and which keys each query may see: shared by
//! selection (which keys to choose) and attention (which keys to mask).

use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::error::{AttnError, AttnResult};

/// Where each query sits among the keys, resolved from [`AttnOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryPositions {
    /// Position of query 0 (causal only).
    pub offset: usize,
    /// Whether future keys are hidden.
    pub causal: bool,
    /// Number of keys.
    pub kv_len: usize,
}

impl QueryPositions {
    /// The last key that query `i` may see.
    pub fn last_visible(&self, i: usize) -> usize {
        if self.causal {
            self.offset + i
        } else {
            self.kv_len - 1
        }
    }

    /// Checks that `query_len` queries fit a context of `kv_len` keys at these positions.
    pub fn check(&self, query_len: usize, kv_len: usize) -> AttnResult<()> {
        if self.kv_len != kv_len {
            return Err(AttnError::Shape {
                name: "positions",
                expected: format!("kv_len {kv_len} (the keys given)"),
                got: vec![self.kv_len],
            });
        }
        let end = self.offset + query_len;
        if self.causal && end > kv_len {
            return Err(AttnError::QueriesPastContext { offset: self.offset, end, context: kv_len });
        }
        Ok(())
    }

    /// The same positions for the queries `start..` of this call.
    pub fn shifted(&self, start: usize) -> Self {
        Self { offset: self.offset + start, ..*self }
    }
}

/// Last visible key of each query `0..len`, repeated for `groups` grouped heads:
/// `[groups * len]` (see `group_heads`).
pub(crate) fn last_visible_keys<B: Backend>(
    positions: &QueryPositions,
    len: usize,
    groups: usize,
    device: &B::Device,
) -> Tensor<B, 1, Int> {
    let per_query = if positions.causal {
        Tensor::<B, 1, Int>::arange(0..len as i64, device).add_scalar(positions.offset as i64)
    } else {
        Tensor::<B, 1, Int>::full([len], positions.kv_len as i64 - 1, device)
    };
    per_query.reshape([1, len]).expand([groups, len]).reshape([groups * len])
}

/// `[rows, kv_len]` mask, true where key `j` is in the future of the row's query.
pub(crate) fn future_mask<B: Backend>(last_visible: Tensor<B, 1, Int>, kv_len: usize) -> Tensor<B, 2, Bool> {
    let rows = last_visible.dims()[0];
    let device = last_visible.device();
    let keys =
        Tensor::<B, 1, Int>::arange(0..kv_len as i64, &device).reshape([1, kv_len]).expand([rows, kv_len]);
    keys.greater(last_visible.reshape([rows, 1]).expand([rows, kv_len]))
}
