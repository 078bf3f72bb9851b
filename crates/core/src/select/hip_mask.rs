//! HiP's hierarchically pruned top-k mask (Lee et al., ICLR 2025, arXiv 2406.09827).
//!
//! For each block of queries, the key range left of the window is cut into `branches`
//! intervals of key blocks. Every round splits each interval in two, scores each half by
//! one representative key block (the max of `q . k` over strided queries of the query
//! block and strided keys of the representative block), and keeps the best `branches`
//! halves. After about `log2(T / branches)` rounds every interval is one key block: those
//! are the chosen blocks. The keys scored grow as `T log T`, not `T^2`.

use burn::tensor::{backend::Backend, Bool, ElementConversion, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{AttnError, AttnResult};
use crate::kernels::{self, KernelWindow};
use crate::positions::QueryPositions;
use crate::profile;

/// Which key block of an interval stands for it when the interval is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Representative {
    /// The middle block (the paper's choice).
    Center,
    /// The first block.
    First,
    /// The last block.
    Last,
}

/// The knobs of the mask.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HipMaskParams {
    /// Keys chosen per query block (a multiple of `block_size_k`).
    pub mask_k: usize,
    /// Queries that share one mask.
    pub block_size_q: usize,
    /// Every `block_stride_q`-th query of a block takes part in scoring.
    pub block_stride_q: usize,
    /// Keys per key block, the unit of the mask.
    pub block_size_k: usize,
    /// Every `block_stride_k`-th key of a representative block takes part in scoring.
    pub block_stride_k: usize,
    /// First keys, always attended, left out of the mask.
    pub sink: usize,
    /// Most recent keys, always attended, left out of the mask.
    pub window: usize,
    /// The representative block of an interval.
    pub representative: Representative,
}

impl HipMaskParams {
    /// Checks that sizes are positive and strides divide their blocks.
    pub fn validate(&self) -> AttnResult<()> {
        let p = self;
        let ok = p.block_size_q > 0
            && p.block_size_k > 0
            && p.block_stride_q > 0
            && p.block_stride_k > 0
            && p.block_size_q.is_multiple_of(p.block_stride_q)
            && p.block_size_k.is_multiple_of(p.block_stride_k)
            && p.mask_k >= p.block_size_k
            && p.mask_k.is_multiple_of(p.block_size_k);
        if !ok {
            return Err(AttnError::Config(format!(
                "HiP needs positive block sizes, strides that divide them, and mask_k a positive \
                 multiple of block_size_k; got {p:?}"
            )));
        }
        Ok(())
    }

    /// Intervals kept per query block: `mask_k / block_size_k`.
    pub fn branches(&self) -> usize {
        self.mask_k / self.block_size_k
    }
}

/// The chosen key blocks of every query block.
#[derive(Debug, Clone)]
pub struct HipMask<B: Backend> {
    /// First key of each chosen block, `[batch, query_heads, query_blocks, branches]`,
    /// ascending per query block, entries that are not blocks last.
    pub block_starts: Tensor<B, 4, Int>,
    /// Which entries are chosen blocks (a short range has fewer), same shape.
    pub valid: Tensor<B, 4, Bool>,
    /// Per query block, one past the last key the mask may choose (the window's start).
    pub range_ends: Vec<usize>,
    /// Keys per block.
    pub block_size_k: usize,
    scored: Vec<Tensor<B, 1, Int>>,
}

impl<B: Backend> HipMask<B> {
    /// Representative keys scored while building the mask, summed over rounds, query
    /// blocks, heads and batch (reads the count back from the device).
    pub fn scored_keys(&self) -> usize {
        self.scored.iter().map(|t| t.clone().into_scalar().elem::<i64>() as usize).sum()
    }

    /// The chosen blocks' first keys `[batch, query_heads, query_blocks, branches]`, -1
    /// where none: the block-sparse kernel's input.
    pub fn kernel_blocks(&self) -> Tensor<B, 4, Int> {
        self.block_starts.clone().mask_fill(self.valid.clone().bool_not(), -1)
    }

