//! Quality measures of a selection against the exact scores: for reports and tests, never
//! on the attention path (they score every key, `O(T^2)`).

use burn::tensor::{backend::Backend, Bool, ElementConversion, Int, Tensor, TensorData};

use crate::error::AttnResult;
use crate::select::{exact_scores, HipMask, HipMaskParams};

/// Fraction of the oracle's top key blocks that `mask` chose: per query block, the
/// `branches` key blocks of the mask's range with the highest max `q . k` over every query
/// of the query block and every key of the key block (a quality measure for reports and
/// tests; it scores every key, `O(T^2)`).
///
/// `q`, `k` and `positions` are those the mask was made from. Query blocks whose range
/// holds no more than `branches` blocks are skipped (the mask takes all of them).
pub fn oracle_block_recall<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    mask: &HipMask<B>,
    params: &HipMaskParams,
) -> AttnResult<f64> {
    let [b, hq, tq, _] = q.dims();
    let tk = k.dims()[2];
    let (bq, bk, kb) = (params.block_size_q, params.block_size_k, params.branches());
    let lo = params.sink.min(tk);
    let nq = tq.div_ceil(bq);
    let nk = (tk - lo).div_ceil(bk);
    let device = q.device();
    let scores = exact_scores(q, k, 1.0).narrow(3, lo, tk - lo);
    // Pad queries and keys to whole blocks with -inf, then max-pool to [b, hq, nq, nk].
    let scores = pad_axis(pad_axis(scores, 2, nq * bq), 3, nk * bk);
    // Keys at or past a query block's range end are the window's, not the mask's.
    let row_ends: Vec<i64> =
        mask.range_ends.iter().flat_map(|&e| std::iter::repeat_n(e as i64, bq)).collect();
    let row_ends =
        crate::select::int_tensor::<B, 2>(row_ends, [nq * bq, 1], &device).expand([nq * bq, nk * bk]);
    let key_pos = Tensor::<B, 1, Int>::arange(lo as i64..(lo + nk * bk) as i64, &device)
        .reshape([1, nk * bk])
        .expand([nq * bq, nk * bk]);
    let past_end =
        key_pos.greater_equal(row_ends).reshape([1, 1, nq * bq, nk * bk]).expand([b, hq, nq * bq, nk * bk]);
    let scores = scores.mask_fill(past_end, f32::NEG_INFINITY);
    let pooled = scores.reshape([b, hq, nq, bq, nk, bk]).max_dim(5).max_dim(3).reshape([b, hq, nq, nk]);
    let block_first = Tensor::<B, 1, Int>::arange_step(lo as i64..(lo + nk * bk) as i64, bk, &device)
        .reshape([1, 1, 1, nk])
        .expand([b, hq, nq, nk]);
    let ends = crate::select::int_tensor::<B, 4>(
        mask.range_ends.iter().map(|&e| e as i64).collect(),
        [1, 1, nq, 1],
        &device,
    );
    let outside = block_first.clone().greater_equal(ends.expand([b, hq, nq, nk]));
    let (_, best) = pooled.mask_fill(outside, f32::NEG_INFINITY).topk_with_indices(kb.min(nk), 3);
    let oracle = block_first.gather(3, best);

    let chosen = mask.block_starts.clone().mask_fill(mask.valid.clone().bool_not(), -1);
    let [_, _, _, width] = oracle.dims();
    let hits = oracle
        .clone()
        .reshape([b, hq, nq, width, 1])
        .expand([b, hq, nq, width, kb])
        .equal(chosen.reshape([b, hq, nq, 1, kb]).expand([b, hq, nq, width, kb]))
        .any_dim(4)
        .int()
        .sum_dim(3)
        .reshape([b * hq, nq]);
    let counted: Vec<bool> = mask.range_ends.iter().map(|&e| (e - lo).div_ceil(bk) > kb).collect();
    let rows = counted.iter().filter(|&&c| c).count() * b * hq;
    if rows == 0 {
        return Ok(1.0);
    }
    let counted =
        Tensor::<B, 2, Bool>::from_data(TensorData::new(counted, [1, nq]), &device).expand([b * hq, nq]);
    let hits: i64 = hits.mask_fill(counted.bool_not(), 0).sum().into_scalar().elem();
    Ok(hits as f64 / (rows * kb) as f64)
}

/// Pads axis `axis` of `x` to `len` with -inf.
fn pad_axis<B: Backend>(x: Tensor<B, 4>, axis: usize, len: usize) -> Tensor<B, 4> {
    let mut dims = x.dims();
    if dims[axis] == len {
        return x;
    }
    dims[axis] = len - dims[axis];
    let pad = Tensor::full(dims, f32::NEG_INFINITY, &x.device());
    Tensor::cat(vec![x, pad], axis)
}
