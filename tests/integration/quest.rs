//! Quest against a direct computation: page bounds, page scores, the chosen pages, the
//! attention over them, and the bounds the cache keeps while decoding.

use crate::common::*;
use burn::tensor::Tensor;
use burn_sparse_attn::attend::gather_attention;
use burn_sparse_attn::select::{page_selection, PageBounds};
use burn_sparse_attn::{
    AttentionConfig, AttentionMethod, AttnError, DenseAttentionConfig, KeySelection, KvCache, QueryPositions,
    QuestConfig,
};

const PAGE: usize = 4;
const SINK: usize = 3;
const WINDOW: usize = 5;
const PAGES: usize = 3;

/// Per KV head and page: element-wise min and max of its keys, by loops.
fn direct_bounds(k: &[f32], [b, h, t, d]: [usize; 4]) -> (Vec<f32>, Vec<f32>) {
    let pages = t.div_ceil(PAGE);
    let (mut min, mut max) =
        (vec![f32::INFINITY; b * h * pages * d], vec![f32::NEG_INFINITY; b * h * pages * d]);
    for row in 0..b * h {
        for j in 0..t {
            for e in 0..d {
                let at = (row * pages + j / PAGE) * d + e;
                min[at] = min[at].min(k[(row * t + j) * d + e]);
                max[at] = max[at].max(k[(row * t + j) * d + e]);
            }
        }
    }
    (min, max)
}

