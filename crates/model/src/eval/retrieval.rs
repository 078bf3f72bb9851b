//! Retrieval accuracy (the tasks of [`super::needles`]) per method, context, depth and
//! sparsity, against dense, under either protocol.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn_sparse_attn_core::Attention;
use serde::Serialize;

use super::needles::{answer_holds, retrieval_prompt, Haystack, RetrievalPrompt, RetrievalTask};
use super::score::Protocol;
use super::suite::{settings, MethodKind, Preset, SweepOptions};
use crate::error::{ModelError, ModelResult};
use crate::generate::{GenerationConfig, PromptFeed};
use crate::llama::{AttentionPlan, Llama};
use crate::tokenizer::GgufTokenizer;

/// What a retrieval sweep runs: every task, for every method setting (see [`settings`]),
/// context and depth, `trials` prompts each.
#[derive(Debug, Clone)]
pub struct RetrievalSweep {
    /// The tasks.
    pub tasks: Vec<RetrievalTask>,
    /// Prompt lengths in tokens.
    pub contexts: Vec<usize>,
    /// Where the asked needle sits (0 = start of the filler, 1 = end).
    pub depths: Vec<f64>,
    /// Sparsity factors of the equal-budget preset.
    pub sparsities: Vec<f64>,
    /// Methods; dense is always run (once per context) as the reference.
    pub methods: Vec<MethodKind>,
    /// How the methods are configured.
    pub presets: Vec<Preset>,
    /// Prompts per task, context and depth.
    pub trials: usize,
    /// Dense layers, hash mappings, shared selection.
    pub options: SweepOptions,
    /// `SparsePrefill`: the whole prompt is prefilled with the method, which then decodes the
    /// answer. `DensePrefillSparseDecode`: the context (filler and needles) is prefilled
    /// densely, then the question and the answer are decoded one token at a time with the
    /// method (its `decoded` count does not apply).
    pub protocol: Protocol,
    /// Seed of the prompts (keys, values, filler places).
    pub seed: u64,
}

impl RetrievalSweep {
    /// Number of rows: one per task, method setting, context and depth.
    pub fn rows(&self) -> usize {
        self.tasks.len()
            * self.contexts.len()
            * self.depths.len()
            * settings(&self.methods, &self.sparsities, &self.presets).len()
    }

    /// Builds one prompt of every task at every context, so that a bad context or a missing
    /// haystack fails before any model runs.
    pub fn check(&self, tokenizer: &GgufTokenizer, haystack: Option<&Haystack>) -> ModelResult<()> {
        if self.trials == 0 {
            return Err(ModelError::Eval("a retrieval sweep needs at least one trial".into()));
        }
        for &task in &self.tasks {
            for &context in &self.contexts {
                retrieval_prompt(task, tokenizer, haystack, context, 0.5, self.seed)?;
            }
        }
        Ok(())
    }
}

/// Accuracy of one method setting on one task at one context and depth.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalRow {
    /// The task.
    pub task: RetrievalTask,
    /// The method.
    pub method: MethodKind,
    /// How it was configured.
    pub preset: Preset,
    /// How the prompt met the method.
    pub protocol: Protocol,
    /// Prompt length in tokens.
    pub context: usize,
    /// Sparsity factor (1 for dense).
    pub sparsity: f64,
    /// Keys the last query attends to in a sparse layer.
    pub keys_per_query: usize,
    /// Depth of the asked needle.
    pub depth: f64,
    /// Prompts asked.
    pub trials: usize,
    /// Prompts whose greedy answer held every expected value.
    pub found: usize,
    /// `found / trials`.
    pub accuracy: f64,
    /// Wall time of the row.
    pub seconds: f64,
}

