//! HashAttention: top-k by matching bits of learned signatures (Desai et al., 2025).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Int, Tensor};

use super::budget::{HeadLayout, KeyBudget};
use super::method::{append_new_tokens, check_new_tokens, AttentionMethod};
use super::registry::MethodEntry;
use super::sparse::{select_then_attend, Scorer};
use crate::attend::AttnOptions;
use crate::attend::AttnOutput;
use crate::cache::KvCache;
use crate::error::{AttnError, AttnResult};
use crate::hash::{ranked_group_matching_bits, HashMapping, HashMappingConfig};
use crate::select::{budget_union, top_k_selection, KeySelection, SparseBudget};
use crate::shape::AttnShape;

/// Config of [`HashAttention`].
#[derive(Config, Debug)]
pub struct HashAttentionConfig {
    /// The hash mappings (heads, bits, MLP shape); `key_heads` chooses signatures per
    /// query head or shared per KV head.
    pub mapping: HashMappingConfig,
    /// Keys at the start of the context that every query sees.
    #[config(default = 16)]
    pub sink: usize,
    /// Most recent keys every query sees.
    #[config(default = 64)]
    pub window: usize,
    /// Keys chosen by signature score: a count when > 1, else a fraction of the context.
    #[config(default = 0.03125)]
    pub heavy: f64,
    /// One key list per KV head (GQA): match counts summed over the KV head's query heads,
    /// so that each chosen K/V row is read once for the group instead of once per query
    /// head. Off: a list per query head, as in the paper.
    #[config(default = false)]
    pub shared_selection: bool,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
}

/// What HashAttention keeps in the [`KvCache`]: the packed signature of every cached key,
/// `[batch, key_heads, len, words]`, computed once per token.
#[derive(Debug, Clone)]
pub struct KeySignatures<B: Backend>(pub Tensor<B, 4, Int>);

/// Sink + window + the top `heavy` keys by the number of signature bits they share with
/// the query. Key signatures live in the KV cache and are computed once per token.
#[derive(Module, Debug)]
pub struct HashAttention<B: Backend> {
    /// The learned query and key mappings.
    pub mapping: HashMapping<B>,
    /// Sink, window and heavy budget.
    #[module(skip)]
    pub budget: SparseBudget,
    /// One key list per KV head (see [`HashAttentionConfig::shared_selection`]).
    #[module(skip)]
    pub shared_selection: bool,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    #[module(skip)]
    pub scale: Option<f64>,
}

impl HashAttentionConfig {
    /// Creates the method with random mappings (train them, or load trained ones with
    /// [`init_with`](Self::init_with)).
    pub fn init<B: Backend>(&self, device: &B::Device) -> AttnResult<HashAttention<B>> {
        self.init_with(self.mapping.init(device)?)
    }

    /// Creates the method around given mappings.
    pub fn init_with<B: Backend>(&self, mapping: HashMapping<B>) -> AttnResult<HashAttention<B>> {
        let budget = SparseBudget { sink: self.sink, window: self.window, heavy: self.heavy };
        budget.validate()?;
        Ok(HashAttention { mapping, budget, shared_selection: self.shared_selection, scale: self.scale })
    }
}

impl<B: Backend> AttentionMethod<B> for HashAttention<B> {
    fn forward_cached(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        check_new_tokens(&q, &k, &v)?;
        let query_heads = q.dims()[1];
        if query_heads != self.mapping.query_heads() {
            return Err(AttnError::Shape {
                name: "q",
                expected: format!("{} query heads, as the hash mapping", self.mapping.query_heads()),
                got: q.dims().to_vec(),
            });
        }
        cache.check_owner(HashAttentionConfig::NAME)?;
        let cached = match (cache.state::<KeySignatures<B>>(), cache.keys()) {
            (Some(signatures), _) => Some(signatures.0.clone()),
            // A cache handed over by another method: sign the keys it holds.
            (None, Some(keys)) => Some(self.mapping.key_signatures(keys.clone())?),
            (None, None) => None,
        };
        if cached.as_ref().map_or(0, |s| s.dims()[2]) != cache.len() {
            return Err(AttnError::Cache(format!(
                "this cache holds {} tokens but HashAttention's key signatures of {}",
                cache.len(),
                cached.as_ref().map_or(0, |s| s.dims()[2])
            )));
        }
        let signatures = self.mapping.key_signatures(k.clone())?;
        let (k, v) = append_new_tokens(HashAttentionConfig::NAME, &q, k, v, cache)?;
        let key_signatures = match cached {
            Some(old) => Tensor::cat(vec![old, signatures], 2),
            None => signatures,
        };
        cache.set_state(Some(KeySignatures(key_signatures.clone())));
        let query_signatures = self.mapping.query_signatures(q.clone())?;
        let group = self.selection_group(&q, &k);
        let scorer = Scorer::Signatures { query: query_signatures, key: key_signatures, group };
        select_then_attend(q, k, v, &self.budget, self.scale, scorer)
    }
}

impl<B: Backend> HashAttention<B> {
    /// The keys that queries `q: [batch, query_heads, query_len, head_dim]`, at the last
    /// `query_len` positions of `cache`, attend to: what [`AttentionMethod::forward_cached`]
    /// selects, for inspection. The cache must hold this method's key signatures.
    pub fn selection(&self, q: Tensor<B, 4>, cache: &KvCache<B>) -> AttnResult<KeySelection<B>> {
        let (keys, signatures) = match (cache.keys(), cache.state::<KeySignatures<B>>()) {
            (Some(k), Some(s)) => (k.clone(), s.0.clone()),
            _ => return Err(AttnError::Cache("selection needs a cache filled by HashAttention".into())),
        };
        let shape = AttnShape::of(&q, &keys, &keys)?;
        let positions = AttnOptions::causal().positions(&shape)?;
        let group = self.selection_group(&q, &keys);
        let scores = ranked_group_matching_bits(self.mapping.query_signatures(q.clone())?, signatures, group);
        let heavy = top_k_selection(
            scores,
            &positions,
            self.budget.sink,
            self.budget.window,
            self.budget.heavy_count(shape.kv_len),
        )?;
        let dims = [shape.batch, shape.query_heads, shape.query_len];
        budget_union(heavy.map(|h| h.per_query_head(group)), &positions, dims, &self.budget, &q.device())
    }

    /// Query heads that share one key list: those of a KV head with `shared_selection`,
    /// else 1.
    fn selection_group(&self, q: &Tensor<B, 4>, k: &Tensor<B, 4>) -> usize {
        if self.shared_selection {
            q.dims()[1] / k.dims()[1]
        } else {
            1
        }
    }
}

impl MethodEntry for HashAttentionConfig {
    type Module<B: Backend> = HashAttention<B>;
    const NAME: &'static str = "hash";
    const DESCRIPTION: &'static str =
        "sink + window + top `heavy` keys by matching bits of learned signatures";

    fn build<B: Backend>(&self, device: &B::Device) -> AttnResult<HashAttention<B>> {
        self.init(device)
    }

    /// Random mappings for `heads` (a model loads trained ones over them).
    fn for_budget(heads: &HeadLayout, budget: &KeyBudget) -> Self {
        Self::new(HashMappingConfig::new(heads.head_dim, heads.query_heads, heads.kv_heads))
            .with_sink(budget.sink)
            .with_window(budget.window)
            .with_heavy(budget.heavy as f64)
    }
}
