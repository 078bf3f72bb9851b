//! The online softmax and the outputs every attention kernel shares.
//!
//! Logits arrive a tile at a time. Each query keeps a running maximum `m` and sum `s` of
//! `exp(logit - m)`; when a tile raises the maximum, what was summed and accumulated so far
//! is multiplied by [`rescale`]. At the end the output is the accumulator over `s`
//! ([`normalized`]) and the log-sum-exp is `m + ln s` ([`log_sum_exp`]), so that partial
//! results over disjoint keys merge exactly.

use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime};
use cubecl::prelude::*;

/// The logit of a masked key (and the running maximum before any key): far below any real
/// logit, yet finite, since WGSL has no infinity literals.
#[cube]
pub fn no_logit() -> f32 {
    f32::new(-1.0e30)
}

/// Whether `logit` belongs to a real key (not [`no_logit`]).
#[cube]
pub fn is_real(logit: f32) -> bool {
    logit > f32::new(-1.0e29)
}

/// The factor that moves sums and accumulators kept under `old_max` to `new_max`.
#[cube]
pub fn rescale(old_max: f32, new_max: f32) -> f32 {
    (old_max - new_max).exp()
}

/// The unnormalised weight of `logit` under the running maximum; 0 for a masked key.
#[cube]
pub fn weight(logit: f32, running_max: f32) -> f32 {
    let mut p = 0.0f32;
    if is_real(logit) {
        p = (logit - running_max).exp();
    }
    p
}

/// The output value from an accumulator and the query's sum; 0 when it saw no key.
#[cube]
pub fn normalized(acc: f32, sum: f32) -> f32 {
    let mut out = 0.0f32;
    if sum > 0.0f32 {
        out = acc / sum;
    }
    out
}

/// The log-sum-exp of the query's logits (`-inf` when it saw no key).
#[cube]
pub fn log_sum_exp(running_max: f32, sum: f32) -> f32 {
    running_max + sum.ln()
}

/// Output `[batch, query_heads, query_len, value_dim]` and lse `[batch, query_heads,
/// query_len]` (`-inf` where a query has no key), both in the dtype of `q`.
#[derive(Debug, Clone)]
pub struct SparseAttentionOutput<R: CubeRuntime> {
    /// Attention output.
    pub output: CubeTensor<R>,
    /// Log-sum-exp of the scaled logits of each query.
    pub lse: CubeTensor<R>,
}

impl<R: CubeRuntime> SparseAttentionOutput<R> {
    /// Uninitialised outputs for queries `q: [batch, query_heads, query_len, head_dim]` and
    /// values of `value_dim`, in the dtype of `q`, on its device.
    pub fn empty_for(q: &CubeTensor<R>, value_dim: usize) -> Self {
        let [batch, query_heads, query_len, _] = q.shape().dims::<4>();
        let alloc =
            |shape: Shape| empty_device_contiguous_dtype(q.client.clone(), q.device.clone(), shape, q.dtype);
        Self {
            output: alloc(Shape::new([batch, query_heads, query_len, value_dim])),
            lse: alloc(Shape::new([batch, query_heads, query_len])),
        }
    }
}