    /// The mask's keys `[batch, query_heads, query_blocks, branches * block_size_k]` with
    /// their validity (a block cut by the range end loses its keys past it).
    pub fn keys(&self) -> (Tensor<B, 4, Int>, Tensor<B, 4, Bool>) {
        let [b, h, nq, kb] = self.block_starts.dims();
        let bk = self.block_size_k;
        let device = self.block_starts.device();
        let offsets = Tensor::<B, 1, Int>::arange(0..bk as i64, &device).reshape([1, 1, 1, 1, bk]);
        let keys = self.block_starts.clone().reshape([b, h, nq, kb, 1]).expand([b, h, nq, kb, bk])
            + offsets.expand([b, h, nq, kb, bk]);
        let ends = int_tensor::<B, 5>(
            self.range_ends.iter().map(|&e| e as i64).collect(),
            [1, 1, nq, 1, 1],
            &device,
        );
        let valid = self
            .valid
            .clone()
            .reshape([b, h, nq, kb, 1])
            .expand([b, h, nq, kb, bk])
            .bool_and(keys.clone().lower(ends.expand([b, h, nq, kb, bk])));
        (keys.reshape([b, h, nq, kb * bk]), valid.reshape([b, h, nq, kb * bk]))
    }
}

/// Builds the mask of queries `q: [batch, query_heads, query_len, head_dim]` over keys
/// `k: [batch, kv_heads, kv_len, head_dim]` at `positions`; query block `i` holds queries
/// `i * block_size_q ..`. Each block chooses among keys `sink .. last + 1 - window`, where
/// `last` is the last key its last query sees.
pub fn hip_mask<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    positions: &QueryPositions,
    params: &HipMaskParams,
) -> AttnResult<HipMask<B>> {
    params.validate()?;
    let shape = crate::shape::AttnShape::of(&q, &k, &k)?;
    positions.check(shape.query_len, shape.kv_len)?;
    let device = q.device();
    let (b, hq, tq, d) = (shape.batch, shape.query_heads, shape.query_len, shape.head_dim);
    let (bq, bk, kb) = (params.block_size_q, params.block_size_k, params.branches());
    let nq = tq.div_ceil(bq);

    // Host geometry: the key range of every query block and its initial intervals.
    let lo = params.sink.min(shape.kv_len);
    let range_ends: Vec<usize> = (0..nq)
        .map(|i| {
            let last = positions.last_visible((i * bq + bq).min(tq) - 1);
            (last + 1).saturating_sub(params.window).max(lo)
        })
        .collect();
    let blocks: Vec<usize> = range_ends.iter().map(|&e| (e - lo).div_ceil(bk)).collect();
    let bounds = |shift: usize| -> Tensor<B, 4, Int> {
        let values =
            blocks.iter().flat_map(|&n| (0..kb).map(move |i| ((i + shift) * n / kb) as i64)).collect();
        int_tensor::<B, 4>(values, [1, 1, nq, kb], &device).expand([b, hq, nq, kb])
    };
    let (mut starts, mut ends) = (bounds(0), bounds(1));
    let mut longest = blocks.iter().map(|n| n.div_ceil(kb)).max().unwrap_or(0);

    // Strided representative queries `[b, hq, nq, nqr, d]`; padding rows are masked.
    let nqr = bq / params.block_stride_q;
    let q_unpadded = q.clone();
    let q = if nq * bq > tq {
        Tensor::cat(vec![q, Tensor::zeros([b, hq, nq * bq - tq, d], &device)], 2)
    } else {
        q
    };
    let q_rep = q.reshape([b, hq, nq, nqr, params.block_stride_q * d]).narrow(4, 0, d);
    let q_real: Vec<bool> =
        (0..nq).flat_map(|i| (0..nqr).map(move |u| i * bq + u * params.block_stride_q < tq)).collect();
    let q_real = Tensor::<B, 5, Bool>::from_data(TensorData::new(q_real, [1, 1, nq, nqr, 1]), &device);

    let nkr = bk / params.block_stride_k;
    let key_offsets = Tensor::<B, 1, Int>::arange_step(0..bk as i64, params.block_stride_k, &device)
        .reshape([1, 1, 1, 1, nkr]);
    let head_base = kv_row_starts(b, hq, shape.kv_heads, shape.kv_len);
    let head_base = int_tensor::<B, 5>(head_base, [b, hq, 1, 1, 1], &device);
    let range_end_t =
        int_tensor::<B, 5>(range_ends.iter().map(|&e| e as i64).collect(), [1, 1, nq, 1, 1], &device);
    let k_rows = k.clone().reshape([b * shape.kv_heads * shape.kv_len, d]);
    let children = 2 * kb;
    let dims5 = [b, hq, nq, children, nkr];
    let mut scored = Vec::new();
    let mut intervals_in_key_order = true;

    // Each part of a round is a profile span (`BSA_PROFILE=1`; no cost otherwise).
    while longest > 1 {
        let (child_starts, child_ends, key_pos, key_real) =
            profile::span::<B, _>("hip mask: children", &device, || {
                let len = ends.clone() - starts.clone();
                let mid = starts.clone() + (len + 1).div_scalar(2);
                // Children interleaved (left and right half of interval 0, then of 1, ...), so
                // that picking children in index order keeps the intervals in key order.
                let child_starts =
                    Tensor::stack::<5>(vec![starts.clone(), mid.clone()], 4).reshape([b, hq, nq, children]);
                let child_ends =
                    Tensor::stack::<5>(vec![mid, ends.clone()], 4).reshape([b, hq, nq, children]);
                let child_len = child_ends.clone() - child_starts.clone();
                let rep = match params.representative {
                    Representative::Center => {
                        child_starts.clone() + (child_len.clone() - 1).clamp_min(0).div_scalar(2)
                    }
                    Representative::First => child_starts.clone(),
                    Representative::Last => (child_ends.clone() - 1).max_pair(child_starts.clone()),
                };
                let key_pos = (rep.mul_scalar(bk as i64).add_scalar(lo as i64))
                    .reshape([b, hq, nq, children, 1])
                    .expand(dims5)
                    + key_offsets.clone().expand(dims5);
                let key_real = child_len
                    .greater_elem(0)
                    .reshape([b, hq, nq, children, 1])
                    .expand(dims5)
                    .bool_and(key_pos.clone().lower(range_end_t.clone().expand(dims5)));
                (child_starts, child_ends, key_pos, key_real)
            });
        scored.push(key_real.clone().int().sum());
        let scores = profile::span::<B, _>("hip mask: child scores", &device, || {
            let fused = kernels::kernels_active::<B>()
                .then(|| {
                    let real_keys = key_pos.clone().mask_fill(key_real.clone().bool_not(), -1);
                    kernels::hip_child_scores(&q_unpadded, &k, &real_keys, bq, params.block_stride_q)
                })
                .flatten();
            match fused {
                Some(scores) => scores,
                None => child_scores(&q_rep, &k_rows, &q_real, key_pos, key_real, &head_base, shape.kv_len),
            }
        });
        let (best, in_key_order) =
            profile::span::<B, _>("hip mask: top-k", &device, || best_children(scores, kb));
        intervals_in_key_order &= in_key_order;
        (starts, ends) = profile::span::<B, _>("hip mask: keep children", &device, || {
            (child_starts.gather(3, best.clone()), child_ends.gather(3, best))
        });
        longest = longest.div_ceil(2);
    }
    // Chosen blocks in ascending key order, empty entries last.
    let unused = shape.kv_len as i64;
    let not_block = (ends - starts.clone()).not_equal_elem(1);
    let block_starts =
        starts.mul_scalar(bk as i64).add_scalar(lo as i64).mask_fill(not_block.clone(), unused);
    let block_starts = profile::span::<B, _>("hip mask: order", &device, || {
        ascending(block_starts, not_block, intervals_in_key_order)
    });
    let valid = block_starts.clone().lower_elem(unused);
    let block_starts = block_starts.clamp_max(unused - 1);
    Ok(HipMask { block_starts, valid, range_ends, block_size_k: bk, scored })
}

