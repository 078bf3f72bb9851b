//! The interface every attention method shares.

use burn::tensor::{backend::Backend, Tensor};

use crate::attend::AttnOutput;
use crate::cache::KvCache;
use crate::error::{AttnError, AttnResult};

/// Causal self-attention with a KV cache: the calls a model makes, whatever the method.
///
/// Shapes: `q: [batch, query_heads, new_len, head_dim]`, `k: [batch, kv_heads, new_len,
/// head_dim]`, `v: [batch, kv_heads, new_len, value_dim]`, where `new_len` is the number of
/// new tokens (the prompt for prefill, usually 1 for decode). The output is
/// `[batch, query_heads, new_len, value_dim]` with lse `[batch, query_heads, new_len]`.
pub trait AttentionMethod<B: Backend> {
    /// Appends `k`, `v` (and whatever the method keeps per token) to `cache`, then attends
    /// causally with `q` at the last `new_len` positions of the cache.
    fn forward_cached(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>>;

    /// Starts a sequence: like [`forward_cached`](Self::forward_cached), but errors when
    /// `cache` already holds tokens (of an earlier sequence, most likely).
    fn prefill(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        if !cache.is_empty() {
            return Err(AttnError::Cache(format!(
                "prefill needs an empty cache, this one holds {} tokens (call clear())",
                cache.len()
            )));
        }
        self.forward_cached(q, k, v, cache)
    }

    /// One decode step (or a few tokens): appends to a cache filled by
    /// [`prefill`](Self::prefill) and attends.
    fn decode(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        self.forward_cached(q, k, v, cache)
    }

    /// Causal attention over `k`, `v` without keeping a cache (training, scoring).
    fn forward(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> AttnResult<AttnOutput<B>> {
        self.forward_cached(q, k, v, &mut KvCache::new())
    }
}

/// Checks the new tokens, appends them to `cache` for method `owner` and returns all cached
/// keys and values.
pub(crate) fn append_new_tokens<B: Backend>(
    owner: &'static str,
    q: &Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    cache: &mut KvCache<B>,
) -> AttnResult<(Tensor<B, 4>, Tensor<B, 4>)> {
    check_new_tokens(q, &k, &v)?;
    crate::profile::span::<B, _>("cache append", &q.device(), || cache.append(owner, k, v))
}

/// Checks that `q`, `k` and `v` describe the same `new_len` tokens.
pub(crate) fn check_new_tokens<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
) -> AttnResult<()> {
    crate::shape::AttnShape::of(q, k, v)?;
    let (ql, kl) = (q.dims()[2], k.dims()[2]);
    if ql != kl {
        return Err(AttnError::Shape {
            name: "k",
            expected: format!("{ql} new tokens, like q"),
            got: k.dims().to_vec(),
        });
    }
    Ok(())
}
