//! burn-train metrics of hash-mapping training: the loss and recall@k, read from the
//! step outputs synced to plain numbers.

use std::sync::Arc;

use burn::tensor::{backend::Backend, ElementConversion, Tensor};
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, ItemLazy, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};

/// What a training or validation step measured, on the device.
#[derive(Debug, Clone)]
pub struct HashStepOutput<B: Backend> {
    /// Mean weighted cross-entropy over layers.
    pub loss: Tensor<B, 1>,
    /// Mean recall@k over layers.
    pub recall: Tensor<B, 1>,
}

/// A step's measures as numbers.
#[derive(Debug, Clone, Copy)]
pub struct HashStepStats {
    /// Loss.
    pub loss: f64,
    /// Recall@k.
    pub recall: f64,
}

impl<B: Backend> ItemLazy for HashStepOutput<B> {
    type ItemSync = HashStepStats;

    fn sync(self) -> HashStepStats {
        HashStepStats { loss: self.loss.into_scalar().elem(), recall: self.recall.into_scalar().elem() }
    }
}

/// Which number of [`HashStepStats`] a [`ScalarMetric`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepMeasure {
    /// The loss (metric name "Loss", which burn-train's checkpointing looks for).
    Loss,
    /// Recall@k.
    Recall,
}

/// A numeric metric tracking one measure of the steps (running mean over the epoch).
#[derive(Clone)]
pub struct ScalarMetric {
    name: MetricName,
    measure: StepMeasure,
    state: NumericMetricState,
}

impl ScalarMetric {
    /// The loss metric, named "Loss".
    pub fn loss() -> Self {
        Self { name: Arc::new("Loss".into()), measure: StepMeasure::Loss, state: NumericMetricState::new() }
    }

    /// The recall metric, named "Recall@{k}".
    pub fn recall(k: usize) -> Self {
        Self {
            name: Arc::new(format!("Recall@{k}")),
            measure: StepMeasure::Recall,
            state: NumericMetricState::new(),
        }
    }
}

impl Metric for ScalarMetric {
    type Input = HashStepStats;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes { unit: None, higher_is_better: self.measure == StepMeasure::Recall }.into()
    }

    fn update(&mut self, item: &HashStepStats, _metadata: &MetricMetadata) -> SerializedEntry {
        let value = match self.measure {
            StepMeasure::Loss => item.loss,
            StepMeasure::Recall => item.recall,
        };
        self.state.update(value, 1, FormatOptions::new(self.name()).precision(4))
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}

impl Numeric for ScalarMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

impl Adaptor<HashStepStats> for HashStepStats {
    fn adapt(&self) -> HashStepStats {
        *self
    }
}
