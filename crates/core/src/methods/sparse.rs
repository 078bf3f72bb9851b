//! The select-then-attend pipeline that every top-k method runs.

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::attend::{
    causal_query_chunks, gather_attention_unchecked, query_chunks, AttnOptions, AttnOutput, CausalChunk,
    MAX_GPU_CHUNK_ELEMENTS,
};
use crate::error::{AttnError, AttnResult};
use crate::hash::ranked_group_matching_bits;
use crate::kernels::{self, KernelWindow};
use crate::positions::QueryPositions;
use crate::profile;
use crate::select::{
    budget_union, candidate_page_scores, page_selection, top_k_selection, KeySelection, SparseBudget,
};
use crate::shape::AttnShape;

/// What chooses the heavy keys, outside the sink and the window.
pub(crate) enum Scorer<'a, B: Backend> {
    /// Nothing: sink + window only.
    None,
    /// `score(query_start, query_len, keys)` gives float scores
    /// `[batch, query_heads, query_len, keys]` of those queries against keys `0..keys`.
    Exact(&'a dyn Fn(usize, usize, usize) -> AttnResult<Tensor<B, 4>>),
    /// Matching bits of query signatures `[batch, query_heads, query_len, words]` against key
    /// signatures `[batch, signature_heads, kv_len, words]`, summed over `group` consecutive
    /// query heads that then share one key list (1: a list per query head); ties go to the
    /// earlier key.
    Signatures { query: Tensor<B, 4, Int>, key: Tensor<B, 4, Int>, group: usize },
    /// Whole pages of `page_size` keys: `score(query_start, query_len, keys)` gives page
    /// scores `[batch, query_heads, query_len, pages]` of the pages that hold keys `0..keys`;
    /// the heavy budget is rounded up to pages.
    Pages { score: &'a dyn Fn(usize, usize, usize) -> AttnResult<Tensor<B, 4>>, page_size: usize },
}

impl<B: Backend> Scorer<'_, B> {
    /// Query heads that share one key list.
    fn group(&self) -> usize {
        match self {
            Scorer::Signatures { group, .. } => *group,
            _ => 1,
        }
    }

    /// Elements per query head that the kernel path holds at once for a query that sees
    /// `keys` keys: the scores of those keys for exact scorers, of their pages for page
    /// scorers (the attention kernel takes the chosen pages as they are), the chosen keys
    /// otherwise.
    fn kernel_elements_per_query(&self, keys: usize, heavy: usize) -> usize {
        match self {
            Scorer::Exact(_) => keys,
            Scorer::Pages { page_size, .. } => keys.div_ceil(*page_size),
            Scorer::None | Scorer::Signatures { .. } => heavy.max(1),
        }
    }

    /// The heavy keys of queries `start..start + len` at `positions` (the reference path).
    fn heavy_selection(
        &self,
        start: usize,
        len: usize,
        positions: &QueryPositions,
        budget: &SparseBudget,
        heavy: usize,
    ) -> AttnResult<Option<KeySelection<B>>> {
        let (sink, window) = (budget.sink, budget.window);
        match self {
            Scorer::None => Ok(None),
            Scorer::Exact(score) => {
                top_k_selection(score(start, len, positions.kv_len)?, positions, sink, window, heavy)
            }
            Scorer::Signatures { query, key, group } => {
                let scores =
                    ranked_group_matching_bits(query.clone().narrow(2, start, len), key.clone(), *group);
                let shared = top_k_selection(scores, positions, sink, window, heavy)?;
                Ok(shared.map(|s| s.per_query_head(*group)))
            }
            Scorer::Pages { score, page_size } => {
                let pages = heavy.div_ceil(*page_size);
                let scores = score(start, len, positions.kv_len)?;
                Ok(Some(page_selection(scores, positions, *page_size, sink, window, pages)?))
            }
        }
    }

    /// The heavy keys of the queries of `chunk` by the kernels, `None` when they do not
    /// apply.
    fn kernel_heavy(
        &self,
        chunk: CausalChunk,
        positions: &QueryPositions,
        at: KernelWindow,
        heavy: usize,
        device: &B::Device,
    ) -> AttnResult<Option<HeavyEntries<B>>> {
        let CausalChunk { start, len, keys } = chunk;
        let keys_each =
            |entries: Option<Tensor<B, 4, Int>>| entries.map(|e| HeavyEntries { entries: e, page_size: 1 });
        Ok(match self {
            Scorer::None => None,
            Scorer::Exact(score) => {
                let scores = profile::span::<B, _>("score", device, || score(start, len, keys))?;
                keys_each(profile::span::<B, _>("top-k", device, || {
                    kernels::top_k_by_scores(&scores, at, heavy)
                }))
            }
            Scorer::Signatures { query, key, group } => keys_each(kernels::top_k_by_signatures(
                &query.clone().narrow(2, start, len),
                key,
                *group,
                at,
                heavy,
            )),
            Scorer::Pages { score, page_size } => {
                let scores = profile::span::<B, _>("score", device, || {
                    let scores = score(start, len, keys)?;
                    AttnResult::Ok(candidate_page_scores(scores, positions, *page_size, at.sink, at.window))
                })?;
                let [b, h, t, pages] = scores.dims();
                // One row per query, every page visible: the candidates are already masked.
                let every_page = KernelWindow { first_position: pages - 1, sink: 0, window: 0 };
                let wanted = heavy.div_ceil(*page_size).min(pages);
                let best = profile::span::<B, _>("top-k", device, || {
                    kernels::top_k_by_scores(&scores.reshape([b, h * t, 1, pages]), every_page, wanted)
                });
                best.map(|best| HeavyEntries {
                    entries: best.reshape([b, h, t, wanted]),
                    page_size: *page_size,
                })
            }
        })
    }
}

