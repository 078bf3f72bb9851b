//! One training or validation step over every layer: labels from the true logits, the
//! relaxed scores' weighted cross-entropy, and recall@k of the hard signatures.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, Tensor};
use burn::train::{InferenceStep, TrainOutput, TrainStep};

use std::sync::Arc;

use crate::centring::KeyCentring;
use crate::data::QkBatch;
use crate::labels::{labels_at, true_logits, LabelConfig};
use crate::metrics::HashStepOutput;
use crate::objective::{recall_at_budget, relaxed_scores, weighted_bce};
use burn_sparse_attn_core::HashMappings;

/// Queries of a step whose recall is measured (its first ones): recall counts matches at
/// every one of the `bits + 1` levels, `bits + 1` passes over `[heads, queries, keys]`; a
/// sample of the step's queries keeps the metric cheap at 8K tokens (not measured apart).
pub const RECALL_QUERIES: usize = 32;

/// The mappings with what a step needs to know besides them.
#[derive(burn::module::Module, Debug)]
pub struct HashTrainee<B: Backend> {
    /// The mappings being learned.
    pub mappings: HashMappings<B>,
    /// Labelling rule.
    #[module(skip)]
    pub labels: LabelConfig,
    /// Positive weight `alpha + beta * keys`.
    #[module(skip)]
    pub alpha: f64,
    /// See `alpha`.
    #[module(skip)]
    pub beta: f64,
    /// Signature bits (for recall).
    #[module(skip)]
    pub bits: usize,
    /// Standardises queries and keys before the mappings (see [`KeyCentring`]).
    #[module(skip)]
    pub centring: Option<Arc<KeyCentring>>,
}

/// Labels `[1, heads, count, end]` and eligible keys `[1, 1, count, end]` of one layer's
/// queries `[1, heads, count, d]` (first at `start`) and keys `[1, kv_heads, end, d]`.
pub fn layer_labels<B: Backend>(
    config: &LabelConfig,
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    start: usize,
) -> (Tensor<B, 4, Bool>, Tensor<B, 4, Bool>) {
    labels_at(config, true_logits(q, k), start)
}

impl<B: Backend> HashTrainee<B> {
    /// Loss and recall of `batch`, averaged over layers, with `labeler` giving each
    /// layer's labels and eligible keys (see [`layer_labels`]).
    pub fn measure(
        &self,
        batch: QkBatch<B>,
        labeler: impl Fn(Tensor<B, 4>, Tensor<B, 4>, usize) -> (Tensor<B, 4, Bool>, Tensor<B, 4, Bool>),
    ) -> HashStepOutput<B> {
        let layers = batch.queries.len();
        let mut loss: Option<Tensor<B, 1>> = None;
        let mut recall: Option<Tensor<B, 1>> = None;
        let layer_inputs = batch.queries.into_iter().zip(batch.keys).enumerate();
        for ((layer, (q, k)), mapping) in layer_inputs.zip(&self.mappings.layers) {
            let end = k.dims()[2];
            let (labels, eligible) = labeler(q.clone(), k.clone(), batch.start);
            let (q, k) = match &self.centring {
                Some(c) => (c.apply(layer, q), c.apply(layer, k)),
                None => (q, k),
            };
            let scores = relaxed_scores(mapping, q.clone(), k.clone()).expect("shapes of the captured model");
            let pos_weight = self.alpha + self.beta * end as f64;
            let layer_loss = weighted_bce(scores, labels.clone(), eligible.clone(), pos_weight);
            let n = q.dims()[2].min(RECALL_QUERIES);
            let hard = mapping
                .scores(q.narrow(2, 0, n).detach(), mapping.key_signatures(k.detach()).expect("shapes"))
                .expect("shapes")
                .detach();
            let (labels, eligible) = (labels.narrow(2, 0, n), eligible.narrow(2, 0, n));
            let layer_recall = recall_at_budget(hard, labels, eligible, self.bits, self.labels.top_k);
            loss = Some(loss.map_or(layer_loss.clone(), |l| l + layer_loss));
            recall = Some(recall.map_or(layer_recall.clone(), |r| r + layer_recall));
        }
        let mean = |t: Option<Tensor<B, 1>>| t.expect("at least one layer").div_scalar(layers as f64);
        HashStepOutput { loss: mean(loss), recall: mean(recall).detach() }
    }
}

impl<B: AutodiffBackend> TrainStep for HashTrainee<B> {
    type Input = QkBatch<B>;
    type Output = HashStepOutput<B>;

    fn step(&self, batch: QkBatch<B>) -> TrainOutput<HashStepOutput<B>> {
        let config = &self.labels;
        let output = self.measure(batch, |q, k, start| {
            // Labels on the inner backend: top-k has no autodiff (and needs none).
            let (labels, eligible) = layer_labels(config, q.inner(), k.inner(), start);
            (Tensor::from_inner(labels), Tensor::from_inner(eligible))
        });
        let grads = output.loss.backward();
        TrainOutput::new(self, grads, output)
    }
}

impl<B: Backend> InferenceStep for HashTrainee<B> {
    type Input = QkBatch<B>;
    type Output = HashStepOutput<B>;

    fn step(&self, batch: QkBatch<B>) -> HashStepOutput<B> {
        let config = &self.labels;
        self.measure(batch, |q, k, start| layer_labels(config, q, k, start))
    }
}
