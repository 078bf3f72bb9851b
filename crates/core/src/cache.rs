//! A KV cache for decoding, with optional per-token key signatures.

use burn::tensor::{backend::Backend, Bool, Int, Tensor};

use crate::error::{AttnError, AttnResult};

/// Keys and values of the tokens seen so far, and, for HashAttention, their packed key
/// signatures, so that decoding never recomputes them.
///
/// - keys: `[batch, kv_heads, len, head_dim]`
/// - values: `[batch, kv_heads, len, value_dim]`
/// - key signatures: `[batch, key_heads, len, words]`
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    keys: Option<Tensor<B, 4>>,
    values: Option<Tensor<B, 4>>,
    key_signatures: Option<Tensor<B, 4, Int>>,
    mask: Option<CachedMask<B>>,
}

/// Keys chosen for the last query by a method that reuses its choice for a few decode
/// steps (HiP's mask, refreshed every `refresh_interval` steps).
#[derive(Debug, Clone)]
pub struct CachedMask<B: Backend> {
    /// Chosen keys `[batch, query_heads, 1, n]`, all before `range_end`.
    pub keys: Tensor<B, 4, Int>,
    /// Which entries are real, `[batch, query_heads, 1, n]`.
    pub valid: Tensor<B, 4, Bool>,
    /// Keys from here on were left to the window when the mask was made.
    pub range_end: usize,
    /// Tokens in the cache when the mask was made.
    pub made_at: usize,
}

impl<B: Backend> Default for KvCache<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> KvCache<B> {
    /// An empty cache.
    pub fn new() -> Self {
        Self { keys: None, values: None, key_signatures: None, mask: None }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Cached keys `[batch, kv_heads, len, head_dim]`, if any.
    pub fn keys(&self) -> Option<&Tensor<B, 4>> {
        self.keys.as_ref()
    }

    /// Cached values `[batch, kv_heads, len, value_dim]`, if any.
    pub fn values(&self) -> Option<&Tensor<B, 4>> {
        self.values.as_ref()
    }

    /// Cached key signatures `[batch, key_heads, len, words]`, if any.
    pub fn key_signatures(&self) -> Option<&Tensor<B, 4, Int>> {
        self.key_signatures.as_ref()
    }

    /// The mask kept between decode steps, if any.
    pub fn mask(&self) -> Option<&CachedMask<B>> {
        self.mask.as_ref()
    }

    /// Keeps `mask` for the next decode steps (replacing any earlier one).
    pub fn set_mask(&mut self, mask: Option<CachedMask<B>>) {
        self.mask = mask;
    }

    /// Appends `new_len` tokens: keys `[batch, kv_heads, new_len, head_dim]`, values
    /// `[batch, kv_heads, new_len, value_dim]` and, when the cache keeps them, signatures
    /// `[batch, key_heads, new_len, words]`.
    ///
    /// Errors when the sizes differ from what the cache holds, or when signatures are
    /// given to a cache that has keys without them (or the other way round).
    pub fn append(
        &mut self,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
        key_signatures: Option<Tensor<B, 4, Int>>,
    ) -> AttnResult<()> {
        let [kb, kh, kt, _] = keys.dims();
        let [vb, vh, vt, _] = values.dims();
        if (vb, vh, vt) != (kb, kh, kt) {
            return Err(shape_error("values", format!("[{kb}, {kh}, {kt}, value_dim]"), values.dims()));
        }
        if let Some(sig) = &key_signatures {
            let [sb, _, st, _] = sig.dims();
            if (sb, st) != (kb, kt) {
                return Err(shape_error(
                    "key signatures",
                    format!("[{kb}, key_heads, {kt}, words]"),
                    sig.dims(),
                ));
            }
        }
        if !self.is_empty() && self.key_signatures.is_some() != key_signatures.is_some() {
            return Err(AttnError::Cache(
                "a cache holds signatures for every token or for none; use one method per cache".into(),
            ));
        }
        self.keys = Some(extend(self.keys.take(), keys, "keys")?);
        self.values = Some(extend(self.values.take(), values, "values")?);
        self.key_signatures = match (self.key_signatures.take(), key_signatures) {
            (old, Some(new)) => Some(extend(old, new, "key signatures")?),
            (_, None) => None,
        };
        Ok(())
    }
}

fn extend<B: Backend, K: burn::tensor::BasicOps<B>>(
    old: Option<Tensor<B, 4, K>>,
    new: Tensor<B, 4, K>,
    name: &'static str,
) -> AttnResult<Tensor<B, 4, K>> {
    match old {
        None => Ok(new),
        Some(old) => {
            let [b, h, _, d] = old.dims();
            let [nb, nh, _, nd] = new.dims();
            if (nb, nh, nd) != (b, h, d) {
                return Err(shape_error(
                    name,
                    format!("[{b}, {h}, new_len, {d}] like the cache"),
                    new.dims(),
                ));
            }
            Ok(Tensor::cat(vec![old, new], 2))
        }
    }
}

fn shape_error(name: &'static str, expected: String, got: [usize; 4]) -> AttnError {
    AttnError::Shape { name, expected, got: got.to_vec() }
}
