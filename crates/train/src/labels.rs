//! Training labels: each query's top-k keys by the true logit `q.k / sqrt(d)`, among the
//! keys sparse attention does not keep anyway (outside the sink and the recent window).

use burn::config::Config;
use burn::tensor::{backend::Backend, Bool, IndexingUpdateOp, Int, Tensor};
use burn_sparse_attn_core::kernels::{self, KernelWindow};

/// Which keys are labelled: the `top_k` best of those past the first `sink` keys and
/// before the `window` most recent ones (the query's own position included in the window).
#[derive(Config, Debug, PartialEq)]
pub struct LabelConfig {
    /// Keys at the start every query keeps anyway.
    #[config(default = 16)]
    pub sink: usize,
    /// Most recent keys every query keeps anyway.
    #[config(default = 64)]
    pub window: usize,
    /// Positive keys per query.
    #[config(default = 32)]
    pub top_k: usize,
}

impl LabelConfig {
    /// Eligible keys `[1, 1, count, end]` for queries at positions `start..start + count`
    /// over keys `0..end`: `sink <= j` and `j + window <= i`.
    pub fn eligible<B: Backend>(
        &self,
        start: usize,
        count: usize,
        end: usize,
        device: &B::Device,
    ) -> Tensor<B, 4, Bool> {
        let query =
            Tensor::<B, 1, Int>::arange(start as i64..(start + count) as i64, device).reshape([count, 1]);
        let key = Tensor::<B, 1, Int>::arange(0..end as i64, device).reshape([1, end]);
        let recent = key.clone().add_scalar(self.window as i64).greater(query);
        let sink = key.lower_elem(self.sink as i64);
        recent.bool_or(sink).bool_not().reshape([1, 1, count, end])
    }
}

/// True logits `[1, heads, count, end]` of queries `q: [1, heads, count, d]` against keys
/// `k: [1, kv_heads, end, d]` (query head `h` reads key head `h / (heads / kv_heads)`).
pub fn true_logits<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, heads, _, d] = q.dims();
    q.matmul(expand_heads(k, heads).transpose()).mul_scalar(1.0 / (d as f64).sqrt())
}

/// Labels `[1, heads, count, end]` and eligible keys `[1, 1, count, end]` of queries at
/// positions `start..start + count` with true `logits: [1, heads, count, end]`. On a CubeCL
/// backend the oracle's top-k kernel picks exactly `top_k` keys (ties to the earlier key) in
/// one launch; elsewhere [`top_k_labels`] keeps every key tied with the `top_k`-th.
pub fn labels_at<B: Backend>(
    config: &LabelConfig,
    logits: Tensor<B, 4>,
    start: usize,
) -> (Tensor<B, 4, Bool>, Tensor<B, 4, Bool>) {
    let dims = logits.dims();
    let eligible = config.eligible::<B>(start, dims[2], dims[3], &logits.device());
    let at = KernelWindow { first_position: start, sink: config.sink, window: config.window };
    let labels = match kernels::top_k_by_scores(&logits, at, config.top_k.min(dims[3])) {
        Some(best) => {
            // `-1` pads rows with fewer candidates: scatter nothing for them.
            let found = best.clone().greater_equal_elem(0).int();
            let marks = Tensor::<B, 4, Int>::zeros(dims, &logits.device()).scatter(
                3,
                best.clamp_min(0),
                found,
                IndexingUpdateOp::Add,
            );
            marks.greater_elem(0)
        }
        None => top_k_labels(logits, eligible.clone(), config.top_k),
    };
    (labels, eligible)
}

/// The `top_k` eligible keys of each query by `logits: [1, heads, count, end]` (all eligible
/// keys when fewer; keys tied with the `top_k`-th all count). `eligible` broadcasts over heads.
pub fn top_k_labels<B: Backend>(
    logits: Tensor<B, 4>,
    eligible: Tensor<B, 4, Bool>,
    top_k: usize,
) -> Tensor<B, 4, Bool> {
    let dims = logits.dims();
    let eligible = eligible.expand(dims);
    if dims[3] <= top_k {
        return eligible;
    }
    let masked = logits.mask_fill(eligible.clone().bool_not(), f32::NEG_INFINITY);
    let threshold = masked.clone().topk(top_k, 3).min_dim(3);
    masked.greater_equal(threshold.expand(dims)).bool_and(eligible)
}

/// Repeats key heads `[b, kv_heads, n, d]` to `heads` (each serving `heads / kv_heads` query heads).
pub(crate) fn expand_heads<B: Backend>(k: Tensor<B, 4>, heads: usize) -> Tensor<B, 4> {
    let [b, kv_heads, n, d] = k.dims();
    if kv_heads == heads {
        return k;
    }
    let groups = heads / kv_heads;
    k.unsqueeze_dim::<5>(2).expand([b, kv_heads, groups, n, d]).reshape([b, heads, n, d])
}
