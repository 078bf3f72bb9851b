//! HiP attention: the hierarchical mask against exhaustive search, its cost, causality, and
//! decoding with a reused mask.

use crate::common::*;
use burn::tensor::Tensor;
use burn_sparse_attn::attend::gather_attention;
use burn_sparse_attn::methods::CachedMask;
use burn_sparse_attn::select::{hip_mask, HipMask, HipMaskParams, Representative};
use burn_sparse_attn::{
    dense_attention, AttentionMethod, AttnError, AttnOptions, AttnShape, HipAttention, HipAttentionConfig,
    KvCache, QueryPositions,
};

fn config(
    mask_k: usize,
    block_size_q: usize,
    block_size_k: usize,
    sink: usize,
    window: usize,
) -> HipAttentionConfig {
    HipAttentionConfig::new()
        .with_mask_k(mask_k)
        .with_block_size_q(block_size_q)
        .with_block_stride_q(1)
        .with_block_size_k(block_size_k)
        .with_sink(sink)
        .with_window(window)
}

fn causal(q: &Tensor<B, 4>, k: &Tensor<B, 4>) -> QueryPositions {
    AttnOptions::causal().positions(&AttnShape::of(q, k, k).unwrap()).unwrap()
}

/// Queries or keys that drift along the sequence (neighbours correlate by 0.97^distance):
/// nearby tokens score alike, the locality real attention has and HiP relies on.
fn drifting_keys(shape: [usize; 4], seed: u64) -> Tensor<B, 4> {
    burn_sparse_attn::synthetic::drifting(shape, 0.97, seed, &device())
}

fn params(method: &HipAttention) -> HipMaskParams {
    method.params
}

#[test]
fn a_mask_covering_the_range_equals_dense_attention() {
    for (dims, block_q, block_k) in [
        (
            Dims {
                batch: 1,
                query_heads: 2,
                kv_heads: 2,
                query_len: 45,
                kv_len: 45,
                head_dim: 8,
                value_dim: 8,
            },
            8,
            2,
        ),
        (
            Dims {
                batch: 2,
                query_heads: 3,
                kv_heads: 1,
                query_len: 23,
                kv_len: 31,
                head_dim: 5,
                value_dim: 4,
            },
            5,
            3,
        ),
        (
            Dims {
                batch: 1,
                query_heads: 4,
                kv_heads: 1,
                query_len: 1,
                kv_len: 40,
                head_dim: 16,
                value_dim: 16,
            },
            4,
            1,
        ),
    ] {
        let (q, k, v) = dims.qkv(300);
        let method = config(48, block_q, block_k, 2, 3).init::<B>(&device()).unwrap();
        let positions = causal(&q, &k);
        let mask = hip_mask(q.clone(), k.clone(), &positions, &params(&method)).unwrap();
        assert_eq!(mask.scored_keys(), 0, "a covering mask needs no scoring");
        let selection = method.selection(&mask, &positions, dims.query_len).unwrap();
        let scale = 1.0 / (dims.head_dim as f64).sqrt();
        let sparse = gather_attention(q.clone(), k.clone(), v.clone(), &selection, scale).unwrap();
        let exact = dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::causal()).unwrap();
        assert!(max_abs_diff(sparse.output, exact.output.clone()) < 1e-4, "{dims:?}");
        // The method itself falls back to dense attention when the budget covers the context.
        if dims.query_len == dims.kv_len {
            let out = method.forward(q, k, v).unwrap();
            assert!(max_abs_diff(out.output, exact.output) < 1e-4);
        }
    }
}

