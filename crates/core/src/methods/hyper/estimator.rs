//! HyperAttention (Han et al., ICLR 2024, arXiv 2310.05869): exact attention inside blocks
//! of an LSH-sorted order, plus sampled key columns, merged by log-sum-exp; causal attention
//! by recursive halving.

use burn::tensor::{backend::Backend, IndexingUpdateOp, Int, Tensor, TensorData};

use super::on_kernels;
use crate::attend::softmax::masked_softmax;
use crate::attend::{merge, AttnOptions, AttnOutput};
use crate::error::{AttnError, AttnResult};
use crate::kernels;
use crate::profile;
use crate::select::{gray_positions, lsh_buckets, stable_order_below};
use crate::shape::AttnShape;

/// The knobs of HyperAttention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HyperParams {
    /// Keys per block of the sorted order.
    pub block_size: usize,
    /// Key columns sampled uniformly per (batch, head).
    pub sample_size: usize,
    /// Sequences up to this length are attended exactly.
    pub min_seq_len: usize,
    /// Seed of the column samples.
    pub seed: u64,
    /// Logit scale.
    pub scale: f64,
}

impl HyperParams {
    /// Checks the knobs against queries of `head_dim` and LSH `projections: [head_dim, bits]`.
    pub fn validate(&self, head_dim: usize, projections: [usize; 2]) -> AttnResult<()> {
        if self.block_size == 0 || !self.scale.is_finite() {
            return Err(AttnError::Config(format!(
                "HyperAttention needs a positive block size and a finite scale; got {self:?}"
            )));
        }
        let [rows, bits] = projections;
        if rows != head_dim || !(1..=31).contains(&bits) {
            return Err(AttnError::Shape {
                name: "projections",
                expected: format!("[{head_dim}, 1..=31] (head_dim of q, LSH bits)"),
                got: projections.to_vec(),
            });
        }
        Ok(())
    }
}

/// The shape of a call, after checking it and the parameters against it.
fn checked<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    projections: &Tensor<B, 2>,
    params: &HyperParams,
) -> AttnResult<AttnShape> {
    let shape = AttnShape::of(q, k, v)?;
    params.validate(shape.head_dim, projections.dims())?;
    Ok(shape)
}

/// Non-causal HyperAttention: every query approximately sees every key.
///
/// - `q`: `[batch, query_heads, query_len, head_dim]`, `k`: `[batch, kv_heads, kv_len,
///   head_dim]`, `v`: `[batch, kv_heads, kv_len, value_dim]`
/// - `projections`: `[head_dim, bits]` of the angular LSH
/// - returns output `[batch, query_heads, query_len, value_dim]` and lse
///
/// Queries and keys are sorted by the Gray-code position of their LSH bucket; query block
/// `i` attends exactly to key block `i` of the sorted order (blocks of `block_size` keys,
/// as many query blocks, ragged ends padded), and to `sample_size` uniformly sampled key
/// columns outside its own block, whose weight is scaled by `kv_len / sample_size`.
///
/// Errors on mismatched shapes and invalid parameters ([`HyperParams::validate`]).
pub fn hyper_attention_non_causal<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    projections: Tensor<B, 2>,
    params: &HyperParams,
) -> AttnResult<AttnOutput<B>> {
    checked(&q, &k, &v, &projections, params)?;
    Ok(non_causal(q, k, v, projections, params))
}

