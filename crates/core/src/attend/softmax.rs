//! Masked softmax that also returns the log-sum-exp, safe for rows with no valid key.

use burn::tensor::{backend::Backend, Bool, Tensor};

/// Softmax over the last axis of `logits: [.., n]`, ignoring entries where `invalid` is true.
///
/// Returns `(probabilities [.., n], lse [.., 1])`. A row without any valid entry gets zero
/// probabilities and `lse = -inf`, so that it contributes nothing when merged. NaN logits
/// propagate to their row.
pub(crate) fn masked_softmax<B: Backend, const D: usize>(
    logits: Tensor<B, D>,
    invalid: Option<Tensor<B, D, Bool>>,
) -> (Tensor<B, D>, Tensor<B, D>) {
    let last = D - 1;
    let logits = match invalid {
        Some(mask) => logits.mask_fill(mask, f32::NEG_INFINITY),
        None => logits,
    };
    let max = logits.clone().detach().max_dim(last);
    let max = max.clone().mask_fill(max.equal_elem(f32::NEG_INFINITY), 0.0);
    let weights = (logits - max.clone()).exp();
    let sum = weights.clone().sum_dim(last);
    let lse = max + sum.clone().log();
    (weights / sum.clamp_min(f32::MIN_POSITIVE), lse)
}
