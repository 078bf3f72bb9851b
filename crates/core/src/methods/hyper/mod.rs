//! HyperAttention as a method: LSH-sorted blocks + sampled columns in prefill, exact decode.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor, TensorData};

mod estimator;
mod on_kernels;

pub use estimator::{hyper_attention_causal, hyper_attention_non_causal, HyperParams};

use super::budget::{HeadLayout, KeyBudget};
use super::method::{append_new_tokens, check_new_tokens, AttentionMethod};
use super::registry::MethodEntry;
use crate::attend::{dense_attention, merge, AttnOptions, AttnOutput};
use crate::cache::KvCache;
use crate::error::{AttnError, AttnResult};

/// Config of [`HyperAttention`]; defaults follow the paper's code.
#[derive(Config, Debug)]
pub struct HyperAttentionConfig {
    /// Dimension of queries and keys (the LSH projects it).
    pub head_dim: usize,
    /// Random projections of the angular LSH: `2^lsh_num_projs` buckets.
    #[config(default = 7)]
    pub lsh_num_projs: usize,
    /// Keys per block of the sorted order.
    #[config(default = 256)]
    pub block_size: usize,
    /// Key columns sampled per (batch, head).
    #[config(default = 256)]
    pub sample_size: usize,
    /// Causal sequences up to this length are attended exactly.
    #[config(default = 4096)]
    pub min_seq_len: usize,
    /// The first keys, attended exactly by every query of a prefill and left out of the
    /// estimate (0: none, as in the paper). An extension: the attention sinks of a language
    /// model carry much of each row's mass, which the sampled columns rarely hit.
    #[config(default = 0)]
    pub exact_sink: usize,
    /// Seed of the projections and of the column samples.
    #[config(default = 0)]
    pub seed: u64,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
}

/// HyperAttention. Prefill (several new tokens) runs the causal recursion; a single decode
/// query attends exactly to the whole cache: one query has no blocks to sort into, and
/// exact attention for one query reads the same keys the estimator would score.
#[derive(Module, Debug)]
pub struct HyperAttention<B: Backend> {
    /// LSH projections `[head_dim, lsh_num_projs]`: fixed (not trained), saved with the module.
    pub projections: Param<Tensor<B, 2>>,
    /// Keys per block.
    #[module(skip)]
    pub block_size: usize,
    /// Sampled key columns.
    #[module(skip)]
    pub sample_size: usize,
    /// Exact below this length.
    #[module(skip)]
    pub min_seq_len: usize,
    /// First keys attended exactly.
    #[module(skip)]
    pub exact_sink: usize,
    /// Seed of the column samples.
    #[module(skip)]
    pub seed: u64,
    /// Logit scale; `None` means `1 / sqrt(head_dim)`.
    #[module(skip)]
    pub scale: Option<f64>,
}

impl HyperAttentionConfig {
    /// Creates the module with Gaussian projections drawn from `seed`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AttnResult<HyperAttention<B>> {
        if self.lsh_num_projs == 0 || self.lsh_num_projs > 31 || self.block_size == 0 || self.head_dim == 0 {
            return Err(AttnError::Config(format!(
                "HyperAttention needs 1..=31 projections, a positive block size and head_dim; got {self:?}"
            )));
        }
        let values = crate::synthetic::normal_values(self.head_dim * self.lsh_num_projs, self.seed);
        let projections =
            Tensor::from_data(TensorData::new(values, [self.head_dim, self.lsh_num_projs]), device);
        Ok(HyperAttention {
            projections: Param::from_tensor(projections).set_require_grad(false),
            block_size: self.block_size,
            sample_size: self.sample_size,
            min_seq_len: self.min_seq_len,
            exact_sink: self.exact_sink,
            seed: self.seed,
            scale: self.scale,
        })
    }
}

impl<B: Backend> HyperAttention<B> {
    /// The parameters of the algorithm for queries of dimension `head_dim`.
    pub fn params(&self, head_dim: usize) -> HyperParams {
        HyperParams {
            block_size: self.block_size,
            sample_size: self.sample_size,
            min_seq_len: self.min_seq_len,
            seed: self.seed,
            scale: self.scale.unwrap_or(1.0 / (head_dim as f64).sqrt()),
        }
    }
}

impl<B: Backend> AttentionMethod<B> for HyperAttention<B> {
    fn forward_cached(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        check_new_tokens(&q, &k, &v)?;
        let head_dim = q.dims()[3];
        if head_dim != self.projections.dims()[0] {
            return Err(AttnError::Shape {
                name: "q",
                expected: format!("head_dim {} (the LSH projections')", self.projections.dims()[0]),
                got: q.dims().to_vec(),
            });
        }
        let params = self.params(head_dim);
        let first = cache.is_empty();
        let (k, v) = append_new_tokens(HyperAttentionConfig::NAME, &q, k, v, cache)?;
        if first && q.dims()[2] > 1 {
            return self.prefill(q, k, v, &params);
        }
        // Decode (or a chunk after a prefill): exact over the cache.
        dense_attention(q, k, v, &AttnOptions::causal().with_scale(params.scale))
    }
}

impl<B: Backend> HyperAttention<B> {
    /// Causal HyperAttention of a first prefill, the first `exact_sink` keys exactly: the
    /// sink's own queries attend densely; every later query merges exact attention to the
    /// sink with the estimate over the keys after it (whose recursion starts after the sink).
    fn prefill(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        params: &HyperParams,
    ) -> AttnResult<AttnOutput<B>> {
        let n = q.dims()[2];
        let sink = self.exact_sink.min(n);
        if sink == 0 || n <= params.min_seq_len {
            return hyper_attention_causal(q, k, v, self.projections.val(), params);
        }
        let exact = AttnOptions::causal().with_scale(params.scale);
        let head = dense_attention(
            q.clone().narrow(2, 0, sink),
            k.clone().narrow(2, 0, sink),
            v.clone().narrow(2, 0, sink),
            &exact,
        )?;
        if sink == n {
            return Ok(head);
        }
        let rest = |x: Tensor<B, 4>| x.narrow(2, sink, n - sink);
        let estimate = hyper_attention_causal(
            rest(q.clone()),
            rest(k.clone()),
            rest(v.clone()),
            self.projections.val(),
            params,
        )?;
        let to_sink = dense_attention(
            rest(q),
            k.narrow(2, 0, sink),
            v.narrow(2, 0, sink),
            &AttnOptions::non_causal().with_scale(params.scale),
        )?;
        Ok(AttnOutput::cat(vec![head, merge(estimate, to_sink)?]))
    }
}

impl MethodEntry for HyperAttentionConfig {
    type Module<B: Backend> = HyperAttention<B>;
    const NAME: &'static str = "hyper";
    const DESCRIPTION: &'static str =
        "exact blocks of an LSH-sorted order + sampled columns; causal by recursive halving; exact decode";
    const ATTENDS_KEY_SUBSET: bool = false;

    fn build<B: Backend>(&self, device: &B::Device) -> AttnResult<HyperAttention<B>> {
        self.init(device)
    }

    /// Half the budget to the sorted block, half to the samples; approximate from the
    /// budget's length on.
    fn for_budget(heads: &HeadLayout, budget: &KeyBudget) -> Self {
        Self::new(heads.head_dim)
            .with_block_size(budget.total / 2)
            .with_sample_size(budget.total / 2)
            .with_min_seq_len(budget.total)
    }
}