/// [`hyper_attention_non_causal`] on checked inputs.
fn non_causal<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    projections: Tensor<B, 2>,
    params: &HyperParams,
) -> AttnOutput<B> {
    let [b, hq, nq, _] = q.dims();
    let [_, hkv, nk, _] = k.dims();
    let bits = projections.dims()[1];
    let sort = |x: &Tensor<B, 4>| {
        stable_order_below(gray_positions(lsh_buckets(x.clone(), projections.clone()), bits), 1 << bits)
    };
    let rows = |x: Tensor<B, 4>, order: &Tensor<B, 3, Int>| {
        let [b, h, n, e] = x.dims();
        x.gather(2, order.clone().reshape([b, h, n, 1]).expand([b, h, n, e]))
    };
    let device = q.device();
    let q_order = profile::span::<B, _>("hyper: sort queries", &device, || sort(&q));
    let q_sorted = rows(q, &q_order);
    let blocks = nk.div_ceil(params.block_size);
    let q_block = nq.div_ceil(blocks);
    let samples = (params.sample_size > 0 && blocks > 1).then(|| column_samples(&q_sorted, nk, params));
    // On the kernels, K and V sorted once per KV head (a key's LSH order is the same for each
    // query head); else per query head, for the matmuls.
    let on_kernels = kernels::block_sparse_applies(&q_sorted, &k, &v)
        .then(|| {
            let k_order = profile::span::<B, _>("hyper: sort keys", &device, || sort(&k));
            let (k_sorted, v_sorted) = (rows(k.clone(), &k_order), rows(v.clone(), &k_order));
            let bs = params.block_size.min(nk);
            let in_blocks = profile::span::<B, _>("hyper: sorted blocks", &device, || {
                on_kernels::in_blocks(&q_sorted, &k_sorted, &v_sorted, q_block, bs, params.scale)
            })?;
            Some(match &samples {
                Some(samples) => {
                    let sampled = profile::span::<B, _>("hyper: sampled columns", &device, || {
                        on_kernels::over_samples(
                            &q_sorted,
                            &k_sorted,
                            &v_sorted,
                            samples,
                            q_block,
                            params.block_size,
                            params.scale,
                        )
                    })?;
                    merge(in_blocks, sampled).expect("parts of equal shapes")
                }
                None => in_blocks,
            })
        })
        .flatten();
    let sorted = on_kernels.unwrap_or_else(|| {
        let per_query_head = |x: Tensor<B, 4>| {
            let [_, _, n, e] = x.dims();
            x.reshape([b, hkv, 1, n, e]).expand([b, hkv, hq / hkv, n, e]).reshape([b, hq, n, e])
        };
        let (k, v) = (per_query_head(k), per_query_head(v));
        let k_order = sort(&k);
        let (k_sorted, v_sorted) = (rows(k, &k_order), rows(v, &k_order));
        let in_blocks =
            block_attention(q_sorted.clone(), k_sorted.clone(), v_sorted.clone(), blocks, q_block, params);
        match &samples {
            Some(samples) => {
                let sampled = sampled_attention(q_sorted, k_sorted, v_sorted, samples, q_block, params);
                merge(in_blocks, sampled).expect("parts of equal shapes")
            }
            None => in_blocks,
        }
    });
    // Back to the original order of the queries.
    let inverse = inverse_permutation(&q_order);
    let output = rows(sorted.output, &inverse);
    let lse = sorted.lse.gather(2, inverse);
    AttnOutput { output, lse }
}

/// The `sample_size` key columns sampled uniformly (with replacement) per batch element and
/// query head, positions in the keys' sorted order: `[batch, query_heads, sample_size]`,
/// drawn from the seed and the sizes, so that every backend draws the same.
fn column_samples<B: Backend>(q: &Tensor<B, 4>, nk: usize, params: &HyperParams) -> Tensor<B, 3, Int> {
    let [b, h, nq, _] = q.dims();
    let m = params.sample_size;
    let seed = params.seed ^ (nq as u64).wrapping_mul(0x9E37_79B9) ^ (nk as u64).rotate_left(32);
    let mut rng = crate::rng::SplitMix64::new(seed);
    let samples: Vec<i64> = (0..b * h * m).map(|_| rng.below(nk) as i64).collect();
    Tensor::from_data(TensorData::new(samples, [b, h, m]), &q.device())
}

/// Exact attention of query block `i` over key block `i`: `[b, h, nq, dv]`.
fn block_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    blocks: usize,
    q_block: usize,
    params: &HyperParams,
) -> AttnOutput<B> {
    let [b, h, nq, d] = q.dims();
    let [_, _, nk, dv] = v.dims();
    let bs = params.block_size.min(nk);
    let device = q.device();
    let q = pad_rows(q, blocks * q_block).reshape([b, h, blocks, q_block, d]);
    let k = pad_rows(k, blocks * bs).reshape([b, h, blocks, bs, d]);
    let v = pad_rows(v, blocks * bs).reshape([b, h, blocks, bs, dv]);
    let logits = q.matmul(k.swap_dims(3, 4)).mul_scalar(params.scale);
    let padding = Tensor::<B, 1, Int>::arange(0..(blocks * bs) as i64, &device)
        .greater_equal_elem(nk as i64)
        .reshape([1, 1, blocks, 1, bs])
        .expand([b, h, blocks, q_block, bs]);
    let (probs, lse) = masked_softmax(logits, Some(padding));
    let output = probs.matmul(v).reshape([b, h, blocks * q_block, dv]).narrow(2, 0, nq);
    let lse = lse.reshape([b, h, blocks * q_block]).narrow(2, 0, nq);
    AttnOutput { output, lse }
}