/// The keys each query of a causal prefill attends to: sink, window and the keys of the
/// `PAGES` best candidate pages by the bound `sum_d max(q_d min_d, q_d max_d)`.
fn direct_keys(q: &[f32], k: &[f32], dims: &Dims) -> Vec<Vec<usize>> {
    let (t, d, hq, hk) = (dims.kv_len, dims.head_dim, dims.query_heads, dims.kv_heads);
    let pages = t.div_ceil(PAGE);
    let (min, max) = direct_bounds(k, [dims.batch, hk, t, d]);
    let mut keys = Vec::new();
    for bh in 0..dims.batch * hq {
        let kv_row = (bh / hq) * hk + (bh % hq) / (hq / hk);
        for i in 0..t {
            let visible = |j: usize| j <= i;
            let heavy = |j: usize| j >= SINK && j + WINDOW <= i;
            let mut scored: Vec<(f32, usize)> = (0..pages)
                .filter(|&p| (p * PAGE..(p + 1) * PAGE).any(heavy))
                .map(|p| {
                    let bound = (0..d)
                        .map(|e| {
                            let x = q[(bh * t + i) * d + e];
                            let at = (kv_row * pages + p) * d + e;
                            (x * min[at]).max(x * max[at])
                        })
                        .sum::<f32>();
                    (bound, p)
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let chosen: Vec<usize> = scored.iter().take(PAGES).map(|s| s.1).collect();
            let mut row: Vec<usize> = (0..t)
                .filter(|&j| visible(j))
                .filter(|&j| j < SINK || j + WINDOW > i || (heavy(j) && chosen.contains(&(j / PAGE))))
                .collect();
            row.sort();
            keys.push(row);
        }
    }
    keys
}

/// A selection `[batch, query_heads, query_len, width]` from per-row key lists.
fn selection_of(rows: &[Vec<usize>], dims: &Dims) -> KeySelection<B> {
    let width = rows.iter().map(Vec::len).max().unwrap();
    let mut indices = vec![0i64; rows.len() * width];
    let mut valid = vec![false; rows.len() * width];
    for (r, row) in rows.iter().enumerate() {
        for (c, &j) in row.iter().enumerate() {
            indices[r * width + c] = j as i64;
            valid[r * width + c] = true;
        }
    }
    let shape = [dims.batch, dims.query_heads, dims.query_len, width];
    let valid = Tensor::from_data(burn::tensor::TensorData::new(valid, shape), &device());
    KeySelection::new(int_tensor(indices, shape), valid).unwrap()
}

fn quest_dims() -> Vec<Dims> {
    odd_dims()
        .into_iter()
        .map(|d| Dims { query_len: d.kv_len, ..d })
        .filter(|d| d.kv_len > SINK + WINDOW + PAGE)
        .collect()
}

#[test]
fn page_bounds_and_scores_match_a_direct_computation() {
    for (n, dims) in quest_dims().into_iter().enumerate() {
        let (q, k, _) = dims.qkv(300 + n as u64);
        let bounds = PageBounds::of_keys(k.clone(), PAGE).unwrap();
        let (min, max) = direct_bounds(&to_vec(k.clone()), dims.k());
        assert_eq!(to_vec(bounds.min.clone()), min, "{dims:?}");
        assert_eq!(to_vec(bounds.max.clone()), max, "{dims:?}");
        // A page's bound is at least the largest q . k of its keys.
        let scores = to_vec(bounds.scores(q.clone()));
        let logits = to_vec(burn_sparse_attn::select::exact_scores(q, k, 1.0));
        let (t, pages) = (dims.kv_len, dims.kv_len.div_ceil(PAGE));
        for (row, chunk) in logits.chunks(t).enumerate() {
            for (j, &logit) in chunk.iter().enumerate() {
                assert!(scores[row * pages + j / PAGE] >= logit - 1e-4, "{dims:?} row {row} key {j}");
            }
        }
    }
}

#[test]
fn quest_picks_the_pages_a_direct_computation_says() {
    for (n, dims) in quest_dims().into_iter().enumerate() {
        let (q, k, v) = dims.qkv(400 + n as u64);
        let expected = direct_keys(&to_vec(q.clone()), &to_vec(k.clone()), &dims);

        // The selection primitive: heavy keys of the chosen pages.
        let positions = QueryPositions { offset: 0, causal: true, kv_len: dims.kv_len };
        let scores = PageBounds::of_keys(k.clone(), PAGE).unwrap().scores(q.clone());
        let heavy = page_selection(scores, &positions, PAGE, SINK, WINDOW, PAGES).unwrap();
        let (indices, valid) = (to_ints(heavy.indices), to_bools(heavy.valid));
        let width = indices.len() / expected.len();
        for (r, row) in expected.iter().enumerate() {
            let i = r % dims.query_len;
            let mut got: Vec<usize> = (0..width)
                .filter(|&c| valid[r * width + c])
                .map(|c| indices[r * width + c] as usize)
                .collect();
            got.sort();
            let want: Vec<usize> = row.iter().copied().filter(|&j| j >= SINK && j + WINDOW <= i).collect();
            assert_eq!(got, want, "{dims:?} row {r}");
        }

        // The method: attention over exactly sink + window + those pages.
        let config = QuestConfig::new()
            .with_page_size(PAGE)
            .with_sink(SINK)
            .with_window(WINDOW)
            .with_heavy((PAGES * PAGE) as f64);
        let method = AttentionConfig::Quest(config).init::<B>(&device()).unwrap();
        let got = method.forward(q.clone(), k.clone(), v.clone()).unwrap();
        let scale = 1.0 / (dims.head_dim as f64).sqrt();
        let want = gather_attention(q, k, v, &selection_of(&expected, &dims), scale).unwrap();
        let err = max_abs_diff(got.output, want.output);
        assert!(err < 1e-4, "{dims:?}: {err}");
        assert!(max_abs_diff(got.lse, want.lse) < 1e-4);
    }
}

#[test]
fn the_cache_keeps_the_page_bounds_of_every_key() {
    let dims = quest_dims()[0];
    let (q, k, v) = dims.qkv(7);
    let method =
        AttentionConfig::Quest(QuestConfig::new().with_page_size(PAGE)).init::<B>(&device()).unwrap();
    let mut cache = KvCache::new();
    let part = |x: &Tensor<B, 4>, s: usize, l: usize| x.clone().narrow(2, s, l);
    method.prefill(part(&q, 0, 5), part(&k, 0, 5), part(&v, 0, 5), &mut cache).unwrap();
    for start in 5..dims.kv_len {
        method.decode(part(&q, start, 1), part(&k, start, 1), part(&v, start, 1), &mut cache).unwrap();
        let kept = cache.state::<PageBounds<B>>().unwrap();
        let direct = PageBounds::of_keys(part(&k, 0, start + 1), PAGE).unwrap();
        assert_eq!(to_vec(kept.min.clone()), to_vec(direct.min), "after token {start}");
        assert_eq!(to_vec(kept.max.clone()), to_vec(direct.max), "after token {start}");
    }
}

#[test]
fn quest_rejects_bad_configs_and_foreign_caches() {
    let err = QuestConfig::new().with_page_size(0).init::<B>(&device()).unwrap_err();
    assert!(err.to_string().contains("page_size"), "{err}");
    assert!(QuestConfig::new().with_heavy(-1.0).init::<B>(&device()).is_err());

    let dims = quest_dims()[0];
    let (q, k, v) = dims.qkv(9);
    let dense = AttentionConfig::Dense(DenseAttentionConfig::new()).init::<B>(&device()).unwrap();
    let quest = AttentionConfig::Quest(QuestConfig::new()).init::<B>(&device()).unwrap();
    let mut cache = KvCache::new();
    dense.prefill(q.clone(), k.clone(), v.clone(), &mut cache).unwrap();
    let step = |x: &Tensor<B, 4>| x.clone().narrow(2, 0, 1);
    let err = quest.decode(step(&q), step(&k), step(&v), &mut cache).unwrap_err();
    assert!(matches!(err, AttnError::Cache(_)) && err.to_string().contains("dense"), "{err}");
}