/// What a kernel selection gives per query: key indices, or pages of keys that the
/// attention kernel expands itself.
struct HeavyEntries<B: Backend> {
    /// i32 `[batch, heads, len, n]`, `-1` for none.
    entries: Tensor<B, 4, Int>,
    /// Keys per entry: 1 for key indices, the page size for pages.
    page_size: usize,
}

/// Queries from which sink-and-window attention runs in the block kernel (tiles of
/// queries) rather than a key list per query (decode steps, which split the list instead).
const BLOCK_KERNEL_QUERIES: usize = 16;

/// Causal sparse attention of `q` over the whole cached `k`, `v`: per chunk of queries,
/// score the keys with `scorer`, select the budget's keys, attend to them. On a CubeCL
/// backend the selection and the attention run as kernels (see [`crate::kernels`]).
pub(crate) fn select_then_attend<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    budget: &SparseBudget,
    scale: Option<f64>,
    scorer: Scorer<'_, B>,
) -> AttnResult<AttnOutput<B>> {
    select_then_attend_within(q, k, v, budget, scale, scorer, MAX_GPU_CHUNK_ELEMENTS)
}

/// [`select_then_attend`] with kernel chunks of at most `max_elements` (see
/// [`causal_query_chunks`]).
fn select_then_attend_within<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    budget: &SparseBudget,
    scale: Option<f64>,
    scorer: Scorer<'_, B>,
    max_elements: usize,
) -> AttnResult<AttnOutput<B>> {
    budget.validate()?;
    let shape = AttnShape::of(&q, &k, &v)?;
    let mut options = AttnOptions::causal();
    options.scale = scale;
    let positions = options.positions(&shape)?;
    let scale = options.scale_for(shape.head_dim);
    let heavy = if matches!(scorer, Scorer::None) { 0 } else { budget.heavy_count(shape.kv_len) };
    if budget.sink == 0 && budget.window == 0 && heavy == 0 {
        return Err(AttnError::Config("the budget selects no key: set sink, window or heavy".into()));
    }
    let use_kernels = kernels::kernels_active::<B>();
    if use_kernels && heavy == 0 && shape.query_len >= BLOCK_KERNEL_QUERIES {
        // Sink and window only: tiles of consecutive queries share most of their keys, so
        // the block kernel reads each key once per tile (on tensor cores where it can).
        let at = KernelWindow { first_position: positions.offset, sink: budget.sink, window: budget.window };
        let attended = profile::span::<B, _>("attend", &q.device(), || {
            kernels::block_sparse_attention(&q, &k, &v, None, at, scale)
        });
        if let Some(out) = attended {
            return Ok(out);
        }
    }
    let chunks = if use_kernels {
        // A kernel chunk holds its exact or page scores of the keys it sees, or only its
        // chosen keys (no key lists of the budget, no gathered rows): chunks as large as
        // that allows, since each costs launches.
        let per_query =
            |keys| shape.batch * shape.query_heads * scorer.kernel_elements_per_query(keys, heavy);
        causal_query_chunks(shape.query_len, positions.offset, shape.kv_len, per_query, max_elements)
    } else {
        vec![CausalChunk { start: 0, len: shape.query_len, keys: shape.kv_len }]
    };
    let mut parts = Vec::new();
    for chunk in chunks {
        let CausalChunk { start, len, .. } = chunk;
        if use_kernels {
            let q_chunk = q.clone().narrow(2, start, len);
            let chunk_positions = positions.shifted(start);
            let at = KernelWindow {
                first_position: positions.offset + start,
                sink: budget.sink,
                window: budget.window,
            };
            let chosen = if heavy == 0 {
                None
            } else {
                profile::span::<B, _>("select", &q.device(), || {
                    scorer.kernel_heavy(chunk, &chunk_positions, at, heavy, &q.device())
                })?
            };
            if heavy == 0 || chosen.is_some() {
                let group = scorer.group();
                let attended = profile::span::<B, _>("attend", &q.device(), || match &chosen {
                    Some(HeavyEntries { entries, page_size }) if *page_size > 1 => {
                        kernels::sparse_attention_in_pages(&q_chunk, &k, &v, entries, *page_size, at, scale)
                    }
                    _ => {
                        let entries = chosen.as_ref().map(|c| &c.entries);
                        kernels::sparse_attention(&q_chunk, &k, &v, entries, group, at, scale)
                    }
                });
                if let Some(out) = attended {
                    parts.push(out);
                    continue;
                }
            }
        }
        // The reference path, in chunks of its own bound (a kernel may have declined a
        // chunk sized for the kernels).
        let reference_per_query = shape.batch * shape.query_heads * shape.kv_len;
        for (sub_start, sub_len) in query_chunks(len, reference_per_query) {
            let (start, len) = (start + sub_start, sub_len);
            let chunk_positions = positions.shifted(start);
            let dims = [shape.batch, shape.query_heads, len];
            let chosen = scorer.heavy_selection(start, len, &chunk_positions, budget, heavy)?;
            let selection = budget_union(chosen, &chunk_positions, dims, budget, &q.device())?;
            let chunk_shape = AttnShape { query_len: len, ..shape };
            parts.push(gather_attention_unchecked(
                q.clone().narrow(2, start, len),
                k.clone(),
                v.clone(),
                &selection,
                &chunk_shape,
                scale,
            ));
        }
    }
    Ok(AttnOutput::cat(parts))
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::backend::Wgpu;
    use burn::tensor::{Distribution, Tensor};

    use super::*;
    use crate::select::{exact_scores, PageBounds};

    /// Chunks that see fewer keys than the context (the kernels' causal chunks) give what one
    /// chunk of every query gives, for exact and page scorers.
    #[test]
    fn causal_chunks_attend_as_one_chunk_does() {
        let device = Default::default();
        let (heads, len, dim) = (3, 203, 32);
        let random = |h: usize, seed: u64| {
            <Wgpu as Backend>::seed(&device, seed);
            Tensor::<Wgpu, 4>::random([1, h, len, dim], Distribution::Normal(0.0, 1.0), &device)
        };
        let (q, k, v) = (random(heads, 1), random(1, 2), random(1, 3));
        let budget = SparseBudget { sink: 3, window: 9, heavy: 24.0 };
        // About 40 keys per query per chunk: the first chunk holds ~60 queries, the last few.
        let small = heads * len * 40;
        let chunks = causal_query_chunks(len, 0, len, |keys| heads * keys, small);
        assert!(chunks.len() > 3 && chunks[0].keys < len, "{chunks:?}");
        let exact = |start: usize, len: usize, keys: usize| {
            Ok(exact_scores(q.clone().narrow(2, start, len), k.clone().narrow(2, 0, keys), 0.2))
        };
        let bounds = PageBounds::of_keys(k.clone(), 8).unwrap();
        let pages = |start: usize, len: usize, keys: usize| {
            Ok(bounds.first(keys.div_ceil(8)).scores(q.clone().narrow(2, start, len)))
        };
        let run = |scorer: Scorer<'_, Wgpu>, max| {
            let out =
                select_then_attend_within(q.clone(), k.clone(), v.clone(), &budget, Some(0.2), scorer, max);
            out.unwrap().output.into_data().to_vec::<f32>().unwrap()
        };
        let close = |a: Vec<f32>, b: Vec<f32>, name: &str| {
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-5, "{name}: chunked and whole differ by {worst}");
        };
        close(run(Scorer::Exact(&exact), small), run(Scorer::Exact(&exact), usize::MAX), "exact");
        let paged = |max| run(Scorer::Pages { score: &pages, page_size: 8 }, max);
        close(paged(small), paged(usize::MAX), "pages");
    }
}
