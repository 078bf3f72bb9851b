//! StreamingLLM: the first `sink` keys and the last `window` keys.

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
use crate::select::SparseBudget;

/// Config of [`StreamingAttention`].
#[derive(Config, Debug)]
pub struct StreamingAttentionConfig {
    /// Keys at the start of the context that every query sees (attention sinks).
    #[config(default = 4)]
    pub sink: usize,
    /// Most recent keys every query sees, its own included.
    #[config(default = 256)]
    pub window: usize,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
}

/// Sink + sliding window attention (Xiao et al., StreamingLLM).
#[derive(Module, Debug, Clone)]
pub struct StreamingAttention {
    /// The budget (heavy is 0).
    #[module(skip)]
    pub budget: SparseBudget,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    #[module(skip)]
    pub scale: Option<f64>,
}

impl StreamingAttentionConfig {
    /// Creates the method (no parameters).
    pub fn init<B: Backend>(&self, _device: &B::Device) -> AttnResult<StreamingAttention> {
        let budget = SparseBudget { sink: self.sink, window: self.window, heavy: 0.0 };
        budget.validate()?;
        if self.sink + self.window == 0 {
            return Err(crate::error::AttnError::Config(
                "streaming attention needs sink + window > 0".into(),
            ));
        }
        Ok(StreamingAttention { budget, scale: self.scale })
    }
}

impl<B: Backend> AttentionMethod<B> for StreamingAttention {
    fn forward_cached(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        let (k, v) = append_new_tokens(StreamingAttentionConfig::NAME, &q, k, v, cache)?;
        select_then_attend(q, k, v, &self.budget, self.scale, Scorer::None)
    }
}

impl MethodEntry for StreamingAttentionConfig {
    type Module<B: Backend> = StreamingAttention;
    const NAME: &'static str = "streaming";
    const DESCRIPTION: &'static str = "first `sink` + last `window` keys";

    fn build<B: Backend>(&self, device: &B::Device) -> AttnResult<StreamingAttention> {
        self.init::<B>(device)
    }

    /// The whole budget but the sink goes to the window.
    fn for_budget(_heads: &HeadLayout, budget: &KeyBudget) -> Self {
        Self::new().with_sink(budget.sink).with_window(budget.total - budget.sink)
    }
}
