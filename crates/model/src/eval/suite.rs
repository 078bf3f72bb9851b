//! The methods an evaluation compares: the kinds of core's registry, each configured for an
//! equal key budget ([`KeyBudget`]) by its own registry entry.

use std::path::PathBuf;

use burn_sparse_attn_core::AttentionConfig;
pub use burn_sparse_attn_core::{HeadLayout, KeyBudget, MethodKind};

use crate::llama::{AttentionPlan, LlamaConfig};

/// The attention heads of `model`.
pub fn head_layout(model: &LlamaConfig) -> HeadLayout {
    HeadLayout { head_dim: model.head_dim(), query_heads: model.heads, kv_heads: model.kv_heads }
}

/// The config of `method` for `model` at `budget`; `shared_selection` gives HashAttention one
/// key list per KV head (see `HashAttentionConfig::shared_selection`).
pub fn method_config(
    method: MethodKind,
    model: &LlamaConfig,
    budget: &KeyBudget,
    shared_selection: bool,
) -> AttentionConfig {
    match method.config_for_budget(&head_layout(model), budget) {
        AttentionConfig::Hash(hash) => AttentionConfig::Hash(hash.with_shared_selection(shared_selection)),
        config => config,
    }
}

/// A plan giving `method` (at `budget`, see [`method_config`]) to every layer but
/// `dense_layers`, with trained hash mappings from `hash_mappings` when given.
pub fn plan(
    method: MethodKind,
    model: &LlamaConfig,
    budget: &KeyBudget,
    dense_layers: &[usize],
    hash_mappings: &Option<PathBuf>,
    shared_selection: bool,
) -> AttentionPlan {
    AttentionPlan {
        default: method_config(method, model, budget, shared_selection),
        dense_layers: dense_layers.to_vec(),
        hash_mappings: hash_mappings.clone(),
    }
}

/// The runs of a sweep: dense once (sparsity 1), then every sparse method of `methods` at
/// every sparsity.
pub fn settings(methods: &[MethodKind], sparsities: &[f64]) -> Vec<(MethodKind, f64)> {
    let mut runs = vec![(MethodKind::Dense, 1.0)];
    for &sparsity in sparsities {
        runs.extend(methods.iter().filter(|m| **m != MethodKind::Dense).map(|&m| (m, sparsity)));
    }
    runs
}
