//! Evaluation of a model with a given attention: perplexity and next-token agreement.

use burn::tensor::{activation::log_softmax, backend::Backend, Int, Tensor, TensorData};

use crate::error::ModelResult;
use crate::llama::Llama;

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

use burn::tensor::ElementConversion;
