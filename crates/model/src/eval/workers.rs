//! Method settings of a retrieval sweep answered at once, on worker threads that live for
//! the whole sweep.
//!
//! Each worker holds its own copy of the model (the weights are shared; only the attention
//! layers differ). The threads are started once: on CubeCL backends a thread is a GPU
//! stream with its own memory pool, so threads started per task would each grow a new pool
//! while the old ones keep theirs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::Scope;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn_sparse_attn_core::{Attention, KvCache};

use super::needles::RetrievalPrompt;
use super::retrieval::{answer_after, answer_batch};
use super::score::Protocol;
use crate::error::{ModelError, ModelResult};
use crate::llama::Llama;
use crate::tokenizer::GgufTokenizer;

/// A task's prompts at one context, as every method setting meets them.
pub(crate) struct TaskPrompts<B: Backend> {
    pub prompts: Vec<RetrievalPrompt>,
    /// Indices of `prompts` run together (see [`super::retrieval::prompt_batches`]).
    pub batches: Vec<Vec<usize>>,
    /// Under the decode protocol, each batch's densely prefilled caches; empty otherwise.
    pub prefilled: Vec<Vec<KvCache<B>>>,
}

/// One setting's answers to a task's prompts, in prompt order, and the seconds they took.
pub(crate) type Answered = (Vec<String>, f64);

/// One setting (an attention per layer) to answer a task with.
struct Job<B: Backend> {
    index: usize,
    task: Arc<TaskPrompts<B>>,
    attention: Vec<Attention<B>>,
}

/// Answers every setting of a task, `jobs` at once (1: on the calling thread, in turn).
pub(crate) struct SettingWorkers<'a, B: Backend> {
    tokenizer: &'a GgufTokenizer,
    protocol: Protocol,
    /// `None` with one job.
    jobs: Option<Sender<Job<B>>>,
    results: Option<Receiver<(usize, ModelResult<Answered>)>>,
}

impl<'a, B: Backend> SettingWorkers<'a, B> {
    /// Starts `jobs` workers in `scope` (none for one job), each with a copy of `model`.
    pub fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        model: &Llama<B>,
        tokenizer: &'a GgufTokenizer,
        protocol: Protocol,
        jobs: usize,
    ) -> Self
    where
        'a: 'scope,
    {
        if jobs <= 1 {
            return Self { tokenizer, protocol, jobs: None, results: None };
        }
        let (job_sender, job_receiver) = channel::<Job<B>>();
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let (result_sender, results) = channel();
        for _ in 0..jobs {
            let mut own = model.clone();
            let (job_receiver, result_sender) = (job_receiver.clone(), result_sender.clone());
            scope.spawn(move || loop {
                let next = job_receiver.lock().map(|r| r.recv());
                let Ok(Ok(job)) = next else { break };
                // A panic becomes the setting's error, so that the sweep waiting for it ends.
                let answered = catch_unwind(AssertUnwindSafe(|| {
                    answer_setting(&mut own, tokenizer, protocol, &job.task, job.attention)
                }))
                .unwrap_or_else(|_| Err(ModelError::Eval("a method setting panicked".into())));
                if result_sender.send((job.index, answered)).is_err() {
                    break;
                }
            });
        }
        Self { tokenizer, protocol, jobs: Some(job_sender), results: Some(results) }
    }

    /// The answers of each setting of `attentions` to `task`, in the order given; `model`
    /// answers them itself with one job.
    pub fn answer_all(
        &self,
        model: &mut Llama<B>,
        task: TaskPrompts<B>,
        attentions: Vec<Vec<Attention<B>>>,
    ) -> ModelResult<Vec<Answered>> {
        let (Some(jobs), Some(results)) = (&self.jobs, &self.results) else {
            return attentions
                .into_iter()
                .map(|attention| answer_setting(model, self.tokenizer, self.protocol, &task, attention))
                .collect();
        };
        let task = Arc::new(task);
        let count = attentions.len();
        for (index, attention) in attentions.into_iter().enumerate() {
            let job = Job { index, task: task.clone(), attention };
            jobs.send(job).map_err(|_| ModelError::Eval("the setting workers stopped".into()))?;
        }
        let mut answered: Vec<Option<ModelResult<Answered>>> = (0..count).map(|_| None).collect();
        for _ in 0..count {
            let (index, result) =
                results.recv().map_err(|_| ModelError::Eval("the setting workers stopped".into()))?;
            answered[index] = Some(result);
        }
        answered.into_iter().map(|a| a.expect("one result per setting")).collect()
    }
}

/// `model` with `attention` answering every prompt of `task`, batch by batch.
fn answer_setting<B: Backend>(
    model: &mut Llama<B>,
    tokenizer: &GgufTokenizer,
    protocol: Protocol,
    task: &TaskPrompts<B>,
    attention: Vec<Attention<B>>,
) -> ModelResult<Answered> {
    let start = Instant::now();
    model.use_attention(attention);
    let mut answers = vec![String::new(); task.prompts.len()];
    for (b, batch) in task.batches.iter().enumerate() {
        let asked: Vec<RetrievalPrompt> = batch.iter().map(|&i| task.prompts[i].clone()).collect();
        let texts = match protocol {
            Protocol::SparsePrefill => answer_batch(model, tokenizer, &asked)?,
            Protocol::DensePrefillSparseDecode { .. } => {
                let mut caches: Vec<KvCache<B>> = task.prefilled[b].clone();
                answer_after(model, tokenizer, &mut caches, &asked)?
            }
        };
        batch.iter().zip(texts).for_each(|(&i, text)| answers[i] = text);
    }
    Ok((answers, start.elapsed().as_secs_f64()))
}
