//! Retrieval accuracy (the tasks of [`super::needles`]) per method, context, depth and
//! sparsity, against dense, under either protocol.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn_sparse_attn_core::{Attention, KvCache};
use serde::Serialize;

use super::needles::{answer_holds, retrieval_prompt, Haystack, PromptFit, RetrievalPrompt, RetrievalTask};
use super::score::Protocol;
use super::suite::{settings, MethodKind, Preset, SweepOptions};
use super::workers::{SettingWorkers, TaskPrompts};
use crate::error::{ModelError, ModelResult};
use crate::generate::{GenerationConfig, PromptFeed};
use crate::llama::{token_batch, AttentionPlan, Llama};
use crate::tokenizer::GgufTokenizer;

/// What a retrieval sweep runs: every task, for every method setting (see [`settings`]),
/// context and depth, `trials` prompts each.
#[derive(Debug, Clone)]
pub struct RetrievalSweep {
    /// The tasks.
    pub tasks: Vec<RetrievalTask>,
    /// Prompt lengths in tokens, at most (see [`retrieval_prompt`]).
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
    /// The most prompts run as one batch (see [`prompt_batches`]). The decode protocol
    /// keeps a task's densely prefilled caches for the whole sweep of methods: about
    /// `prompts x context x 46 KB` for SmolLM2-135M in f32.
    pub batch: usize,
    /// Method settings run at once, each on its own thread with its own copy of the model
    /// (on CubeCL backends, its own GPU stream and memory pool), to fill a large GPU that one
    /// setting's launches and host waits leave partly idle (on an H200 the 4K sparse-prefill
    /// table takes 1.5x less time with 4; at 8K the GPU is already busy). 1 runs them in
    /// turn. Rows and answers do not depend on it.
    pub jobs: usize,
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
        if self.batch == 0 {
            return Err(ModelError::Eval("a retrieval sweep needs batches of at least one prompt".into()));
        }
        if self.jobs == 0 {
            return Err(ModelError::Eval("a retrieval sweep needs at least one job".into()));
        }
        for &task in &self.tasks {
            for &context in &self.contexts {
                retrieval_prompt(
                    task,
                    tokenizer,
                    haystack,
                    context,
                    0.5,
                    self.seed,
                    prompt_fit(self.protocol),
                )?;
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
    /// Prompt length in tokens, at most (see [`PromptFit`] for the exact lengths under each
    /// protocol).
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
    /// The greedy answers, one per prompt (to see how a method fails, or dense does).
    pub answers: Vec<String>,
    /// Wall time of the row: its share (one depth's) of the time its method setting took
    /// over the task's prompts, which run in batches across depths, and of the dense
    /// prefill those settings share under the decode protocol. With one job a sweep's rows
    /// add up to its time; with more, settings overlap and the rows add up to more.
    pub seconds: f64,
}

/// Runs `sweep` (`haystack` feeds the tasks with book filler), calling `on_row` as each row
/// is measured. The model is left with dense attention.
///
/// A task's prompts at one context run in batches of up to `sweep.batch` (see
/// [`prompt_batches`]); under the decode protocol their contexts are prefilled densely once,
/// and every method setting decodes from copies of those caches.
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
    let rows = std::thread::scope(|scope| {
        let workers = SettingWorkers::start(scope, model, tokenizer, sweep.protocol, sweep.jobs);
        sweep_rows(model, tokenizer, haystack, sweep, device, &dense, &workers, &mut on_row)
    });
    model.use_attention(dense);
    rows
}

/// The rows of [`retrieval_sweep`], each setting's answers from `workers`.
#[allow(clippy::too_many_arguments)]
fn sweep_rows<B: Backend>(
    model: &mut Llama<B>,
    tokenizer: &GgufTokenizer,
    haystack: Option<&Haystack>,
    sweep: &RetrievalSweep,
    device: &B::Device,
    dense: &[Attention<B>],
    workers: &SettingWorkers<B>,
    on_row: &mut impl FnMut(&RetrievalRow),
) -> ModelResult<Vec<RetrievalRow>> {
    let mut rows = Vec::new();
    for &context in &sweep.contexts {
        let mut runs = Vec::new();
        for setting in settings(&sweep.methods, &sweep.sparsities, &sweep.presets) {
            let configured = setting.configure(&model.config, context, &sweep.options)?;
            let attention = model.build_attention(&configured.plan, device)?;
            runs.push((setting, configured, attention));
        }
        for (t, &task) in sweep.tasks.iter().enumerate() {
            // Depth-major: the prompts of depth `d` are `d * trials..(d + 1) * trials`.
            let mut prompts = Vec::new();
            for (d, &depth) in sweep.depths.iter().enumerate() {
                for trial in 0..sweep.trials {
                    let seed =
                        sweep.seed ^ ((t * 1_000_003 + d * 1009 + trial) as u64).wrapping_mul(0x9e37_79b9);
                    let fit = prompt_fit(sweep.protocol);
                    prompts.push(retrieval_prompt(task, tokenizer, haystack, context, depth, seed, fit)?);
                }
            }
            let batches = prompt_batches(&prompts, sweep.protocol, sweep.batch);
            let start = Instant::now();
            let prefilled = match sweep.protocol {
                Protocol::SparsePrefill => Vec::new(),
                Protocol::DensePrefillSparseDecode { .. } => {
                    model.use_attention(dense.to_vec());
                    let contexts = |batch: &Vec<usize>| -> Vec<Vec<u32>> {
                        batch.iter().map(|&i| prompts[i].context.clone()).collect()
                    };
                    batches
                        .iter()
                        .map(|b| prefill_contexts(model, &contexts(b)))
                        .collect::<ModelResult<_>>()?
                }
            };
            // The shared dense prefill, spread over the task's rows.
            let shared = start.elapsed().as_secs_f64() / runs.len() as f64;
            let attentions = runs.iter().map(|(_, _, a)| a.clone()).collect();
            let task_prompts = TaskPrompts { prompts: prompts.clone(), batches, prefilled };
            let answered = workers.answer_all(model, task_prompts, attentions)?;
            for ((setting, configured, _), (answers, own_seconds)) in runs.iter().zip(answered) {
                let seconds = (shared + own_seconds) / sweep.depths.len() as f64;
                for (d, &depth) in sweep.depths.iter().enumerate() {
                    let at = d * sweep.trials..(d + 1) * sweep.trials;
                    let found = prompts[at.clone()]
                        .iter()
                        .zip(&answers[at.clone()])
                        .filter(|(p, a)| answer_holds(a, &p.answers))
                        .count();
                    let row = RetrievalRow {
                        task,
                        method: setting.method,
                        preset: setting.preset,
                        protocol: sweep.protocol,
                        context,
                        sparsity: configured.sparsity,
                        keys_per_query: configured.keys_per_query,
                        depth,
                        trials: sweep.trials,
                        found,
                        accuracy: found as f64 / sweep.trials as f64,
                        answers: answers[at].to_vec(),
                        seconds,
                    };
                    on_row(&row);
                    rows.push(row);
                }
            }
        }
    }
    Ok(rows)
}

/// The length a protocol's prompts share at one context, so that a task's prompts form as
/// few batches as they can: whole prompts for sparse prefill, context parts for the decode
/// protocol (which decodes the questions in lockstep).
pub fn prompt_fit(protocol: Protocol) -> PromptFit {
    match protocol {
        Protocol::SparsePrefill => PromptFit::Whole,
        Protocol::DensePrefillSparseDecode { .. } => PromptFit::ContextPart,
    }
}

/// Indices of `prompts` in batches of at most `batch` that can run together under
/// `protocol`: whole prompts of one length for sparse prefill, contexts of one length for
/// the decode protocol (its rows decode their questions in lockstep, whatever their
/// lengths). Groups in first-seen order.
pub fn prompt_batches(prompts: &[RetrievalPrompt], protocol: Protocol, batch: usize) -> Vec<Vec<usize>> {
    let length = |p: &RetrievalPrompt| match protocol {
        Protocol::SparsePrefill => p.context.len() + p.question.len(),
        Protocol::DensePrefillSparseDecode { .. } => p.context.len(),
    };
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let len = length(prompt);
        match groups.iter_mut().find(|(l, _)| *l == len) {
            Some((_, group)) => group.push(i),
            None => groups.push((len, vec![i])),
        }
    }
    groups
        .into_iter()
        .flat_map(|(_, group)| group.chunks(batch.max(1)).map(<[usize]>::to_vec).collect::<Vec<_>>())
        .collect()
}

