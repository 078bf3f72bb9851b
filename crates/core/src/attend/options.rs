//! Options shared by every attention call: causality, query positions, scale.

use crate::error::{AttnError, AttnResult};
use crate::positions::QueryPositions;
use crate::shape::AttnShape;

/// How queries see keys.
///
/// With `causal`, query `i` sits at position `offset + i` of the keys and sees keys
/// `0..=offset + i`. The default offset is `kv_len - query_len`: the queries are the last
/// positions of the context, which is prefill when both are equal and decoding with a cache
/// otherwise. Without `causal`, every query sees every key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnOptions {
    /// Mask future keys.
    pub causal: bool,
    /// Scale of the logits; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
    /// Position of the first query among the keys; `None` means `kv_len - query_len`.
    pub query_offset: Option<usize>,
}

impl Default for AttnOptions {
    fn default() -> Self {
        Self::causal()
    }
}

impl AttnOptions {
    /// Causal attention with the queries at the last positions of the context.
    pub fn causal() -> Self {
        Self { causal: true, scale: None, query_offset: None }
    }

    /// Every query sees every key.
    pub fn non_causal() -> Self {
        Self { causal: false, scale: None, query_offset: None }
    }

    /// Sets the logit scale.
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = Some(scale);
        self
    }

    /// Sets the position of the first query.
    pub fn with_query_offset(mut self, offset: usize) -> Self {
        self.query_offset = Some(offset);
        self
    }

    /// The logit scale for queries of dimension `head_dim`.
    pub fn scale_for(&self, head_dim: usize) -> f64 {
        self.scale.unwrap_or(1.0 / (head_dim as f64).sqrt())
    }

    /// Resolves where queries sit among the keys, checking that they fit (and that the scale
    /// is finite).
    pub fn positions(&self, shape: &AttnShape) -> AttnResult<QueryPositions> {
        if let Some(scale) = self.scale.filter(|s| !s.is_finite()) {
            return Err(AttnError::Config(format!("the logit scale must be finite, got {scale}")));
        }
        let (q, kv) = (shape.query_len, shape.kv_len);
        if !self.causal {
            return Ok(QueryPositions { offset: 0, causal: false, kv_len: kv });
        }
        let offset = match self.query_offset {
            Some(offset) => offset,
            None => {
                kv.checked_sub(q).ok_or(AttnError::QueriesPastContext { offset: 0, end: q, context: kv })?
            }
        };
        if offset + q > kv {
            return Err(AttnError::QueriesPastContext { offset, end: offset + q, context: kv });
        }
        Ok(QueryPositions { offset, causal: true, kv_len: kv })
    }
}
