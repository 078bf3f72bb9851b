//! Evaluation of a model with a given attention: perplexity and next-token agreement.

use burn::tensor::{activation::log_softmax, backend::Backend, Int, Tensor, TensorData};

use serde::Serialize;

use crate::error::{ModelError, ModelResult};
use crate::llama::{AttentionPlan, Llama};

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
    let ids: Vec<i64> = tokens.iter().map(|&x| x as i64).collect();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [1, t]), device);
    let hidden = model.hidden(input, &mut model.new_caches())?;
    let scored = t - 1 - score_from;
    let logits = model.logits(hidden.narrow(1, score_from, scored));
    let vocab = logits.dims()[2];
    let logits = logits.reshape([scored, vocab]);
    let targets: Vec<i64> = ids[score_from + 1..].to_vec();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [scored]), device);
    let log_probs = log_softmax(logits.clone(), 1);
    let picked = log_probs.gather(1, targets.reshape([scored, 1]));
    let nll = -picked.mean().into_scalar().elem::<f64>();
    let argmax: Vec<i64> = logits.argmax(1).into_data().convert::<i64>().to_vec().unwrap();
    Ok(SequenceScore { nll, argmax: argmax.into_iter().map(|x| x as u32).collect() })
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
    let ids = |range: std::ops::Range<usize>| {
        let ids: Vec<i64> = tokens[range.clone()].iter().map(|&x| x as i64).collect();
        Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, range.len()]), device)
    };
    model.set_attention(&AttentionPlan::dense(), device)?;
    let mut caches = model.new_caches();
    model.hidden(ids(0..score_from), &mut caches)?;
    caches.iter_mut().for_each(|cache| cache.hand_over());
    model.set_attention(plan, device)?;
    let (mut picked, mut argmax) = (Vec::new(), Vec::new());
    for i in score_from..t - 1 {
        let logits = model.logits(model.hidden(ids(i..i + 1), &mut caches)?);
        let vocab = logits.dims()[2];
        let logits = logits.reshape([1, vocab]);
        let target =
            Tensor::<B, 2, Int>::from_data(TensorData::new(vec![tokens[i + 1] as i64], [1, 1]), device);
        picked.push(log_softmax(logits.clone(), 1).gather(1, target).reshape([1]));
        argmax.push(logits.argmax(1).reshape([1]));
    }
    let nll = -Tensor::cat(picked, 0).mean().into_scalar().elem::<f64>();
    let argmax: Vec<i64> = Tensor::cat(argmax, 0).into_data().convert::<i64>().to_vec().unwrap();
    Ok(SequenceScore { nll, argmax: argmax.into_iter().map(|x| x as u32).collect() })
}

use burn::tensor::ElementConversion;
