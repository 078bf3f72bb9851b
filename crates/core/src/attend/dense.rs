//! Exact attention with log-sum-exp output: the ground truth of every sparse method.

use burn::tensor::{backend::Backend, Tensor};

use super::chunks::query_chunks;
use super::options::AttnOptions;
use super::output::AttnOutput;
use super::softmax::masked_softmax;
use crate::error::AttnResult;
use crate::kernels::{self, KernelWindow};
use crate::positions::QueryPositions;
use crate::positions::{future_mask, last_visible_keys};
use crate::shape::{group_heads, ungroup_heads, AttnShape};

/// Exact softmax attention.
///
/// - `q`: `[batch, query_heads, query_len, head_dim]`
/// - `k`: `[batch, kv_heads, kv_len, head_dim]`, `kv_heads` divides `query_heads` (GQA;
///   K and V are not copied per query head)
/// - `v`: `[batch, kv_heads, kv_len, value_dim]`
/// - returns output `[batch, query_heads, query_len, value_dim]` and lse
///   `[batch, query_heads, query_len]`
///
/// Causality and query positions come from `options` (see [`AttnOptions`]). Queries are
/// processed in chunks, so memory stays bounded at long contexts. NaN in an input
/// propagates to every output row that reads it. On a CubeCL backend, causal attention runs
/// in a kernel (see [`crate::kernels`]) that never forms the logits matrix.
pub fn dense_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    options: &AttnOptions,
) -> AttnResult<AttnOutput<B>> {
    let shape = AttnShape::of(&q, &k, &v)?;
    let positions = options.positions(&shape)?;
    let scale = options.scale_for(shape.head_dim);
    if positions.causal {
        if let Some(out) = dense_kernel(&q, &k, &v, &shape, &positions, scale) {
            return Ok(out);
        }
    }
    let per_query = shape.batch * shape.query_heads * shape.kv_len;
    let parts = query_chunks(shape.query_len, per_query)
        .into_iter()
        .map(|(start, len)| {
            let q = q.clone().narrow(2, start, len);
            dense_chunk(q, k.clone(), v.clone(), &shape, &positions.shifted(start), scale)
        })
        .collect();
    Ok(AttnOutput::cat(parts))
}

/// Causal attention in a kernel: tiles of queries sharing each K/V read when there are
/// enough of them to fill a GPU (or a whole tensor-core tile of queries: those kernels are
/// fast enough anyway), else one row per KV head (its query heads share the reads) with the
/// keys split across cubes, as in decoding.
fn dense_kernel<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    shape: &AttnShape,
    positions: &QueryPositions,
    scale: f64,
) -> Option<AttnOutput<B>> {
    /// Query tiles below which splitting the keys gives more parallelism.
    const ENOUGH_TILES: usize = 512;
    /// Queries from which the tensor-core kernel takes the tiles.
    const TENSOR_CORE_QUERIES: usize = 64;
    let tiles = shape.batch * shape.query_heads * shape.query_len.div_ceil(16);
    let tensor_cores = shape.query_len >= TENSOR_CORE_QUERIES
        && kernels::prefill_on_tensor_cores::<B>(&q.device(), q.dtype());
    if tiles >= ENOUGH_TILES || tensor_cores {
        let everything = KernelWindow { first_position: positions.offset, sink: 0, window: usize::MAX };
        kernels::block_sparse_attention(q, k, v, None, everything, scale)
    } else {
        let everything = KernelWindow { first_position: positions.offset, sink: shape.kv_len, window: 0 };
        kernels::sparse_attention(q, k, v, None, shape.groups(), everything, scale)
    }
}

fn dense_chunk<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    shape: &AttnShape,
    positions: &QueryPositions,
    scale: f64,
) -> AttnOutput<B> {
    let [batch, _, len, _] = q.dims();
    let rows = shape.groups() * len;
    let logits = group_heads(q, shape.kv_heads).matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    let invalid = positions.causal.then(|| {
        let last = last_visible_keys::<B>(positions, len, shape.groups(), &logits.device());
        future_mask(last, shape.kv_len).reshape([1, 1, rows, shape.kv_len]).expand([
            batch,
            shape.kv_heads,
            rows,
            shape.kv_len,
        ])
    });
    let (probs, lse) = masked_softmax(logits, invalid);
    let output = ungroup_heads(probs.matmul(v), shape.query_heads);
    let lse = ungroup_heads(lse, shape.query_heads).squeeze_dim(3);
    AttnOutput { output, lse }
}
