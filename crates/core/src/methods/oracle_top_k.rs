//! Oracle top-k: sink + window + the keys with the highest exact logits.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use super::budget::{HeadLayout, KeyBudget};
use super::method::{append_new_tokens, AttentionMethod};
use super::registry::MethodEntry;
use super::sparse::{select_then_attend, Scorer};
use crate::attend::AttnOutput;
use crate::cache::KvCache;
use crate::error::AttnResult;
use crate::select::{exact_scores, SparseBudget};

/// Config of [`OracleTopKAttention`].
#[derive(Config, Debug)]
pub struct OracleTopKConfig {
    /// Keys at the start of the context that every query sees.
    #[config(default = 16)]
    pub sink: usize,
    /// Most recent keys every query sees.
    #[config(default = 64)]
    pub window: usize,
    /// Keys chosen by exact score: a count when > 1, else a fraction of the context.
    #[config(default = 0.03125)]
    pub heavy: f64,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
}

/// Top-k by the exact logit `q . k`: the quality ceiling of every top-k method, at the
/// cost of scoring every key.
#[derive(Module, Debug, Clone)]
pub struct OracleTopKAttention {
    /// Sink, window and heavy budget.
    #[module(skip)]
    pub budget: SparseBudget,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    #[module(skip)]
    pub scale: Option<f64>,
}

impl OracleTopKConfig {
    /// Creates the method (no parameters).
    pub fn init<B: Backend>(&self, _device: &B::Device) -> AttnResult<OracleTopKAttention> {
        let budget = SparseBudget { sink: self.sink, window: self.window, heavy: self.heavy };
        budget.validate()?;
        Ok(OracleTopKAttention { budget, scale: self.scale })
    }
}

impl<B: Backend> AttentionMethod<B> for OracleTopKAttention {
    fn forward_cached(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        let (k, v) = append_new_tokens(OracleTopKConfig::NAME, &q, k, v, cache)?;
        let scale = self.scale.unwrap_or(1.0 / (q.dims()[3] as f64).sqrt());
        let scorer = |start: usize, len: usize, keys: usize| {
            Ok(exact_scores(q.clone().narrow(2, start, len), k.clone().narrow(2, 0, keys), scale))
        };
        select_then_attend(q.clone(), k.clone(), v, &self.budget, self.scale, Scorer::Exact(&scorer))
    }
}

impl MethodEntry for OracleTopKConfig {
    type Module<B: Backend> = OracleTopKAttention;
    const NAME: &'static str = "oracle-top-k";
    const DESCRIPTION: &'static str = "sink + window + top `heavy` keys by exact q.k (scores every key)";

    fn build<B: Backend>(&self, device: &B::Device) -> AttnResult<OracleTopKAttention> {
        self.init::<B>(device)
    }

    fn for_budget(_heads: &HeadLayout, budget: &KeyBudget) -> Self {
        Self::new().with_sink(budget.sink).with_window(budget.window).with_heavy(budget.heavy as f64)
    }
}
