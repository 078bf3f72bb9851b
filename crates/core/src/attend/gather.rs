//! Attention over an index set of keys per query.

use burn::tensor::{backend::Backend, Int, Tensor};

use super::chunks::query_chunks;
use super::output::AttnOutput;
use super::softmax::masked_softmax;
use crate::error::{AttnError, AttnResult};
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
    let [b, h, t, _] = selection.dims();
    if (b, h, t) != (shape.batch, shape.query_heads, shape.query_len) {
        return Err(AttnError::Shape {
            name: "selection",
            expected: format!("[{b}, {h}, {t}, n] (batch, heads, queries of q)"),
            got: selection.dims().to_vec(),
        });
    }
    selection.check_in_range(shape.kv_len)?;
    Ok(gather_attention_unchecked(q, k, v, selection, &shape, scale))
}

/// [`gather_attention`] for selections that are right by construction.
pub(crate) fn gather_attention_unchecked<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    selection: &KeySelection<B>,
    shape: &AttnShape,
    scale: f64,
) -> AttnOutput<B> {
    let width = selection.width();
    let per_query = shape.batch * shape.query_heads * width * (shape.head_dim + shape.value_dim);
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
    let [batch, _, len, width] = selection.dims();
    let rows = shape.groups() * len;
    let rows_of = |x: Tensor<B, 4, Int>| group_heads(x, shape.kv_heads);
    let flat = flat_key_rows(rows_of(selection.indices), shape.kv_len);
    let gather = |x: Tensor<B, 4>| {
        let dim = x.dims()[3];
        x.reshape([batch * shape.kv_heads * shape.kv_len, dim]).select(0, flat.clone()).reshape([
            batch,
            shape.kv_heads,
            rows,
            width,
            dim,
        ])
    };
    let keys = gather(k);
    let values = gather(v);
    let q = group_heads(q, shape.kv_heads).unsqueeze_dim::<5>(3);
    let logits = (q * keys).sum_dim(4).squeeze_dim::<4>(4).mul_scalar(scale);
    let invalid = group_heads(selection.valid, shape.kv_heads).bool_not();
    let (probs, lse) = masked_softmax(logits, Some(invalid));
    let output = (probs.unsqueeze_dim::<5>(4) * values).sum_dim(3).squeeze_dim::<4>(3);
    AttnOutput {
        output: ungroup_heads(output, shape.query_heads),
        lse: ungroup_heads(lse, shape.query_heads).squeeze_dim(3),
    }
}

/// `[batch, kv_heads, rows, n]` key positions -> flat row numbers into
/// `[batch * kv_heads * kv_len, dim]`.
fn flat_key_rows<B: Backend>(indices: Tensor<B, 4, Int>, kv_len: usize) -> Tensor<B, 1, Int> {
    let [b, h, rows, n] = indices.dims();
    let base = Tensor::<B, 1, Int>::arange(0..(b * h) as i64, &indices.device())
        .mul_scalar(kv_len as i64)
        .reshape([b, h, 1, 1]);
    (indices + base).reshape([b * h * rows * n])
}