/// Child scores `[b, hq, nq, children]` with tensor ops: the representative keys gathered
/// (`key_pos: [b, hq, nq, children, nkr]`, real where `key_real`), one matmul with the
/// representative queries `q_rep: [b, hq, nq, nqr, d]` (real where `q_real`), maxima;
/// `-inf` for a child without real keys (and for NaN).
fn child_scores<B: Backend>(
    q_rep: &Tensor<B, 5>,
    k_rows: &Tensor<B, 2>,
    q_real: &Tensor<B, 5, Bool>,
    key_pos: Tensor<B, 5, Int>,
    key_real: Tensor<B, 5, Bool>,
    head_base: &Tensor<B, 5, Int>,
    kv_len: usize,
) -> Tensor<B, 4> {
    let dims5 = key_pos.dims();
    let [b, hq, nq, children, nkr] = dims5;
    let [_, _, _, nqr, d] = q_rep.dims();
    let rows = key_pos.clamp(0, kv_len as i64 - 1) + head_base.clone().expand(dims5);
    let keys = k_rows.clone().select(0, rows.reshape([b * hq * nq * children * nkr])).reshape([
        b,
        hq,
        nq,
        children * nkr,
        d,
    ]);
    let logits = q_rep.clone().matmul(keys.swap_dims(3, 4));
    let logits = logits
        .mask_fill(q_real.clone().bool_not().expand([b, hq, nq, nqr, children * nkr]), f32::NEG_INFINITY);
    let scores = logits.max_dim(3).reshape(dims5).mask_fill(key_real.bool_not(), f32::NEG_INFINITY);
    let scores = scores.max_dim(4).reshape([b, hq, nq, children]);
    scores.clone().mask_fill(scores.is_nan(), f32::NEG_INFINITY)
}

