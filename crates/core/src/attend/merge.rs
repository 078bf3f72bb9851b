//! Exact merge of attention results over disjoint key sets.

use burn::tensor::backend::Backend;

use super::output::AttnOutput;
use crate::error::{AttnError, AttnResult};

/// Merges two partial results by their log-sum-exp: attention over keys `A` and over keys
/// `B` (disjoint) gives exactly attention over `A ∪ B`.
///
/// Both parts: output `[batch, heads, queries, value_dim]`, lse `[batch, heads, queries]`.
/// A part with `lse = -inf` (no key) contributes nothing.
pub fn merge<B: Backend>(a: AttnOutput<B>, b: AttnOutput<B>) -> AttnResult<AttnOutput<B>> {
    if a.output.dims() != b.output.dims() || a.lse.dims() != b.lse.dims() {
        return Err(AttnError::Shape {
            name: "merge",
            expected: format!("both parts of output shape {:?}", a.output.dims()),
            got: b.output.dims().to_vec(),
        });
    }
    let max = a.lse.clone().max_pair(b.lse.clone()).detach();
    let max = max.clone().mask_fill(max.equal_elem(f32::NEG_INFINITY), 0.0);
    let wa = (a.lse - max.clone()).exp();
    let wb = (b.lse - max.clone()).exp();
    let sum = wa.clone() + wb.clone();
    let lse = max + sum.clone().log();
    let inv = sum.clamp_min(f32::MIN_POSITIVE).recip();
    let wa = (wa * inv.clone()).unsqueeze_dim::<4>(3);
    let wb = (wb * inv).unsqueeze_dim::<4>(3);
    Ok(AttnOutput { output: a.output * wa + b.output * wb, lse })
}