/// Recall of the oracle's top key blocks: per query block, the `branches` blocks of the
/// mask's range with the highest max `q . k` (over every query of the block and every key
/// of the key block), against the blocks the mask chose.
fn oracle_block_recall(q: &Tensor<B, 4>, k: &Tensor<B, 4>, mask: &HipMask<B>, p: &HipMaskParams) -> f32 {
    let [_, heads, tq, d] = q.dims();
    let tk = k.dims()[2];
    let kv_heads = k.dims()[1];
    let (qv, kv) = (to_vec(q.clone()), to_vec(k.clone()));
    let starts = to_ints(mask.block_starts.clone());
    let valid = to_bools(mask.valid.clone());
    let kb = p.branches();
    let blocks = tq.div_ceil(p.block_size_q);
    let (mut hits, mut total) = (0usize, 0usize);
    for h in 0..heads {
        let kh = h / (heads / kv_heads);
        for qb in 0..blocks {
            let (lo, hi) = (p.sink, mask.range_ends[qb]);
            let mut block_scores: Vec<(f32, usize)> = (lo..hi)
                .step_by(p.block_size_k)
                .map(|start| {
                    let best = (qb * p.block_size_q..((qb + 1) * p.block_size_q).min(tq))
                        .flat_map(|i| (start..(start + p.block_size_k).min(hi)).map(move |j| (i, j)))
                        .map(|(i, j)| {
                            let qi = &qv[(h * tq + i) * d..][..d];
                            let kj = &kv[(kh * tk + j) * d..][..d];
                            qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>()
                        })
                        .fold(f32::NEG_INFINITY, f32::max);
                    (best, start)
                })
                .collect();
            if block_scores.len() <= kb {
                continue;
            }
            block_scores.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
            let row = (h * blocks + qb) * kb;
            let chosen: Vec<i64> = (0..kb).filter(|&i| valid[row + i]).map(|i| starts[row + i]).collect();
            hits += block_scores[..kb].iter().filter(|(_, s)| chosen.contains(&(*s as i64))).count();
            total += kb;
        }
    }
    hits as f32 / total as f32
}

#[test]
fn the_mask_finds_a_planted_needle_far_from_the_window() {
    let (t, d, needle) = (1024, 16, 301);
    let q = randn([1, 2, t, d], 1);
    let k = randn([1, 2, t, d], 2);
    let direction = randn_vec(d, 3);
    // A passage around the needle whose keys lean towards `direction`, most at the needle;
    // the last query block asks for it.
    let mut kv = to_vec(k);
    let mut qv = to_vec(q);
    for h in 0..2 {
        for j in needle - 48..=needle + 48 {
            let weight = 3.0 * (1.0 - (j as f32 - needle as f32).abs() / 49.0);
            for e in 0..d {
                kv[(h * t + j) * d + e] += weight * direction[e];
            }
        }
        for i in t - 16..t {
            for e in 0..d {
                qv[(h * t + i) * d + e] += 3.0 * direction[e];
            }
        }
    }
    let (q, k) = (tensor(qv, [1, 2, t, d]), tensor(kv, [1, 2, t, d]));
    let method = config(16, 16, 2, 4, 64).init::<B>(&device()).unwrap();
    let mask = hip_mask(q.clone(), k.clone(), &causal(&q, &k), &params(&method)).unwrap();
    let starts = to_ints(mask.block_starts.clone());
    let valid = to_bools(mask.valid.clone());
    // Chosen blocks come sorted per query block, real ones first.
    for (row_starts, row_valid) in starts.chunks(8).zip(valid.chunks(8)) {
        let real: Vec<i64> = row_starts.iter().zip(row_valid).filter(|(_, v)| **v).map(|(s, _)| *s).collect();
        assert!(real.windows(2).all(|w| w[0] < w[1]), "{real:?}");
        assert!(row_valid.windows(2).all(|w| w[0] || !w[1]), "padding before a block: {row_valid:?}");
    }
    let blocks = t / 16;
    for h in 0..2 {
        let row = (h * blocks + blocks - 1) * 8;
        let chosen: Vec<i64> = (0..8).filter(|&i| valid[row + i]).map(|i| starts[row + i]).collect();
        assert!(
            chosen.contains(&(needle as i64 - 1)) || chosen.contains(&(needle as i64)),
            "head {h}: {chosen:?}"
        );
    }
}

