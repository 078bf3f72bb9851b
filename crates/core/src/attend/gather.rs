//! Attention over an index set of keys per query.

use burn::tensor::{backend::Backend, IndexingUpdateOp, Tensor};

use super::chunks::query_chunks;
use super::output::AttnOutput;
use super::softmax::masked_softmax;
use crate::error::{AttnError, AttnResult};
use crate::kernels::{self, KernelWindow};
use crate::select::KeySelection;
use crate::shape::{group_heads, ungroup_heads, AttnShape};

/// Attention of each query over exactly its selected keys.
///
/// - `q`: `[batch, query_heads, query_len, head_dim]`
/// - `k`, `v`: `[batch, kv_heads, kv_len, head_dim | value_dim]`
/// - `selection`: `[batch, query_heads, query_len, n]` (see [`KeySelection`]); causality is
///   the selection's business, this attends to whatever is valid
/// - `scale`: logit scale, usually `1 / sqrt(head_dim)`
/// - returns output `[batch, query_heads, query_len, value_dim]` and lse
///   `[batch, query_heads, query_len]` (`-inf` where a query selected nothing)
///
/// Checks the selection's shape and that its indices lie in the context.
pub fn gather_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    selection: &KeySelection<B>,
    scale: f64,
) -> AttnResult<AttnOutput<B>> {
    let shape = AttnShape::of(&q, &k, &v)?;
    if !scale.is_finite() {
        return Err(AttnError::Config(format!("the logit scale must be finite, got {scale}")));
    }
    let [b, h, t, _] = selection.dims();
    if (b, h, t) != (shape.batch, shape.query_heads, shape.query_len) {
        let (qb, qh, qt) = (shape.batch, shape.query_heads, shape.query_len);
        return Err(AttnError::Shape {
            name: "selection",
            expected: format!("[{qb}, {qh}, {qt}, n] (batch, heads, queries of q)"),
            got: selection.dims().to_vec(),
        });
    }
    selection.check_in_range(shape.kv_len)?;
    Ok(gather_attention_unchecked(q, k, v, selection, &shape, scale))
}

/// [`gather_attention`] for selections that are right by construction.
///
/// Reference strategy: per chunk of queries, the logits against every key come from one
/// matmul, the selected ones are gathered, softmaxed, scattered back into a dense
/// probability matrix and multiplied with V. The result is exactly attention over the
/// selection; the cost is that of dense attention (matmuls are far faster than row-by-row
/// gathers on the CPU backends). On a CubeCL backend a kernel reads only the selected
/// keys instead (see [`crate::kernels`]).
pub(crate) fn gather_attention_unchecked<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    selection: &KeySelection<B>,
    shape: &AttnShape,
    scale: f64,
) -> AttnOutput<B> {
    let heavy = selection.indices.clone().mask_fill(selection.valid.clone().bool_not(), -1);
    let everything = KernelWindow { first_position: 0, sink: 0, window: 0 };
    if let Some(out) = kernels::sparse_attention(&q, &k, &v, Some(&heavy), 1, everything, scale) {
        return out;
    }
    let per_query = shape.batch * shape.query_heads * (2 * shape.kv_len + 3 * selection.width());
    let parts = query_chunks(shape.query_len, per_query)
        .into_iter()
        .map(|(start, len)| {
            let part = KeySelection {
                indices: selection.indices.clone().narrow(2, start, len),
                valid: selection.valid.clone().narrow(2, start, len),
            };
            gather_chunk(q.clone().narrow(2, start, len), k.clone(), v.clone(), part, shape, scale)
        })
        .collect();
    AttnOutput::cat(parts)
}

fn gather_chunk<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    selection: KeySelection<B>,
    shape: &AttnShape,
    scale: f64,
) -> AttnOutput<B> {
    let [batch, _, len, _] = selection.dims();
    let rows = shape.groups() * len;
    let indices = group_heads(selection.indices, shape.kv_heads);
    let all_logits = group_heads(q, shape.kv_heads).matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    let logits = all_logits.gather(3, indices.clone());
    let invalid = group_heads(selection.valid, shape.kv_heads).bool_not();
    let (probs, lse) = masked_softmax(logits, Some(invalid));
    let dense_probs = Tensor::<B, 4>::zeros([batch, shape.kv_heads, rows, shape.kv_len], &probs.device())
        .scatter(3, indices, probs, IndexingUpdateOp::Add);
    let output = dense_probs.matmul(v);
    AttnOutput {
        output: ungroup_heads(output, shape.query_heads),
        lse: ungroup_heads(lse, shape.query_heads).squeeze_dim(3),
    }
}