/// Runs `sweep` (`haystack` feeds the tasks with book filler), calling `on_row` as each row
/// is measured. The model is left with dense attention.
pub fn retrieval_sweep<B: Backend>(
    model: &mut Llama<B>,
    tokenizer: &GgufTokenizer,
    haystack: Option<&Haystack>,
    sweep: &RetrievalSweep,
    device: &B::Device,
    mut on_row: impl FnMut(&RetrievalRow),
) -> ModelResult<Vec<RetrievalRow>> {
    sweep.check(tokenizer, haystack)?;
    let dense = model.build_attention(&AttentionPlan::dense(), device)?;
    let mut rows = Vec::new();
    for &context in &sweep.contexts {
        for (t, &task) in sweep.tasks.iter().enumerate() {
            let mut prompts = Vec::new();
            for (d, &depth) in sweep.depths.iter().enumerate() {
                let trials = (0..sweep.trials).map(|trial| {
                    let seed =
                        sweep.seed ^ ((t * 1_000_003 + d * 1009 + trial) as u64).wrapping_mul(0x9e37_79b9);
                    retrieval_prompt(task, tokenizer, haystack, context, depth, seed)
                });
                prompts.push(trials.collect::<ModelResult<Vec<_>>>()?);
            }
            for setting in settings(&sweep.methods, &sweep.sparsities, &sweep.presets) {
                let configured = setting.configure(&model.config, context, &sweep.options)?;
                let attention = model.build_attention(&configured.plan, device)?;
                for (&depth, prompts) in sweep.depths.iter().zip(&prompts) {
                    let start = Instant::now();
                    let answers = match sweep.protocol {
                        Protocol::SparsePrefill => {
                            model.use_attention(attention.clone());
                            answer_batch(model, tokenizer, prompts)?
                        }
                        protocol => prompts
                            .iter()
                            .map(|prompt| answer(model, tokenizer, prompt, &dense, &attention, protocol))
                            .collect::<ModelResult<Vec<_>>>()?,
                    };
                    let found =
                        prompts.iter().zip(&answers).filter(|(p, a)| answer_holds(a, &p.answers)).count();
                    let row = RetrievalRow {
                        task,
                        method: setting.method,
                        preset: setting.preset,
                        protocol: sweep.protocol,
                        context,
                        sparsity: configured.sparsity,
                        keys_per_query: configured.keys_per_query,
                        depth,
                        trials: prompts.len(),
                        found,
                        accuracy: found as f64 / prompts.len() as f64,
                        seconds: start.elapsed().as_secs_f64(),
                    };
                    on_row(&row);
                    rows.push(row);
                }
            }
        }
    }
    model.use_attention(dense);
    Ok(rows)
}

/// The greedy answers to `prompts` (of one length: [`retrieval_prompt`] makes them so) with
/// the whole prompt prefilled by the attention the model holds, as one batch.
pub fn answer_batch<B: Backend>(
    model: &Llama<B>,
    tokenizer: &GgufTokenizer,
    prompts: &[RetrievalPrompt],
) -> ModelResult<Vec<String>> {
    let tokens: Vec<Vec<u32>> = prompts.iter().map(RetrievalPrompt::tokens).collect();
    let longest = prompts.iter().map(RetrievalPrompt::answer_tokens).max().unwrap_or(1);
    let generated = model.greedy_batch(&tokens, longest)?;
    prompts
        .iter()
        .zip(generated)
        .map(|(prompt, tokens)| tokenizer.decode(&tokens[..prompt.answer_tokens()]))
        .collect()
}

/// The model's greedy answer to `prompt` under `protocol`, `attention` being the method's
/// layers and `dense` dense ones (for the dense prefill).
pub fn answer<B: Backend>(
    model: &mut Llama<B>,
    tokenizer: &GgufTokenizer,
    prompt: &RetrievalPrompt,
    dense: &[Attention<B>],
    attention: &[Attention<B>],
    protocol: Protocol,
) -> ModelResult<String> {
    let config = GenerationConfig::new().with_max_new_tokens(prompt.answer_tokens()).with_past_context(true);
    let generation = match protocol {
        Protocol::SparsePrefill => {
            model.use_attention(attention.to_vec());
            model.generate(&prompt.tokens(), &config, |_| true)?
        }
        Protocol::DensePrefillSparseDecode { .. } => {
            model.use_attention(dense.to_vec());
            let mut caches = model.new_caches();
            let device = model.embedding.device();
            model.hidden(crate::llama::token_ids(&prompt.context, &device), &mut caches)?;
            caches.iter_mut().for_each(|cache| cache.hand_over());
            model.use_attention(attention.to_vec());
            model.generate_after(&mut caches, &prompt.question, PromptFeed::Decode, &config, |_| true)?
        }
    };
    tokenizer.decode(&generation.tokens)
}