#[test]
fn recall_of_oracle_top_blocks_is_high_on_inputs_with_locality() {
    let q = randn([1, 2, 512, 16], 10);
    let k = drifting_keys([1, 2, 512, 16], 11);
    let method = config(32, 16, 2, 4, 32).init::<B>(&device()).unwrap();
    let p = params(&method);
    let mask = hip_mask(q.clone(), k.clone(), &causal(&q, &k), &p).unwrap();
    let recall = oracle_block_recall(&q, &k, &mask, &p);
    // The library's tensor version of the same measure agrees with this loop version.
    let library = burn_sparse_attn::quality::oracle_block_recall(q.clone(), k.clone(), &mask, &p).unwrap();
    assert!((library - recall as f64).abs() < 1e-6, "library {library} loops {recall}");
    // A random choice of 16 of up to 238 blocks would recall about 16 / 238 on the long rows.
    eprintln!("HiP recall of oracle top-16 key blocks on drifting keys: {recall:.3}");
    assert!(recall > 0.5, "recall {recall}");

    let noise_keys = randn([1, 2, 512, 16], 12);
    let mask = hip_mask(q.clone(), noise_keys.clone(), &causal(&q, &noise_keys), &p).unwrap();
    let recall_noise = oracle_block_recall(&q, &noise_keys, &mask, &p);
    eprintln!("HiP recall on keys without locality: {recall_noise:.3}");
    assert!(recall > recall_noise);
}

#[test]
fn scored_keys_grow_as_t_log_t() {
    let method = config(32, 32, 2, 4, 32).init::<B>(&device()).unwrap();
    let scored = |t: usize| {
        let (q, k) = (randn([1, 1, t, 8], 5), randn([1, 1, t, 8], 6));
        hip_mask(q.clone(), k.clone(), &causal(&q, &k), &params(&method)).unwrap().scored_keys()
    };
    let (small, large) = (scored(1024), scored(4096));
    let ratio = large as f64 / small as f64;
    eprintln!("keys scored: T=1024 {small}, T=4096 {large}, ratio {ratio:.2} (T^2 would give 16)");
    assert!(ratio > 4.0 && ratio < 8.0, "ratio {ratio}");
}

#[test]
fn no_query_sees_a_future_key() {
    // Values mark positions: a query that saw a key past its own position would average to
    // more than its position. The window (2) is shorter than a query block (8), so the mask
    // of a block reaches past its first queries and must be cut per query.
    let t = 160;
    let q = randn([1, 2, t, 8], 20);
    let k = drifting_keys([1, 2, t, 8], 21);
    let positions: Vec<f32> = (0..2 * t).map(|r| (r % t) as f32).collect();
    let v = tensor(positions, [1, 2, t, 1]);
    let method = config(16, 8, 2, 1, 2).with_refresh_interval(3).init::<B>(&device()).unwrap();
    let check = |out: Tensor<B, 4>, first: usize| {
        let len = out.dims()[2];
        for (r, x) in to_vec(out).into_iter().enumerate() {
            assert!(x <= (first + r % len) as f32 + 1e-3, "query {} averaged position {x}", first + r % len);
        }
    };
    check(method.forward(q.clone(), k.clone(), v.clone()).unwrap().output, 0);
    let mut cache = KvCache::new();
    let p = 120;
    method
        .prefill(q.clone().narrow(2, 0, p), k.clone().narrow(2, 0, p), v.clone().narrow(2, 0, p), &mut cache)
        .unwrap();
    for i in p..t {
        let step = |x: &Tensor<B, 4>| x.clone().narrow(2, i, 1);
        check(method.decode(step(&q), step(&k), step(&v), &mut cache).unwrap().output, i);
    }
}

