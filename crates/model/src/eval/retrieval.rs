//! Passkey retrieval accuracy per method, context, depth and sparsity, against dense.

use burn::tensor::backend::Backend;
use burn_sparse_attn_core::rng::SplitMix64;
use serde::Serialize;

use super::suite::{plan, settings, KeyBudget, MethodKind};
use crate::error::{ModelError, ModelResult};
use crate::llama::Llama;
use crate::passkey::{passkey_prompt, retrieves_passkey};
use crate::tokenizer::GgufTokenizer;

/// What a passkey sweep runs: every method at every sparsity, for every context and depth,
/// `trials` passkeys each.
#[derive(Debug, Clone)]
pub struct PasskeySweep {
    /// Prompt lengths in tokens.
    pub contexts: Vec<usize>,
    /// Where the needle sits (0 = start of the filler, 1 = end).
    pub depths: Vec<f64>,
    /// Sparsity factors (8.0 attends to an eighth of the keys).
    pub sparsities: Vec<f64>,
    /// Methods; dense is always run (once per context) as the reference.
    pub methods: Vec<MethodKind>,
    /// Passkeys per context and depth.
    pub trials: usize,
    /// Layers kept dense in every method.
    pub dense_layers: Vec<usize>,
    /// Trained HashAttention mappings (a folder per `HashMappings::save_dir`); random
    /// mappings when `None`.
    pub hash_mappings: Option<std::path::PathBuf>,
    /// HashAttention with one key list per KV head instead of one per query head.
    pub shared_selection: bool,
    /// Seed of the passkeys.
    pub seed: u64,
}

impl PasskeySweep {
    /// Number of rows: one per method setting, context and depth.
    pub fn rows(&self) -> usize {
        self.contexts.len() * self.depths.len() * settings(&self.methods, &self.sparsities).len()
    }
}

/// Accuracy of one method setting at one context and depth.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyRow {
    /// The method.
    pub method: MethodKind,
    /// Prompt length in tokens.
    pub context: usize,
    /// Sparsity factor (1 for dense).
    pub sparsity: f64,
    /// Needle depth.
    pub depth: f64,
    /// Passkeys asked.
    pub trials: usize,
    /// Passkeys the greedy answer contained.
    pub found: usize,
    /// `found / trials`.
    pub accuracy: f64,
}

/// Runs `sweep`, calling `on_row` as each row is measured.
pub fn passkey_sweep<B: Backend>(
    model: &mut Llama<B>,
    tokenizer: &GgufTokenizer,
    sweep: &PasskeySweep,
    device: &B::Device,
    mut on_row: impl FnMut(&PasskeyRow),
) -> ModelResult<Vec<PasskeyRow>> {
    if sweep.trials == 0 {
        return Err(ModelError::Eval("a passkey sweep needs at least one trial".into()));
    }
    let mut rng = SplitMix64::new(sweep.seed);
    let passkeys: Vec<u32> = (0..sweep.trials).map(|_| 10_000 + (rng.next_u64() % 90_000) as u32).collect();
    let runs = settings(&sweep.methods, &sweep.sparsities);
    let mut rows = Vec::new();
    for &context in &sweep.contexts {
        for &(method, sparsity) in &runs {
            let budget = KeyBudget::new(context, sparsity)?;
            let plan = plan(
                method,
                &model.config,
                &budget,
                &sweep.dense_layers,
                &sweep.hash_mappings,
                sweep.shared_selection,
            );
            model.set_attention(&plan, device)?;
            for &depth in &sweep.depths {
                let mut found = 0;
                for &passkey in &passkeys {
                    found += retrieves_passkey(model, tokenizer, context, depth, passkey)?.0 as usize;
                }
                let row = PasskeyRow {
                    method,
                    context,
                    sparsity,
                    depth,
                    trials: sweep.trials,
                    found,
                    accuracy: found as f64 / sweep.trials as f64,
                };
                on_row(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// Checks that `passkey_prompt` can build prompts of every context (the fixed text fits).
pub fn check_contexts(tokenizer: &GgufTokenizer, contexts: &[usize]) -> ModelResult<()> {
    for &context in contexts {
        let prompt = passkey_prompt(tokenizer, context, 0.5, 12345)?;
        if prompt.len() > context || prompt.len() + 32 < context {
            return Err(ModelError::Eval(format!(
                "a passkey prompt of {context} tokens came out at {} tokens; use a context of at least 128",
                prompt.len()
            )));
        }
    }
    Ok(())
}
