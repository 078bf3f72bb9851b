//! Perplexity of a model on real text, per method, context and sparsity, against dense.

use std::time::Instant;

use serde::Serialize;

use super::score::{Protocol, SequenceScore};
use super::suite::{settings, MethodKind, Preset, SweepOptions};
use crate::error::{ModelError, ModelResult};
use crate::llama::Llama;
use burn::tensor::backend::Backend;

/// What a perplexity sweep runs: every method at every sparsity on the first `context`
/// tokens of a text, for every context; the second half of each passage is scored.
#[derive(Debug, Clone)]
pub struct PerplexitySweep {
    /// Passage lengths in tokens.
    pub contexts: Vec<usize>,
    /// Sparsity factors (8.0 attends to an eighth of the keys).
    pub sparsities: Vec<f64>,
    /// Methods; dense is always run (once per context) as the reference.
    pub methods: Vec<MethodKind>,
    /// Layers kept dense in every method.
    pub dense_layers: Vec<usize>,
    /// Trained HashAttention mappings (a folder per `HashMappings::save_dir`); random
    /// mappings when `None`.
    pub hash_mappings: Option<std::path::PathBuf>,
    /// HashAttention with one key list per KV head instead of one per query head.
    pub shared_selection: bool,
    /// How each passage is run and which of its tokens are scored.
    pub protocol: Protocol,
    /// How the methods are configured: [`Preset::EqualBudget`] runs each at every sparsity,
    /// the others once per context (see [`settings`]).
    pub presets: Vec<Preset>,
}

impl PerplexitySweep {
    /// Number of model runs: one dense and one per sparse method and sparsity, per context.
    pub fn runs(&self) -> usize {
        self.contexts.len() * settings(&self.methods, &self.sparsities, &self.presets).len()
    }

    fn options(&self) -> SweepOptions {
        SweepOptions {
            dense_layers: self.dense_layers.clone(),
            hash_mappings: self.hash_mappings.clone(),
            shared_selection: self.shared_selection,
        }
    }
}

/// One method at one context and sparsity.
#[derive(Debug, Clone, Serialize)]
pub struct PerplexityRow {
    /// The method.
    pub method: MethodKind,
    /// How it was configured.
    pub preset: Preset,
    /// Tokens in the passage.
    pub context: usize,
    /// Sparsity factor (1 for dense; the context over the keys per query for the presets that
    /// set their own budget).
    pub sparsity: f64,
    /// Keys the last query attends to in a sparse layer (the context for dense).
    pub keys_per_query: usize,
    /// Perplexity of the second half of the passage.
    pub perplexity: f64,
    /// Fraction of scored positions whose most likely next token equals dense's.
    pub agreement_with_dense: f64,
    /// Wall time of the forward pass.
    pub seconds: f64,
    /// How the passage was run and scored.
    pub protocol: Protocol,
}

/// Runs `sweep` over `tokens` (at least the largest context long), calling `on_row` as each
/// row is measured. The model's attention is left as the last run set it.
pub fn perplexity_sweep<B: Backend>(
    model: &mut Llama<B>,
    tokens: &[u32],
    sweep: &PerplexitySweep,
    device: &B::Device,
    mut on_row: impl FnMut(&PerplexityRow),
) -> ModelResult<Vec<PerplexityRow>> {
    let longest = sweep.contexts.iter().copied().max().unwrap_or(0);
    if longest > tokens.len() {
        return Err(ModelError::Eval(format!(
            "context {longest} is longer than the text ({} tokens)",
            tokens.len()
        )));
    }
    let mut rows = Vec::new();
    for &context in &sweep.contexts {
        let passage = &tokens[..context];
        let mut dense: Option<SequenceScore> = None;
        for setting in settings(&sweep.methods, &sweep.sparsities, &sweep.presets) {
            let configured = setting.configure(&model.config, context, &sweep.options())?;
            let start = Instant::now();
            let score = sweep.protocol.score(model, &configured.plan, passage, device)?;
            let row = PerplexityRow {
                method: setting.method,
                preset: setting.preset,
                context,
                sparsity: configured.sparsity,
                keys_per_query: configured.keys_per_query,
                perplexity: score.perplexity(),
                agreement_with_dense: dense.as_ref().map_or(1.0, |d| score.agreement(d)),
                seconds: start.elapsed().as_secs_f64(),
                protocol: sweep.protocol,
            };
            on_row(&row);
            rows.push(row);
            dense.get_or_insert(score);
        }
    }
    Ok(rows)
}