/// Attention over the sampled key columns `samples: [b, h, m]` (see [`column_samples`]),
/// each query ignoring samples from its own block, weights scaled by `nk / m`.
fn sampled_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    samples: &Tensor<B, 3, Int>,
    q_block: usize,
    params: &HyperParams,
) -> AttnOutput<B> {
    let [b, h, nq, d] = q.dims();
    let [_, _, nk, dv] = v.dims();
    let m = samples.dims()[2];
    let device = q.device();
    let pick =
        |x: Tensor<B, 4>, e: usize| x.gather(2, samples.clone().reshape([b, h, m, 1]).expand([b, h, m, e]));
    let (k, v) = (pick(k, d), pick(v, dv));
    let logits = q.matmul(k.swap_dims(2, 3)).mul_scalar(params.scale);
    let query_block = Tensor::<B, 1, Int>::arange(0..nq as i64, &device)
        .div_scalar(q_block as i64)
        .reshape([1, 1, nq, 1])
        .expand([b, h, nq, m]);
    let sample_block =
        samples.clone().div_scalar(params.block_size as i64).reshape([b, h, 1, m]).expand([b, h, nq, m]);
    let (probs, lse) = masked_softmax(logits, Some(query_block.equal(sample_block)));
    let lse = lse.squeeze_dim::<3>(3).add_scalar((nk as f64 / m as f64).ln());
    AttnOutput { output: probs.matmul(v), lse }
}

/// Causal HyperAttention of `n` queries over the same `n` keys (self-attention).
///
/// Sequences of at most `min_seq_len` are exact. Longer ones split in halves: the two
/// diagonal halves recurse (batched), the lower-left block (second-half queries over
/// first-half keys, all visible) is [`hyper_attention_non_causal`], merged into the second
/// half's rows. An odd length is padded with one zero token at the end.
///
/// Errors on mismatched shapes, queries and keys of different lengths, and invalid
/// parameters ([`HyperParams::validate`]).
pub fn hyper_attention_causal<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    projections: Tensor<B, 2>,
    params: &HyperParams,
) -> AttnResult<AttnOutput<B>> {
    let shape = checked(&q, &k, &v, &projections, params)?;
    if shape.query_len != shape.kv_len {
        return Err(AttnError::Shape {
            name: "q",
            expected: format!("{} queries, one per key (causal self-attention)", shape.kv_len),
            got: q.dims().to_vec(),
        });
    }
    causal(q, k, v, projections, params)
}

/// [`hyper_attention_causal`] on checked inputs.
fn causal<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    projections: Tensor<B, 2>,
    params: &HyperParams,
) -> AttnResult<AttnOutput<B>> {
    let n = q.dims()[2];
    if n <= params.min_seq_len.max(1) {
        let options = AttnOptions::causal().with_scale(params.scale);
        let device = q.device();
        return profile::span::<B, _>("hyper: exact leaves", &device, || {
            crate::attend::dense_attention(q, k, v, &options)
        });
    }
    let (q, k, v) = (pad_rows(q, n + n % 2), pad_rows(k, n + n % 2), pad_rows(v, n + n % 2));
    let half = q.dims()[2] / 2;
    let halves = |x: Tensor<B, 4>| {
        let [b, h, _, e] = x.dims();
        x.reshape([b, h, 2, half, e]).permute([2, 0, 1, 3, 4]).reshape([2 * b, h, half, e])
    };
    let deeper = HyperParams { seed: params.seed.wrapping_mul(31).wrapping_add(1), ..*params };
    let diagonal =
        causal(halves(q.clone()), halves(k.clone()), halves(v.clone()), projections.clone(), &deeper)?;
    let b = diagonal.output.dims()[0] / 2;
    let upper = AttnOutput {
        output: diagonal.output.clone().narrow(0, 0, b),
        lse: diagonal.lse.clone().narrow(0, 0, b),
    };
    let lower_diagonal =
        AttnOutput { output: diagonal.output.narrow(0, b, b), lse: diagonal.lse.narrow(0, b, b) };
    let lower_left =
        non_causal(q.narrow(2, half, half), k.narrow(2, 0, half), v.narrow(2, 0, half), projections, params);
    let lower = merge(lower_diagonal, lower_left)?;
    let whole = AttnOutput::cat(vec![upper, lower]);
    Ok(AttnOutput { output: whole.output.narrow(2, 0, n), lse: whole.lse.narrow(2, 0, n) })
}

/// The inverse of each row's permutation `order: [batch, heads, n]`: `inverse[order[i]] = i`,
/// by a scatter (no sort, which burn runs on the host for CubeCL backends).
fn inverse_permutation<B: Backend>(order: &Tensor<B, 3, Int>) -> Tensor<B, 3, Int> {
    let [b, h, n] = order.dims();
    let device = order.device();
    let index = Tensor::<B, 1, Int>::arange(0..n as i64, &device).reshape([1, 1, n]).expand([b, h, n]);
    Tensor::zeros([b, h, n], &device).scatter(2, order.clone(), index, IndexingUpdateOp::Add)
}

/// Pads axis 2 of `x` with zero rows up to `len`.
fn pad_rows<B: Backend>(x: Tensor<B, 4>, len: usize) -> Tensor<B, 4> {
    let [b, h, n, e] = x.dims();
    if n >= len {
        return x;
    }
    Tensor::cat(vec![x.clone(), Tensor::zeros([b, h, len - n, e], &x.device())], 2)
}
