//! A progress display for logs: a line every few steps with the running metrics, and one
//! at the end of each validation.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};

/// Prints `train epoch E step S/N Loss .. Recall@k .. (T s)` every `every` steps, `T` the
/// seconds since the renderer was made.
pub struct LineRenderer {
    every: usize,
    start: Instant,
    names: HashMap<MetricId, String>,
    train: BTreeMap<String, String>,
    valid: BTreeMap<String, String>,
}

impl LineRenderer {
    /// A renderer printing every `every` steps.
    pub fn new(every: usize) -> Self {
        Self {
            every: every.max(1),
            start: Instant::now(),
            names: HashMap::new(),
            train: BTreeMap::new(),
            valid: BTreeMap::new(),
        }
    }

    fn record(&self, into: &mut BTreeMap<String, String>, state: MetricState) {
        let entry = match state {
            MetricState::Generic(e) | MetricState::Numeric(e, _) => e,
        };
        let name =
            self.names.get(&entry.metric_id).cloned().unwrap_or_else(|| format!("{:?}", entry.metric_id));
        into.insert(name.clone(), format!("{name} {}", entry.serialized_entry.formatted));
    }
}

fn line(metrics: &BTreeMap<String, String>) -> String {
    metrics.values().cloned().collect::<Vec<_>>().join("  ")
}

impl MetricsRendererTraining for LineRenderer {
    fn update_train(&mut self, state: MetricState) {
        let mut train = std::mem::take(&mut self.train);
        self.record(&mut train, state);
        self.train = train;
    }

    fn update_valid(&mut self, state: MetricState) {
        let mut valid = std::mem::take(&mut self.valid);
        self.record(&mut valid, state);
        self.valid = valid;
    }

    fn render_train(&mut self, item: TrainingProgress, _progress: Vec<ProgressType>) {
        let step = item.progress.as_ref().map_or(0, |p| p.items_processed);
        let total = item.progress.as_ref().map_or(0, |p| p.items_total);
        if step.is_multiple_of(self.every) || step == total {
            eprintln!(
                "train epoch {}/{} step {step}/{total}  {}  ({:.0} s)",
                item.global_progress.items_processed,
                item.global_progress.items_total,
                line(&self.train),
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    fn render_valid(&mut self, item: TrainingProgress, _progress: Vec<ProgressType>) {
        if let Some(p) = &item.progress {
            if p.items_processed == p.items_total {
                eprintln!("valid epoch {}  {}", item.global_progress.items_processed, line(&self.valid));
            }
        }
    }
}

impl MetricsRendererEvaluation for LineRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}

    fn render_test(&mut self, _item: EvaluationProgress, _progress: Vec<ProgressType>) {}
}

impl MetricsRenderer for LineRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id.clone(), definition.name.to_string());
    }
}