/// KV caches of `contexts` (one length) prefilled as one batch by the attention the model
/// holds, handed over for another method to continue.
pub fn prefill_contexts<B: Backend>(model: &Llama<B>, contexts: &[Vec<u32>]) -> ModelResult<Vec<KvCache<B>>> {
    let mut caches = model.new_caches();
    model.hidden(token_batch(contexts, &model.embedding.device())?, &mut caches)?;
    caches.iter_mut().for_each(KvCache::hand_over);
    Ok(caches)
}

/// The greedy answers to `prompts`, whose contexts `caches` hold (one batch row each, see
/// [`prefill_contexts`]), each question fed one decode step at a time by the attention the
/// model holds, the rows in lockstep.
pub fn answer_after<B: Backend>(
    model: &Llama<B>,
    tokenizer: &GgufTokenizer,
    caches: &mut [KvCache<B>],
    prompts: &[RetrievalPrompt],
) -> ModelResult<Vec<String>> {
    let questions: Vec<Vec<u32>> = prompts.iter().map(|p| p.question.clone()).collect();
    let longest = prompts.iter().map(RetrievalPrompt::answer_tokens).max().unwrap_or(1);
    let generated = model.greedy_batch_after(caches, &questions, longest)?;
    prompts
        .iter()
        .zip(generated)
        .map(|(prompt, tokens)| tokenizer.decode(&tokens[..prompt.answer_tokens()]))
        .collect()
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
            let mut caches = prefill_contexts(model, std::slice::from_ref(&prompt.context))?;
            model.use_attention(attention.to_vec());
            model.generate_after(&mut caches, &prompt.question, PromptFeed::Decode, &config, |_| true)?
        }
    };
    tokenizer.decode(&generation.tokens)
}
