//! Evaluation of a model with a given attention: perplexity and next-token agreement.

use burn::tensor::{activation::log_softmax, backend::Backend, FloatDType, Tensor};

use serde::Serialize;

use crate::error::{ModelError, ModelResult};
use crate::llama::{token_ids, AttentionPlan, Llama};

/// What one pass over a token sequence measured.
#[derive(Debug, Clone)]
pub struct SequenceScore {
    /// Mean negative log-likelihood (nats) of the scored tokens.
    pub nll: f64,
    /// The model's most likely next token at each scored position.
    pub argmax: Vec<u32>,
}

impl SequenceScore {
    /// `exp(nll)`.
    pub fn perplexity(&self) -> f64 {
        self.nll.exp()
    }

    /// Fraction of positions whose most likely next token equals `other`'s.
    pub fn agreement(&self, other: &SequenceScore) -> f64 {
        let same = self.argmax.iter().zip(&other.argmax).filter(|(a, b)| a == b).count();
        same as f64 / self.argmax.len().max(1) as f64
    }
}

/// Runs `tokens` through `model` in one causal prefill and scores the prediction of
/// tokens `score_from + 1 ..` (the first `score_from` tokens are context only).
pub fn score_sequence<B: Backend>(
    model: &Llama<B>,
    tokens: &[u32],
    score_from: usize,
    device: &B::Device,
) -> ModelResult<SequenceScore> {
    let t = tokens.len();
    assert!(score_from + 1 < t, "nothing to score: {t} tokens, scoring from {score_from}");
    let hidden = model.hidden(token_ids(tokens, device), &mut model.new_caches())?;
    let logits = model.logits(hidden.narrow(1, score_from, t - 1 - score_from));
    Ok(score_logits(logits, &tokens[score_from + 1..], device))
}

/// The score of `logits: [1, n, vocab]` predicting `targets` (`n` tokens).
fn score_logits<B: Backend>(logits: Tensor<B, 3>, targets: &[u32], device: &B::Device) -> SequenceScore {
    let [_, n, vocab] = logits.dims();
    // Log-probabilities and their mean in f32 whatever the model's float type.
    let logits = logits.reshape([n, vocab]).cast(FloatDType::F32);
    let targets = token_ids::<B>(targets, device).reshape([n, 1]);
    let picked = log_softmax(logits.clone(), 1).gather(1, targets);
    let nll = -picked.mean().into_scalar().elem::<f64>();
    let argmax: Vec<i64> = logits.argmax(1).into_data().convert::<i64>().to_vec().unwrap();
    SequenceScore { nll, argmax: argmax.into_iter().map(|x| x as u32).collect() }
}

/// How a method meets the text it is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// The whole passage in one causal pass with the method (every token's attention is
    /// sparse): the harsh setting.
    SparsePrefill,
    /// The passage but its last `decoded` tokens is prefilled with dense attention; the KV
    /// caches are handed over to the method, which then reads the last `decoded` tokens one
    /// decode step at a time (teacher-forced), each predicting the next: how HashAttention
    /// and Quest are deployed (dense prompt, sparse generation).
    DensePrefillSparseDecode {
        /// Tokens decoded (and scored) after the dense prefill.
        decoded: usize,
    },
}

impl Protocol {
    /// The position scoring starts from in a passage of `context` tokens (the tokens up to
    /// it are context only): the second half for sparse prefill, the decoded tail otherwise.
    pub fn score_from(&self, context: usize) -> ModelResult<usize> {
        match *self {
            Protocol::SparsePrefill => Ok(context / 2),
            Protocol::DensePrefillSparseDecode { decoded } if decoded >= 1 && decoded + 2 <= context => {
                Ok(context - 1 - decoded)
            }
            Protocol::DensePrefillSparseDecode { decoded } => Err(ModelError::Eval(format!(
                "{decoded} decoded tokens do not fit a passage of {context} (give 1..={})",
                context.saturating_sub(2)
            ))),
        }
    }

    /// Scores `tokens` from `score_from` under this protocol with the attention of `plan`
    /// (the model's attention is left as `plan` sets it).
    pub fn score<B: Backend>(
        &self,
        model: &mut Llama<B>,
        plan: &AttentionPlan,
        tokens: &[u32],
        device: &B::Device,
    ) -> ModelResult<SequenceScore> {
        let score_from = self.score_from(tokens.len())?;
        match self {
            Protocol::SparsePrefill => {
                model.set_attention(plan, device)?;
                score_sequence(model, tokens, score_from, device)
            }
            Protocol::DensePrefillSparseDecode { .. } => {
                score_decoding(model, plan, tokens, score_from, device)
            }
        }
    }
}

/// Scores the prediction of tokens `score_from + 1 ..` as a deployment decodes them: tokens
/// `..score_from` are prefilled densely, the caches handed over to the attention of `plan`,
/// then every later token is one decode step whose logits predict the next.
pub fn score_decoding<B: Backend>(
    model: &mut Llama<B>,
    plan: &AttentionPlan,
    tokens: &[u32],
    score_from: usize,
    device: &B::Device,
) -> ModelResult<SequenceScore> {
    let t = tokens.len();
    assert!(score_from >= 1 && score_from + 1 < t, "nothing to score: {t} tokens, scoring from {score_from}");
    model.set_attention(&AttentionPlan::dense(), device)?;
    let mut caches = model.new_caches();
    model.hidden(token_ids(&tokens[..score_from], device), &mut caches)?;
    caches.iter_mut().for_each(|cache| cache.hand_over());
    model.set_attention(plan, device)?;
    let mut logits = Vec::with_capacity(t - 1 - score_from);
    for i in score_from..t - 1 {
        logits.push(model.logits(model.hidden(token_ids(&tokens[i..i + 1], device), &mut caches)?));
    }
    Ok(score_logits(Tensor::cat(logits, 1), &tokens[score_from + 1..], device))
}

use burn::tensor::ElementConversion;