/// Indices of the `kb` best children of every query block, `[b, hq, nq, kb]`, and whether
/// they are in index order: the top-k kernel on a CubeCL backend (no host sort; index
/// order), burn's `topk` otherwise (score order). Children scored `-inf` (empty) get the
/// lowest finite score, so that the kernel takes them too when fewer than `kb` children are
/// real, as `topk` does.
fn best_children<B: Backend>(scores: Tensor<B, 4>, kb: usize) -> (Tensor<B, 4, Int>, bool) {
    let [b, hq, nq, children] = scores.dims();
    // One row per query block, at the last position: every child is visible.
    let every_child = KernelWindow { first_position: children - 1, sink: 0, window: 0 };
    if kernels::kernels_active::<B>() {
        let floored = scores.clone().clamp_min(kernels::lowest_finite(scores.dtype())).reshape([
            b,
            hq * nq,
            1,
            children,
        ]);
        if let Some(best) = kernels::top_k_by_scores(&floored, every_child, kb) {
            return (best.reshape([b, hq, nq, kb]), true);
        }
    }
    (scores.topk_with_indices(kb, 3).1, false)
}

/// Each row of `block_starts` ascending, given `not_block` (entries that hold the largest
/// value). When the chosen blocks are already in key order, a stable partition by
/// `not_block` (a two-key counting sort on a CubeCL backend) does it without a host sort.
fn ascending<B: Backend>(
    block_starts: Tensor<B, 4, Int>,
    not_block: Tensor<B, 4, Bool>,
    in_key_order: bool,
) -> Tensor<B, 4, Int> {
    let [b, hq, nq, kb] = block_starts.dims();
    if in_key_order {
        if let Some(order) = kernels::counting_order(&not_block.int().reshape([b * hq, nq, kb]), 2) {
            return block_starts.gather(3, order.reshape([b, hq, nq, kb]));
        }
    }
    block_starts.sort(3)
}

/// For each of the `batch * query_heads` rows (in order), the first row of its KV head in K
/// flattened to `[batch * kv_heads * kv_len, head_dim]`: where a query head's keys start.
pub(crate) fn kv_row_starts(batch: usize, query_heads: usize, kv_heads: usize, kv_len: usize) -> Vec<i64> {
    let group = query_heads / kv_heads;
    (0..batch * query_heads)
        .map(|r| ((r / query_heads * kv_heads + (r % query_heads) / group) * kv_len) as i64)
        .collect()
}

pub(crate) fn int_tensor<B: Backend, const D: usize>(
    values: Vec<i64>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
