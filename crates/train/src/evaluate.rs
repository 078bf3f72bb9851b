//! Recall of the true top-k keys within the budget of a sparsity, for given mappings, on
//! captured passages (held out of training).

use burn::tensor::{backend::Backend, ElementConversion};
use serde::Serialize;

use crate::capture::CapturedQk;
use crate::labels::{labels_at, true_logits, LabelConfig};
use crate::objective::recall_at_budget;
use burn_sparse_attn_core::HashMappings;

/// Recall of one set of mappings at one sparsity.
#[derive(Debug, Clone, Serialize)]
pub struct RecallRow {
    /// Which mappings ("trained", "random").
    pub mappings: String,
    /// Sparsity factor: the budget is the eligible keys / sparsity.
    pub sparsity: f64,
    /// Mean over layers, heads and queries of the fraction of the true top-k keys among the
    /// `budget` keys ranked first by the hard signatures.
    pub recall: f64,
}

/// Recall at each sparsity of `mappings` on `passage`, over its last `queries` query
/// positions (at most half of it).
pub fn recall_by_sparsity<B: Backend>(
    name: &str,
    mappings: &HashMappings<B>,
    passage: &CapturedQk,
    labels: &LabelConfig,
    sparsities: &[f64],
    queries: usize,
    device: &B::Device,
) -> Vec<RecallRow> {
    let end = passage.len;
    let start = end - queries.min(end / 2);
    let count = end - start;
    let mut sums = vec![0.0; sparsities.len()];
    for (layer, mapping) in mappings.layers.iter().enumerate() {
        let q = passage.queries::<B>(layer, start, count, device);
        let k = passage.keys::<B>(layer, end, device);
        let (truth, eligible) = labels_at(labels, true_logits(q.clone(), k.clone()), start);
        let bits = mapping.bits();
        let hard = mapping.scores(q, mapping.key_signatures(k).expect("shapes")).expect("shapes");
        let keys = end.saturating_sub(labels.sink + labels.window) as f64;
        for (sum, &s) in sums.iter_mut().zip(sparsities) {
            let budget = ((keys / s).round() as usize).max(1);
            let r = recall_at_budget(hard.clone(), truth.clone(), eligible.clone(), bits, budget);
            *sum += r.into_scalar().elem::<f64>();
        }
    }
    let layers = mappings.layers.len() as f64;
    sparsities
        .iter()
        .zip(sums)
        .map(|(&sparsity, sum)| RecallRow { mappings: name.to_string(), sparsity, recall: sum / layers })
        .collect()
}

/// [`recall_by_sparsity`] averaged over `passages`, each over its last `queries` positions
/// (e.g. the question of a retrieval prompt: what a decode step after it selects for).
pub fn mean_recall_by_sparsity<B: Backend>(
    name: &str,
    mappings: &HashMappings<B>,
    passages: &[(CapturedQk, usize)],
    labels: &LabelConfig,
    sparsities: &[f64],
    device: &B::Device,
) -> Vec<RecallRow> {
    let mut rows: Vec<RecallRow> = sparsities
        .iter()
        .map(|&sparsity| RecallRow { mappings: name.to_string(), sparsity, recall: 0.0 })
        .collect();
    for (passage, queries) in passages {
        for (row, one) in rows
            .iter_mut()
            .zip(recall_by_sparsity(name, mappings, passage, labels, sparsities, *queries, device))
        {
            row.recall += one.recall / passages.len() as f64;
        }
    }
    rows
}
