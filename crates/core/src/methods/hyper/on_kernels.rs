//! HyperAttention's two parts in the sorted order on the prefill kernel
//! ([`kernels::block_sparse_attention`]) instead of matmuls over padded blocks: no logits
//! tensor, no K/V copies per query head (the keys' LSH order is the same for every query
//! head of a KV head, so K and V stay sorted per KV head).
//!
//! Both parts attend keys that need not precede their queries. The kernel is causal, so the
//! queries are placed after the last key (`first_position = kv_len`), where every key is
//! visible, with no sink and an empty window: each query block sees exactly its key list.

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::attend::AttnOutput;
use crate::kernels::{self, BlockSizes, KernelWindow};
use crate::select::{int_tensor, kv_row_starts};

/// Exact attention of sorted query block `i` (`q_block` queries) over sorted key block `i`
/// (`block_size` keys; the last one may be short).
///
/// - `q`: `[batch, query_heads, query_len, head_dim]` in the queries' sorted order
/// - `k`, `v`: `[batch, kv_heads, kv_len, head_dim | value_dim]` in the keys' sorted order
/// - returns output `[batch, query_heads, query_len, value_dim]` and lse, or `None` where the
///   kernels do not run on this backend
pub(super) fn in_blocks<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    q_block: usize,
    block_size: usize,
    scale: f64,
) -> Option<AttnOutput<B>> {
    let [b, hq, nq, _] = q.dims();
    let kv_len = k.dims()[2];
    let query_blocks = nq.div_ceil(q_block);
    let starts =
        Tensor::<B, 1, Int>::arange_step(0..(query_blocks * block_size) as i64, block_size, &q.device())
            .reshape([1, 1, query_blocks, 1])
            .expand([b, hq, query_blocks, 1]);
    let sizes = BlockSizes { query_block: q_block, key_block: block_size };
    kernels::block_sparse_attention(q, k, v, Some((&starts, sizes)), after_every_key(kv_len), scale)
}

/// Attention over the sampled key columns outside each query's own block, with the weight of
/// a sample scaled by `kv_len / samples` (added to the lse).
///
/// - `q`: `[batch, query_heads, query_len, head_dim]` in the queries' sorted order
/// - `k`, `v`: `[batch, kv_heads, kv_len, head_dim | value_dim]` in the keys' sorted order
/// - `samples`: positions in the sorted keys, `[batch, query_heads, m]`
/// - returns output `[batch, query_heads, query_len, value_dim]` and lse, or `None` where the
///   kernels do not run on this backend
pub(super) fn over_samples<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    samples: &Tensor<B, 3, Int>,
    q_block: usize,
    block_size: usize,
    scale: f64,
) -> Option<AttnOutput<B>> {
    let [b, hq, nq, _] = q.dims();
    let [_, hkv, kv_len, _] = k.dims();
    let m = samples.dims()[2];
    let device = q.device();
    // The sampled rows of each query head's KV head, `[batch, query_heads, m, e]`.
    let heads = kv_row_starts(b, hq, hkv, kv_len);
    let rows = int_tensor::<B, 3>(heads, [b, hq, 1], &device) + samples.clone();
    let rows = rows.reshape([b * hq * m]);
    let pick = |x: &Tensor<B, 4>| {
        let e = x.dims()[3];
        x.clone().reshape([b * hkv * kv_len, e]).select(0, rows.clone()).reshape([b, hq, m, e])
    };
    let (k_sampled, v_sampled) = (pick(k), pick(v));
    // Query block `i` sees sample `j` unless the sample lies in key block `i`.
    let query_blocks = nq.div_ceil(q_block);
    let shape = [b, hq, query_blocks, m];
    let own_block = samples.clone().div_scalar(block_size as i64).reshape([b, hq, 1, m]).expand(shape).equal(
        Tensor::<B, 1, Int>::arange(0..query_blocks as i64, &device)
            .reshape([1, 1, query_blocks, 1])
            .expand(shape),
    );
    let entries = Tensor::<B, 1, Int>::arange(0..m as i64, &device).reshape([1, 1, 1, m]).expand(shape);
    let entries = entries.mask_fill(own_block, -1);
    let sizes = BlockSizes { query_block: q_block, key_block: 1 };
    let attended = kernels::block_sparse_attention(
        q,
        &k_sampled,
        &v_sampled,
        Some((&entries, sizes)),
        after_every_key(m),
        scale,
    )?;
    let lse = attended.lse.add_scalar((kv_len as f64 / m as f64).ln());
    Some(AttnOutput { output: attended.output, lse })
}

/// Queries placed after the last of `kv_len` keys, with no sink and no window: each sees
/// exactly the keys of its list.
fn after_every_key(kv_len: usize) -> KernelWindow {
    KernelWindow { first_position: kv_len, sink: 0, window: 0 }
}
