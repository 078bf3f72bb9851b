//! Shape checks shared by every attention call.

use burn::tensor::{backend::Backend, Tensor};

use crate::error::{AttnError, AttnResult};

/// The sizes of one attention call, checked once at its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    /// Batch size.
    pub batch: usize,
    /// Query heads.
    pub query_heads: usize,
    /// Key/value heads; divides `query_heads`.
    pub kv_heads: usize,
    /// Queries per sequence.
    pub query_len: usize,
    /// Keys per sequence.
    pub kv_len: usize,
    /// Dimension of queries and keys.
    pub head_dim: usize,
    /// Dimension of values.
    pub value_dim: usize,
}

impl AttnShape {
    /// Checks `q: [batch, query_heads, query_len, head_dim]`,
    /// `k: [batch, kv_heads, kv_len, head_dim]`, `v: [batch, kv_heads, kv_len, value_dim]`.
    pub fn of<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>) -> AttnResult<Self> {
        let [batch, query_heads, query_len, head_dim] = q.dims();
        let [kb, kv_heads, kv_len, kd] = k.dims();
        let [vb, vh, vl, value_dim] = v.dims();
        if kb != batch || kd != head_dim {
            return Err(AttnError::Shape {
                name: "k",
                expected: format!("[{batch}, kv_heads, kv_len, {head_dim}] (batch and head_dim of q)"),
                got: k.dims().to_vec(),
            });
        }
        if vb != batch || vh != kv_heads || vl != kv_len {
            return Err(AttnError::Shape {
                name: "v",
                expected: format!("[{batch}, {kv_heads}, {kv_len}, value_dim] (batch, heads, len of k)"),
                got: v.dims().to_vec(),
            });
        }
        if kv_heads == 0 || !query_heads.is_multiple_of(kv_heads) {
            return Err(AttnError::HeadsNotDivisible { query_heads, kv_heads });
        }
        if kv_len == 0 {
            return Err(AttnError::EmptyContext);
        }
        if head_dim == 0 || value_dim == 0 || batch == 0 || query_len == 0 {
            return Err(AttnError::Shape {
                name: "q",
                expected: "non-empty batch, heads, queries and head_dim".into(),
                got: q.dims().to_vec(),
            });
        }
        Ok(Self { batch, query_heads, kv_heads, query_len, kv_len, head_dim, value_dim })
    }

    /// Query heads per key/value head.
    pub fn groups(&self) -> usize {
        self.query_heads / self.kv_heads
    }
}

/// `[batch, query_heads, len, dim] -> [batch, kv_heads, groups * len, dim]`: the query heads
/// that share a key/value head become rows of one matrix, so K and V are never copied.
///
/// Query head `h` reads key/value head `h / groups` (the layout of Llama-style GQA).
pub(crate) fn group_heads<B: Backend, K: burn::tensor::BasicOps<B>>(
    x: Tensor<B, 4, K>,
    kv_heads: usize,
) -> Tensor<B, 4, K> {
    let [b, h, t, d] = x.dims();
    x.reshape([b, kv_heads, (h / kv_heads) * t, d])
}

/// Inverse of [`group_heads`].
pub(crate) fn ungroup_heads<B: Backend, K: burn::tensor::BasicOps<B>>(
    x: Tensor<B, 4, K>,
    query_heads: usize,
) -> Tensor<B, 4, K> {
    let [b, hkv, rows, d] = x.dims();
    x.reshape([b, query_heads, rows * hkv / query_heads, d])
}
