//! Quest: query-aware page selection (Tang et al., ICML 2024), the baseline that scores pages
//! of keys instead of keys.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use super::budget::{HeadLayout, KeyBudget};
use super::method::{append_new_tokens, check_new_tokens, AttentionMethod};
use super::registry::MethodEntry;
use super::sparse::{select_then_attend, Scorer};
use crate::attend::AttnOutput;
use crate::cache::KvCache;
use crate::error::{AttnError, AttnResult};
use crate::select::SparseBudget;

pub use crate::select::PageBounds;

/// Config of [`QuestAttention`].
#[derive(Config, Debug)]
pub struct QuestConfig {
    /// Keys per page: the unit of selection.
    #[config(default = 16)]
    pub page_size: usize,
    /// Keys at the start of the context that every query sees.
    #[config(default = 16)]
    pub sink: usize,
    /// Most recent keys every query sees.
    #[config(default = 64)]
    pub window: usize,
    /// Keys chosen in pages: a count when > 1, else a fraction of the context; rounded up
    /// to whole pages.
    #[config(default = 0.03125)]
    pub heavy: f64,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
}

/// Sink + window + the pages with the highest upper bound of `q . k`, from each page's
/// element-wise key minimum and maximum ([`PageBounds`], kept in the [`KvCache`] and
/// updated per appended token). Scores `T / page_size` pages per query instead of `T` keys.
/// The keys of a chosen page that the sink or the window already cover are not repeated.
#[derive(Module, Debug, Clone)]
pub struct QuestAttention {
    /// Keys per page.
    #[module(skip)]
    pub page_size: usize,
    /// Sink, window and heavy budget (in keys).
    #[module(skip)]
    pub budget: SparseBudget,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    #[module(skip)]
    pub scale: Option<f64>,
}

impl QuestConfig {
    /// Creates the method (no parameters).
    pub fn init<B: Backend>(&self, _device: &B::Device) -> AttnResult<QuestAttention> {
        if self.page_size == 0 {
            return Err(AttnError::Config("Quest's page_size must be at least 1".into()));
        }
        let budget = SparseBudget { sink: self.sink, window: self.window, heavy: self.heavy };
        budget.validate()?;
        Ok(QuestAttention { page_size: self.page_size, budget, scale: self.scale })
    }
}

impl<B: Backend> AttentionMethod<B> for QuestAttention {
    fn forward_cached(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        check_new_tokens(&q, &k, &v)?;
        cache.check_owner(QuestConfig::NAME)?;
        let kept = cache.len();
        // Without bounds (an empty cache, or one handed over by another method) they are
        // computed from all the keys below.
        let bounds = cache.state::<PageBounds<B>>().cloned();
        if let Some(pages) =
            bounds.as_ref().map(|b| b.pages()).filter(|&p| p != kept.div_ceil(self.page_size))
        {
            return Err(AttnError::Cache(format!(
                "this cache holds {kept} tokens but Quest's page bounds of {pages} pages"
            )));
        }
        let (k, v) = append_new_tokens(QuestConfig::NAME, &q, k, v, cache)?;
        let bounds = match bounds {
            Some(bounds) => bounds.extended(&k, self.page_size, kept)?,
            None => PageBounds::of_keys(k.clone(), self.page_size)?,
        };
        cache.set_state(Some(bounds.clone()));
        let score = |start: usize, len: usize, keys: usize| {
            Ok(bounds.first(keys.div_ceil(self.page_size)).scores(q.clone().narrow(2, start, len)))
        };
        let scorer = Scorer::Pages { score: &score, page_size: self.page_size };
        select_then_attend(q.clone(), k, v, &self.budget, self.scale, scorer)
    }
}

impl MethodEntry for QuestConfig {
    type Module<B: Backend> = QuestAttention;
    const NAME: &'static str = "quest";
    const DESCRIPTION: &'static str =
        "sink + window + top pages of keys by the q.k bound from each page's key minima and maxima";

    fn build<B: Backend>(&self, device: &B::Device) -> AttnResult<QuestAttention> {
        self.init::<B>(device)
    }

    /// The chosen keys rounded down to whole pages (at least one), so that Quest never
    /// reads more keys than the others.
    fn for_budget(_heads: &HeadLayout, budget: &KeyBudget) -> Self {
        let page_size = Self::new().page_size;
        let heavy = (budget.heavy / page_size).max(1) * page_size;
        Self::new().with_sink(budget.sink).with_window(budget.window).with_heavy(heavy as f64)
    }
}
