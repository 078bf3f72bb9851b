//! The methods an evaluation compares, each configured for a key budget.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use burn_sparse_attn_core::{
    AttentionConfig, DenseAttentionConfig, HashAttentionConfig, HashMappingConfig, HipAttentionConfig,
    HyperAttentionConfig, OracleTopKConfig, StreamingAttentionConfig,
};
use serde::Serialize;

use crate::error::{ModelError, ModelResult};
use crate::llama::{AttentionPlan, LlamaConfig};

/// An attention method of the evaluation suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum Method {
    /// Dense attention: the reference every other method is compared with.
    Dense,
    /// Attention sinks plus a sliding window (StreamingLLM).
    Streaming,
    /// Sink, window and the true top-k keys (needs every logit: a quality ceiling).
    OracleTopK,
    /// HiP: hierarchical top-k pruning of key blocks.
    Hip,
    /// HyperAttention: LSH-sorted blocks plus sampled columns.
    Hyper,
    /// HashAttention with the mappings the model carries (random unless trained ones are
    /// loaded).
    Hash,
}

impl Method {
    /// Every method, dense first.
    pub const ALL: [Method; 6] =
        [Method::Dense, Method::Streaming, Method::OracleTopK, Method::Hip, Method::Hyper, Method::Hash];

    /// Short name, as parsed by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Method::Dense => "dense",
            Method::Streaming => "streaming",
            Method::OracleTopK => "oracle-top-k",
            Method::Hip => "hip",
            Method::Hyper => "hyper",
            Method::Hash => "hash",
        }
    }

    /// Whether the method attends exactly to a subset of the keys, so that its log-sum-exp
    /// measures the attention mass it keeps. HyperAttention estimates the rest of the
    /// softmax from samples instead.
    pub fn attends_key_subset(self) -> bool {
        !matches!(self, Method::Hyper)
    }

    /// The config of this method for `model` at `budget`.
    pub fn config(self, model: &LlamaConfig, budget: &KeyBudget) -> AttentionConfig {
        let KeyBudget { sink, window, heavy, total } = *budget;
        match self {
            Method::Dense => AttentionConfig::Dense(DenseAttentionConfig::new()),
            Method::Streaming => AttentionConfig::Streaming(
                StreamingAttentionConfig::new().with_sink(sink).with_window(total - sink),
            ),
            Method::OracleTopK => AttentionConfig::OracleTopK(
                OracleTopKConfig::new().with_sink(sink).with_window(window).with_heavy(heavy as f64),
            ),
            Method::Hip => AttentionConfig::Hip(
                HipAttentionConfig::new()
                    .with_mask_k(heavy.div_ceil(2) * 2)
                    .with_block_size_q(32)
                    .with_sink(sink)
                    .with_window(window),
            ),
            Method::Hyper => AttentionConfig::Hyper(
                HyperAttentionConfig::new(model.head_dim())
                    .with_block_size(total / 2)
                    .with_sample_size(total / 2)
                    .with_min_seq_len(total),
            ),
            Method::Hash => AttentionConfig::Hash(
                HashAttentionConfig::new(HashMappingConfig::new(
                    model.head_dim(),
                    model.heads,
                    model.kv_heads,
                ))
                .with_sink(sink)
                .with_window(window)
                .with_heavy(heavy as f64),
            ),
        }
    }
}

impl Method {
    /// A plan giving this method (at `budget`) to every layer but `dense_layers`, with
    /// trained hash mappings from `hash_mappings` when given.
    pub fn plan(
        self,
        model: &LlamaConfig,
        budget: &KeyBudget,
        dense_layers: &[usize],
        hash_mappings: &Option<PathBuf>,
    ) -> AttentionPlan {
        AttentionPlan {
            default: self.config(model, budget),
            dense_layers: dense_layers.to_vec(),
            hash_mappings: hash_mappings.clone(),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Method> for String {
    fn from(method: Method) -> String {
        method.name().to_string()
    }
}

impl FromStr for Method {
    type Err = ModelError;

    fn from_str(s: &str) -> ModelResult<Method> {
        Method::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
            ModelError::Eval(format!("unknown method {s:?}; the methods are {}", names.join(", ")))
        })
    }
}

/// The runs of a sweep: dense once (sparsity 1), then every sparse method of `methods` at
/// every sparsity.
pub fn settings(methods: &[Method], sparsities: &[f64]) -> Vec<(Method, f64)> {
    let mut runs = vec![(Method::Dense, 1.0)];
    for &sparsity in sparsities {
        runs.extend(methods.iter().filter(|m| **m != Method::Dense).map(|&m| (m, sparsity)));
    }
    runs
}

/// Keys per query of the sparse methods at a sparsity: `total = context / sparsity`, of
/// which `sink` first keys and `window` recent keys are fixed and `heavy` are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeyBudget {
    /// All keys a query attends to.
    pub total: usize,
    /// Keys at the start.
    pub sink: usize,
    /// Most recent keys.
    pub window: usize,
    /// Keys chosen by the method.
    pub heavy: usize,
}

impl KeyBudget {
    /// Sink keys of every budget.
    pub const SINK: usize = 16;
    /// Window keys of every budget.
    pub const WINDOW: usize = 64;
    /// The smallest budget: sink, window and 16 chosen keys.
    pub const MIN_TOTAL: usize = Self::SINK + Self::WINDOW + 16;

    /// The budget for `context` keys at `sparsity` (8.0 attends to an eighth), at least
    /// [`KeyBudget::MIN_TOTAL`]. Errors when `sparsity < 1`.
    pub fn new(context: usize, sparsity: f64) -> ModelResult<Self> {
        if !(sparsity >= 1.0 && sparsity.is_finite()) {
            return Err(ModelError::Eval(format!(
                "sparsity is the factor of keys skipped (8 attends to 1/8 of them) and must be >= 1, got {sparsity}"
            )));
        }
        let total = ((context as f64 / sparsity).round() as usize).max(Self::MIN_TOTAL);
        Ok(Self { total, sink: Self::SINK, window: Self::WINDOW, heavy: total - Self::SINK - Self::WINDOW })
    }
}
