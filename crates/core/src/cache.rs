//! A KV cache for decoding, with one typed slot for what a method keeps beside keys and
//! values (HashAttention's key signatures, HiP's mask, Quest's page bounds).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};

use crate::error::{AttnError, AttnResult};

/// Keys and values of the tokens seen so far, which method appended them, and that
/// method's own state (see [`KvCache::state`]).
///
/// - keys: `[batch, kv_heads, len, head_dim]`
/// - values: `[batch, kv_heads, len, value_dim]`
#[derive(Clone)]
pub struct KvCache<B: Backend> {
    keys: Option<Tensor<B, 4>>,
    values: Option<Tensor<B, 4>>,
    owner: Option<&'static str>,
    state: Option<Arc<dyn Any + Send + Sync>>,
}

impl<B: Backend> Default for KvCache<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> fmt::Debug for KvCache<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvCache")
            .field("len", &self.len())
            .field("owner", &self.owner)
            .field("has_state", &self.state.is_some())
            .finish()
    }
}

impl<B: Backend> KvCache<B> {
    /// An empty cache.
    pub fn new() -> Self {
        Self { keys: None, values: None, owner: None, state: None }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every token and the method's state.
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

    /// The name of the method that filled the cache, if any.
    pub fn owner(&self) -> Option<&'static str> {
        self.owner
    }

    /// The state of type `S` that the owning method keeps, if any: one slot, so that a
    /// method with per-token or per-step state adds no field here.
    pub fn state<S: Any + Send + Sync>(&self) -> Option<&S> {
        self.state.as_ref().and_then(|s| s.downcast_ref::<S>())
    }

    /// Replaces the method's state (`None` drops it).
    pub fn set_state<S: Any + Send + Sync>(&mut self, state: Option<S>) {
        self.state = state.map(|s| Arc::new(s) as Arc<dyn Any + Send + Sync>);
    }

    /// Appends `new_len` tokens for method `owner`: keys `[batch, kv_heads, new_len,
    /// head_dim]`, values `[batch, kv_heads, new_len, value_dim]`. Returns every cached key
    /// and value.
    ///
    /// Errors when the sizes differ from what the cache holds, or when another method
    /// filled the cache (its state would not match these tokens).
    pub fn append(
        &mut self,
        owner: &'static str,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> AttnResult<(Tensor<B, 4>, Tensor<B, 4>)> {
        self.check_owner(owner)?;
        let [kb, kh, kt, _] = keys.dims();
        let [vb, vh, vt, _] = values.dims();
        if (vb, vh, vt) != (kb, kh, kt) {
            return Err(shape_error("values", format!("[{kb}, {kh}, {kt}, value_dim]"), values.dims()));
        }
        let keys = extend(self.keys.clone(), keys, "keys")?;
        let values = extend(self.values.clone(), values, "values")?;
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        self.owner = Some(owner);
        Ok((keys, values))
    }

    /// Lets another method continue this cache: the keys and values stay, the owner and its
    /// state go. The next method rebuilds what it keeps per token from the cached keys
    /// (HashAttention's key signatures, Quest's page bounds) on its first call. This is how
    /// a context prefilled densely is then decoded with a sparse method.
    pub fn hand_over(&mut self) {
        self.owner = None;
        self.state = None;
    }

    /// Errors unless the cache is empty or was filled by `owner` (or handed over).
    pub fn check_owner(&self, owner: &'static str) -> AttnResult<()> {
        match self.owner {
            Some(filled_by) if filled_by != owner && !self.is_empty() => Err(AttnError::Cache(format!(
                "this cache holds {} tokens appended by {filled_by}, which {owner} cannot continue: \
                 use one method per cache (or clear() it)",
                self.len()
            ))),
            _ => Ok(()),
        }
    }
}

fn extend<B: Backend>(
    old: Option<Tensor<B, 4>>,
    new: Tensor<B, 4>,
    name: &'static str,
) -> AttnResult<Tensor<B, 4>> {
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