#[test]
fn decode_reuses_the_mask_for_refresh_interval_steps() {
    let t = 200;
    // Sharp attention (large queries) over keys with locality, as in a trained model.
    let (q, k, v) = (
        drifting_keys([1, 3, t, 8], 30).mul_scalar(4.0),
        drifting_keys([1, 1, t, 8], 31),
        randn([1, 1, t, 8], 32),
    );
    let method = config(16, 8, 2, 2, 8).with_refresh_interval(4).init::<B>(&device()).unwrap();
    let mut cache = KvCache::new();
    let p = 150;
    method
        .prefill(q.clone().narrow(2, 0, p), k.clone().narrow(2, 0, p), v.clone().narrow(2, 0, p), &mut cache)
        .unwrap();
    let mut made_at = vec![cache.state::<CachedMask<B>>().unwrap().made_at];
    let mut decoded = Vec::new();
    for i in p..p + 9 {
        let step = |x: &Tensor<B, 4>| x.clone().narrow(2, i, 1);
        decoded.push(method.decode(step(&q), step(&k), step(&v), &mut cache).unwrap().output);
        made_at.push(cache.state::<CachedMask<B>>().unwrap().made_at);
    }
    assert_eq!(made_at, vec![150, 150, 150, 150, 154, 154, 154, 154, 158, 158]);

    // Decoding with a reused mask stays within a small factor of exact top-k with the same
    // budget (2 sink + 8 window + 16 chosen keys; seen: 0.47 against 0.28).
    let part = |x: &Tensor<B, 4>| x.clone().narrow(2, 0, p + 9);
    let exact =
        dense_attention(part(&q), part(&k), part(&v), &AttnOptions::causal()).unwrap().output.narrow(2, p, 9);
    let oracle = burn_sparse_attn::OracleTopKConfig::new().with_sink(2).with_window(8).with_heavy(16.0);
    let oracle = oracle
        .init::<B>(&device())
        .unwrap()
        .forward(part(&q), part(&k), part(&v))
        .unwrap()
        .output
        .narrow(2, p, 9);
    let error = rel_error(Tensor::cat(decoded, 2), exact.clone());
    let oracle_error = rel_error(oracle, exact);
    eprintln!("decode relative error: HiP with mask reuse {error:.4}, oracle top-k {oracle_error:.4}");
    assert!(error < 2.5 * oracle_error, "HiP {error} oracle {oracle_error}");
}

#[test]
fn bad_configs_give_clear_errors() {
    for bad in [
        config(15, 8, 2, 1, 1),
        config(16, 8, 0, 1, 1),
        config(16, 8, 2, 1, 1).with_block_stride_q(3),
        config(16, 8, 2, 1, 1).with_block_stride_k(4),
        config(16, 8, 2, 1, 1).with_refresh_interval(0),
    ] {
        assert!(matches!(bad.init::<B>(&device()).unwrap_err(), AttnError::Config(_)), "{bad:?}");
    }
    let _ = Representative::First;
}

#[test]
fn hip_mask_and_the_selectors_refuse_positions_past_the_context() {
    let (q, k) = (randn([1, 2, 8, 4], 0), randn([1, 2, 20, 4], 1));
    let params = HipAttentionConfig::new().with_mask_k(4).with_block_size_q(4).with_window(2).with_sink(1);
    let method = params.init::<B>(&device()).unwrap();
    let past_end = QueryPositions { offset: 15, causal: true, kv_len: 20 };
    let err = hip_mask(q.clone(), k.clone(), &past_end, &method.params).unwrap_err();
    assert!(matches!(err, AttnError::QueriesPastContext { offset: 15, end: 23, context: 20 }), "{err}");
    let other_context = QueryPositions { offset: 0, causal: true, kv_len: 30 };
    let err = hip_mask(q.clone(), k.clone(), &other_context, &method.params).unwrap_err();
    assert!(matches!(err, AttnError::Shape { name: "positions", .. }), "{err}");
    let scores = randn([1, 2, 8, 20], 2);
    let err = burn_sparse_attn::select::top_k_selection(scores, &past_end, 1, 2, 3).unwrap_err();
    assert!(matches!(err, AttnError::QueriesPastContext { .. }), "{err}");
    // A non-finite scale is refused wherever a scale is taken.
    let v = randn([1, 2, 20, 4], 3);
    let options = AttnOptions::causal().with_scale(f64::INFINITY);
    assert!(matches!(dense_attention(q.clone(), k.clone(), v.clone(), &options), Err(AttnError::Config(_))));
    let err = HipAttentionConfig::new().with_scale(Some(f64::NAN)).init::<B>(&device()).unwrap().forward(
        randn([1, 2, 20, 4], 4),
        k,
        v,
    );
    assert!(matches!(err, Err(AttnError::Config(_))), "{err:?}");
}
