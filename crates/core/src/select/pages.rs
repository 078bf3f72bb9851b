//! Quest's selection (Tang et al., 2024): keys in pages of `page_size`; a page is ranked by
//! an upper bound of `q . k` over its keys, computed from the element-wise minimum and
//! maximum of its keys, and the best pages are attended whole.
//!
//! The bound of page `p` for query `q` is `sum_d max(q_d * min_pd, q_d * max_pd)`, which is
//! `relu(q) . max_p - relu(-q) . min_p`: two matmuls against the page bounds, `T / page_size`
//! scores per query instead of `T`.

use burn::tensor::{activation::relu, backend::Backend, Int, Tensor};

use super::key_selection::KeySelection;
use crate::error::{AttnError, AttnResult};
use crate::positions::QueryPositions;
use crate::shape::{group_heads, ungroup_heads};

/// Element-wise minimum and maximum of the keys of each page.
///
/// - `min`, `max`: `[batch, kv_heads, pages, head_dim]`; the last page may be partial (its
///   bounds cover the keys it has).
#[derive(Debug, Clone)]
pub struct PageBounds<B: Backend> {
    /// Element-wise minimum of each page's keys.
    pub min: Tensor<B, 4>,
    /// Element-wise maximum of each page's keys.
    pub max: Tensor<B, 4>,
}

impl<B: Backend> PageBounds<B> {
    /// The bounds of `keys: [batch, kv_heads, len, head_dim]` in pages of `page_size`.
    pub fn of_keys(keys: Tensor<B, 4>, page_size: usize) -> AttnResult<Self> {
        if page_size == 0 {
            return Err(AttnError::Config("page_size must be at least 1".into()));
        }
        let [b, h, len, d] = keys.dims();
        let pages = len.div_ceil(page_size);
        let pad = pages * page_size - len;
        let padded = |fill: f32| {
            if pad == 0 {
                keys.clone()
            } else {
                let filler = Tensor::full([b, h, pad, d], fill, &keys.device());
                Tensor::cat(vec![keys.clone(), filler], 2)
            }
            .reshape([b, h, pages, page_size, d])
        };
        // Padding never wins: +inf for the minimum, -inf for the maximum.
        let min = padded(f32::INFINITY).min_dim(3).reshape([b, h, pages, d]);
        let max = padded(f32::NEG_INFINITY).max_dim(3).reshape([b, h, pages, d]);
        Ok(Self { min, max })
    }

    /// Pages held.
    pub fn pages(&self) -> usize {
        self.min.dims()[2]
    }

    /// These bounds extended to the keys of a longer cache: the complete pages are kept,
    /// the pages from the first incomplete one on are recomputed from `keys` (the whole
    /// cache, `[batch, kv_heads, len, head_dim]`).
    pub fn extended(self, keys: &Tensor<B, 4>, page_size: usize, kept_len: usize) -> AttnResult<Self> {
        let complete = kept_len / page_size;
        let len = keys.dims()[2];
        let start = complete * page_size;
        let fresh = Self::of_keys(keys.clone().narrow(2, start, len - start), page_size)?;
        if complete == 0 {
            return Ok(fresh);
        }
        let keep = |t: Tensor<B, 4>| t.narrow(2, 0, complete);
        Ok(Self {
            min: Tensor::cat(vec![keep(self.min), fresh.min], 2),
            max: Tensor::cat(vec![keep(self.max), fresh.max], 2),
        })
    }

    /// The bounds of the first `pages` pages (all of them when there are fewer).
    pub fn first(&self, pages: usize) -> Self {
        let pages = pages.min(self.pages());
        Self { min: self.min.clone().narrow(2, 0, pages), max: self.max.clone().narrow(2, 0, pages) }
    }

    /// The upper bound of `q . k` over each page's keys.
    ///
    /// - `q`: `[batch, query_heads, query_len, head_dim]` (query heads a multiple of the
    ///   bounds' kv heads)
    /// - returns `[batch, query_heads, query_len, pages]`
    pub fn scores(&self, q: Tensor<B, 4>) -> Tensor<B, 4> {
        let query_heads = q.dims()[1];
        let kv_heads = self.min.dims()[1];
        let positive = group_heads(relu(q.clone()), kv_heads);
        let negative = group_heads(relu(q.neg()), kv_heads);
        let upper = positive.matmul(self.max.clone().swap_dims(2, 3))
            - negative.matmul(self.min.clone().swap_dims(2, 3));
        ungroup_heads(upper, query_heads)
    }
}

