//! Attention fidelity per layer: how much of the oracle top-k attention mass each method
//! keeps, and how far its output is from dense, on the model's own queries and keys.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use burn_sparse_attn_core::{dense_attention, AttentionMethod, AttnOptions, KvCache};
use serde::Serialize;

use super::suite::{method_config, settings, KeyBudget, MethodKind, Preset};
use crate::error::{ModelError, ModelResult};
use crate::llama::{layer_attention, AttentionInputs, AttentionPlan, Llama};

/// What a fidelity sweep measures: every method at every sparsity, in every layer, on the
/// first `context` tokens of a text run through the dense model. Only the second half of
/// the queries counts (the first ones see too few keys to be sparse).
#[derive(Debug, Clone)]
pub struct FidelitySweep {
    /// Tokens of the passage.
    pub context: usize,
    /// Sparsity factors (8.0 attends to an eighth of the keys).
    pub sparsities: Vec<f64>,
    /// Sparse methods (dense is the reference and is skipped).
    pub methods: Vec<MethodKind>,
    /// Trained HashAttention mappings (a folder per `HashMappings::save_dir`); random
    /// mappings when `None`.
    pub hash_mappings: Option<std::path::PathBuf>,
    /// HashAttention with one key list per KV head instead of one per query head.
    pub shared_selection: bool,
}

impl FidelitySweep {
    /// Rows per layer.
    pub fn rows_per_layer(&self) -> usize {
        settings(&self.methods, &self.sparsities, &[Preset::EqualBudget]).len() - 1
    }
}

/// One method at one sparsity in one layer.
#[derive(Debug, Clone, Serialize)]
pub struct FidelityRow {
    /// The method.
    pub method: MethodKind,
    /// Sparsity factor.
    pub sparsity: f64,
    /// Keys each query attends to.
    pub keys_per_query: usize,
    /// Layer index.
    pub layer: usize,
    /// `||o - o_dense|| / ||o_dense||` over the scored queries and all heads.
    pub relative_error: f64,
    /// Mean dense attention mass of the keys the method attends to; `None` where the
    /// method does not attend to a subset of the keys (HyperAttention estimates the rest).
    pub kept_mass: Option<f64>,
    /// Mean over queries of kept mass / mass of the true top `keys_per_query` keys.
    pub mass_recall: Option<f64>,
}

/// Runs `sweep` over `tokens[..sweep.context]` with the model made dense, calling `on_row`
/// as each row is measured. The model's attention is left dense.
pub fn attention_fidelity<B: Backend>(
    model: &mut Llama<B>,
    tokens: &[u32],
    sweep: &FidelitySweep,
    device: &B::Device,
    mut on_row: impl FnMut(&FidelityRow),
) -> ModelResult<Vec<FidelityRow>> {
    let context = sweep.context;
    if context > tokens.len() || context < 2 * KeyBudget::MIN_TOTAL {
        return Err(ModelError::Eval(format!(
            "fidelity needs a context of {} to {} tokens (the text's length), got {context}",
            2 * KeyBudget::MIN_TOTAL,
            tokens.len()
        )));
    }
    model.set_attention(&AttentionPlan::dense(), device)?;
    let trained = model.load_hash_mappings(sweep.hash_mappings.as_deref(), device)?;
    let mut runs = Vec::new();
    for setting in settings(&sweep.methods, &sweep.sparsities, &[Preset::EqualBudget]).into_iter().skip(1) {
        let (method, sparsity) = (setting.method, setting.sparsity);
        let budget = KeyBudget::new(context, sparsity)?;
        runs.push((
            method,
            sparsity,
            budget,
            method_config(method, &model.config, &budget, sweep.shared_selection),
        ));
    }
    let ids: Vec<i64> = tokens[..context].iter().map(|&t| t as i64).collect();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, context]), device);
    let mut rows = Vec::new();
    let mut caches = model.new_caches();
    model.hidden_probed(input, &mut caches, |layer, inputs| {
        let AttentionInputs { q, k, v } = inputs.clone();
        let from = context / 2;
        let scored = context - from;
        let dense = dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::causal())?;
        let dense_out = dense.output.narrow(2, from, scored);
        let dense_lse = dense.lse.narrow(2, from, scored);
        let totals: Vec<usize> = runs.iter().map(|s| s.2.total).collect();
        let top_mass =
            top_k_mass(q.clone().narrow(2, from, scored), k.clone(), dense_lse.clone(), from, &totals);
        let dense_norm = dense_out.clone().powf_scalar(2.0).sum().into_scalar().elem::<f64>().sqrt();
        for ((method, sparsity, budget, config), top) in runs.iter().zip(top_mass) {
            let attention = layer_attention(config, trained.as_ref(), layer, device)?;
            let out = attention.prefill(q.clone(), k.clone(), v.clone(), &mut KvCache::new())?;
            let diff = out.output.narrow(2, from, scored) - dense_out.clone();
            let relative_error = diff.powf_scalar(2.0).sum().into_scalar().elem::<f64>().sqrt() / dense_norm;
            let (kept_mass, mass_recall) = if method.attends_key_subset() {
                let kept = (out.lse.narrow(2, from, scored) - dense_lse.clone()).exp();
                let recall = (kept.clone() / top).mean().into_scalar().elem::<f64>();
                (Some(kept.mean().into_scalar().elem::<f64>()), Some(recall))
            } else {
                (None, None)
            };
            let row = FidelityRow {
                method: *method,
                sparsity: *sparsity,
                keys_per_query: budget.total,
                layer,
                relative_error,
                kept_mass,
                mass_recall,
            };
            on_row(&row);
            rows.push(row);
        }
        Ok(())
    })?;
    Ok(rows)
}

/// Dense attention mass `[batch, heads, scored]` of each query's `k` highest-scoring
/// visible keys, for each `k` of `ks`. `q: [batch, heads, scored, dim]` are the queries at
/// positions `first..`, `k: [batch, kv_heads, len, dim]`, `lse: [batch, heads, scored]`
/// their dense log-sum-exp.
fn top_k_mass<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    lse: Tensor<B, 3>,
    first: usize,
    ks: &[usize],
) -> Vec<Tensor<B, 3>> {
    let [b, h, scored, d] = q.dims();
    let [_, kv_heads, len, _] = k.dims();
    let groups = h / kv_heads;
    let k = k.unsqueeze_dim::<5>(2).expand([b, kv_heads, groups, len, d]).reshape([b, h, len, d]);
    let logits = q.matmul(k.transpose()).mul_scalar(1.0 / (d as f64).sqrt());
    let device = logits.device();
    let query_pos = Tensor::<B, 1, Int>::arange(first as i64..(first + scored) as i64, &device);
    let key_pos = Tensor::<B, 1, Int>::arange(0..len as i64, &device);
    let hidden =
        key_pos.reshape([1, len]).greater(query_pos.reshape([scored, 1])).reshape([1, 1, scored, len]);
    let probs = (logits - lse.unsqueeze_dim(3)).exp().mask_fill(hidden.expand([b, h, scored, len]), 0.0);
    let sorted = probs.sort_descending(3);
    ks.iter().map(|&n| sorted.clone().narrow(3, 0, n.min(len)).sum_dim(3).squeeze_dim(3)).collect()
}

use burn::tensor::ElementConversion;
