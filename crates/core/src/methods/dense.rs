//! Dense attention as a method: the exact baseline.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use super::budget::{HeadLayout, KeyBudget};
use super::method::{append_new_tokens, AttentionMethod};
use super::registry::MethodEntry;
use crate::attend::{dense_attention, AttnOptions, AttnOutput};
use crate::cache::KvCache;
use crate::error::AttnResult;

/// Config of [`DenseAttention`].
#[derive(Config, Debug)]
pub struct DenseAttentionConfig {
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
}

/// Exact causal attention over every cached key.
#[derive(Module, Debug, Clone)]
pub struct DenseAttention {
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    #[module(skip)]
    pub scale: Option<f64>,
}

impl DenseAttentionConfig {
    /// Creates the method (it has no parameters; `device` is for symmetry).
    pub fn init<B: Backend>(&self, _device: &B::Device) -> DenseAttention {
        DenseAttention { scale: self.scale }
    }
}

impl<B: Backend> AttentionMethod<B> for DenseAttention {
    fn forward_cached(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        let (k, v) = append_new_tokens(DenseAttentionConfig::NAME, &q, k, v, cache)?;
        let options = AttnOptions { scale: self.scale, ..AttnOptions::causal() };
        dense_attention(q, k, v, &options)
    }
}

impl MethodEntry for DenseAttentionConfig {
    type Module<B: Backend> = DenseAttention;
    const NAME: &'static str = "dense";
    const DESCRIPTION: &'static str = "every key (exact)";

    fn build<B: Backend>(&self, device: &B::Device) -> AttnResult<DenseAttention> {
        Ok(self.init::<B>(device))
    }

    fn for_budget(_heads: &HeadLayout, _budget: &KeyBudget) -> Self {
        Self::new()
    }
}