/// Which pages may hold a heavy key of each query: a page qualifies when one of its keys
/// lies in `sink..=last - window` (the keys that neither sink nor window covers).
///
/// Returns `[1, 1, query_len, pages]`, true where the page qualifies.
fn candidate_pages<B: Backend>(
    positions: &QueryPositions,
    query_len: usize,
    pages: usize,
    page_size: usize,
    sink: usize,
    window: usize,
    device: &B::Device,
) -> Tensor<B, 4, burn::tensor::Bool> {
    let last = crate::positions::last_visible_keys::<B>(positions, query_len, 1, device)
        .reshape([query_len, 1])
        .expand([query_len, pages]);
    let first = Tensor::<B, 1, Int>::arange_step(0..(pages * page_size) as i64, page_size, device)
        .reshape([1, pages])
        .expand([query_len, pages]);
    let end = first.clone().add_scalar(page_size as i64 - 1);
    // Candidates are sink..=last - window; a page qualifies when it overlaps that range.
    let highest = last.sub_scalar(window as i64);
    first
        .lower_equal(highest.clone())
        .bool_and(end.greater_equal_elem(sink as i64))
        .reshape([1, 1, query_len, pages])
}

/// Page scores with non-candidate pages at `-inf`, `[batch, heads, query_len, pages]`.
pub(crate) fn candidate_page_scores<B: Backend>(
    scores: Tensor<B, 4>,
    positions: &QueryPositions,
    page_size: usize,
    sink: usize,
    window: usize,
) -> Tensor<B, 4> {
    let [b, h, t, pages] = scores.dims();
    let device = scores.device();
    let candidate = candidate_pages::<B>(positions, t, pages, page_size, sink, window, &device);
    let scores = scores.clone().mask_fill(scores.is_nan(), f32::NEG_INFINITY);
    scores.mask_fill(candidate.bool_not().expand([b, h, t, pages]), f32::NEG_INFINITY)
}

/// The keys of chosen pages that neither sink nor window covers, as heavy key lists.
///
/// - `pages`: chosen page indices `[batch, heads, query_len, n]`, `-1` for none
/// - returns key indices `[batch, heads, query_len, n * page_size]`, `-1` for none
fn page_keys<B: Backend>(
    pages: Tensor<B, 4, Int>,
    positions: &QueryPositions,
    page_size: usize,
    sink: usize,
    window: usize,
) -> Tensor<B, 4, Int> {
    let [b, h, t, n] = pages.dims();
    let device = pages.device();
    let width = n * page_size;
    let offsets = Tensor::<B, 1, Int>::arange(0..page_size as i64, &device)
        .reshape([1, 1, 1, 1, page_size])
        .expand([b, h, t, n, page_size]);
    let keys = pages
        .clone()
        .mul_scalar(page_size as i64)
        .reshape([b, h, t, n, 1])
        .expand([b, h, t, n, page_size])
        .add(offsets)
        .reshape([b, h, t, width]);
    let chosen = pages.greater_equal_elem(0).reshape([b, h, t, n, 1]).expand([b, h, t, n, page_size]);
    let last = crate::positions::last_visible_keys::<B>(positions, t, 1, &device)
        .reshape([1, 1, t, 1])
        .expand([b, h, t, width]);
    let heavy = keys
        .clone()
        .greater_equal_elem(sink as i64)
        .bool_and(keys.clone().lower_equal(last.sub_scalar(window as i64)))
        .bool_and(chosen.reshape([b, h, t, width]));
    keys.mask_fill(heavy.bool_not(), -1)
}

/// The top `pages` pages of each query by `scores` (reference path), as a selection of
/// their keys outside sink and window.
///
/// - `scores`: page bounds `[batch, heads, query_len, pages_total]` (see
///   [`PageBounds::scores`])
/// - returns a selection `[batch, heads, query_len, pages * page_size]`
///
/// Errors when the pages do not cover the context of `positions` or the queries lie past it.
pub fn page_selection<B: Backend>(
    scores: Tensor<B, 4>,
    positions: &QueryPositions,
    page_size: usize,
    sink: usize,
    window: usize,
    pages: usize,
) -> AttnResult<KeySelection<B>> {
    let [_, _, query_len, total] = scores.dims();
    if page_size == 0 || total != positions.kv_len.div_ceil(page_size) {
        return Err(AttnError::Shape {
            name: "page scores",
            expected: format!(
                "{} pages of {page_size} keys (the context)",
                positions.kv_len.div_ceil(page_size.max(1))
            ),
            got: scores.dims().to_vec(),
        });
    }
    positions.check(query_len, positions.kv_len)?;
    let scores = candidate_page_scores(scores, positions, page_size, sink, window);
    let (values, best) = scores.topk_with_indices(pages.min(total), 3);
    let best = best.mask_fill(values.equal_elem(f32::NEG_INFINITY), -1);
    let keys = page_keys(best, positions, page_size, sink, window);
    let valid = keys.clone().greater_equal_elem(0);
    Ok(KeySelection { indices: keys.clamp_min(0), valid })
}
