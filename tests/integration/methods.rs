//! Every method against dense attention: exact when the budget covers every key, in prefill
//! and decode, with and without GQA; error falling as the budget grows.

use crate::common::*;
use burn::tensor::Tensor;
use burn_sparse_attn::{
    Attention, AttentionConfig, AttentionMethod, AttnError, AttnOutput, DenseAttentionConfig,
    HashAttentionConfig, HashMappingConfig, HeadLayout, HipAttentionConfig, KeyBudget, KvCache, MethodKind,
    OracleTopKConfig, QuestConfig, StreamingAttentionConfig,
};

fn hash_config(dims: &Dims, shared: bool, heavy: f64) -> AttentionConfig {
    let key_heads = if shared { dims.kv_heads } else { dims.query_heads };
    let mapping = HashMappingConfig::new(dims.head_dim, dims.query_heads, key_heads).with_hidden(16);
    AttentionConfig::Hash(HashAttentionConfig::new(mapping).with_sink(1).with_window(2).with_heavy(heavy))
}

/// HashAttention with one key list per KV head.
fn shared_selection_config(dims: &Dims, heavy: f64) -> AttentionConfig {
    let mapping = HashMappingConfig::new(dims.head_dim, dims.query_heads, dims.kv_heads).with_hidden(16);
    let config = HashAttentionConfig::new(mapping).with_sink(1).with_window(2).with_heavy(heavy);
    AttentionConfig::Hash(config.with_shared_selection(true))
}

/// Methods whose budget covers every key of a context of `len` tokens.
fn covering_methods(dims: &Dims, len: usize) -> Vec<AttentionConfig> {
    vec![
        AttentionConfig::Streaming(StreamingAttentionConfig::new().with_sink(3).with_window(len - 3)),
        AttentionConfig::Streaming(StreamingAttentionConfig::new().with_sink(0).with_window(len + 5)),
        AttentionConfig::OracleTopK(OracleTopKConfig::new().with_sink(2).with_window(1).with_heavy(1.0)),
        AttentionConfig::OracleTopK(
            OracleTopKConfig::new().with_sink(0).with_window(0).with_heavy(len as f64),
        ),
        hash_config(dims, false, 1.0),
        hash_config(dims, true, 1.0),
        shared_selection_config(dims, 1.0),
        AttentionConfig::Quest(
            QuestConfig::new().with_page_size(3).with_sink(1).with_window(2).with_heavy(1.0),
        ),
        AttentionConfig::Quest(QuestConfig::new().with_sink(0).with_window(0).with_heavy(len as f64)),
        // HiP attends densely while the context fits its budget.
        AttentionConfig::Hip(HipAttentionConfig::new().with_mask_k(2 * len).with_block_size_q(4)),
    ]
}

/// Prefill `prefix` tokens, then decode the rest in steps of `step` tokens.
fn run_prefill_then_decode(
    method: &Attention<B>,
    (q, k, v): (&Tensor<B, 4>, &Tensor<B, 4>, &Tensor<B, 4>),
    prefix: usize,
    step: usize,
) -> Tensor<B, 4> {
    let len = q.dims()[2];
    let mut cache = KvCache::new();
    let part = |x: &Tensor<B, 4>, s: usize, l: usize| x.clone().narrow(2, s, l);
    let mut outputs = vec![
        method
            .prefill(part(q, 0, prefix), part(k, 0, prefix), part(v, 0, prefix), &mut cache)
            .unwrap()
            .output,
    ];
    let mut start = prefix;
    while start < len {
        let l = step.min(len - start);
        let out = method.decode(part(q, start, l), part(k, start, l), part(v, start, l), &mut cache).unwrap();
        outputs.push(out.output);
        start += l;
    }
    assert_eq!(cache.len(), len);
    Tensor::cat(outputs, 2)
}

fn self_attention_dims() -> Vec<Dims> {
    odd_dims().into_iter().map(|d| Dims { query_len: d.kv_len, value_dim: d.value_dim, ..d }).collect()
}

fn dense(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>) -> AttnOutput<B> {
    let dense = AttentionConfig::Dense(DenseAttentionConfig::new()).init::<B>(&device()).unwrap();
    dense.forward(q.clone(), k.clone(), v.clone()).unwrap()
}

#[test]
fn every_method_equals_dense_when_its_budget_covers_every_key() {
    for (n, dims) in self_attention_dims().into_iter().enumerate() {
        let (q, k, v) = dims.qkv(1000 + n as u64);
        let reference = dense(&q, &k, &v);
        for config in covering_methods(&dims, dims.kv_len) {
            let method = config.init::<B>(&device()).unwrap();
            let prefill = method.forward(q.clone(), k.clone(), v.clone()).unwrap();
            let err = max_abs_diff(prefill.output, reference.output.clone());
            assert!(err < 1e-4, "{} prefill {dims:?}: {err}", method.name());
            assert!(max_abs_diff(prefill.lse, reference.lse.clone()) < 1e-4);
            for (prefix, step) in [(dims.kv_len - 1, 1), (dims.kv_len / 2, 1), (3, 2)] {
                let decoded = run_prefill_then_decode(&method, (&q, &k, &v), prefix, step);
                let err = max_abs_diff(decoded, reference.output.clone());
                assert!(err < 1e-4, "{} decode from {prefix} by {step} {dims:?}: {err}", method.name());
            }
        }
    }
}

#[test]
fn small_budgets_differ_from_dense() {
    // Guards the test above: the sparse path is really taken.
    let dims = self_attention_dims()[3];
    let (q, k, v) = dims.qkv(5);
    let reference = dense(&q, &k, &v);
    for config in [
        AttentionConfig::Streaming(StreamingAttentionConfig::new().with_sink(1).with_window(2)),
        AttentionConfig::OracleTopK(OracleTopKConfig::new().with_sink(1).with_window(1).with_heavy(2.0)),
        hash_config(&dims, false, 2.0),
        shared_selection_config(&dims, 2.0),
        AttentionConfig::Quest(
            QuestConfig::new().with_page_size(2).with_sink(1).with_window(1).with_heavy(2.0),
        ),
    ] {
        let method = config.init::<B>(&device()).unwrap();
        let out = method.forward(q.clone(), k.clone(), v.clone()).unwrap();
        assert!(max_abs_diff(out.output, reference.output.clone()) > 1e-2, "{}", method.name());
    }
}

/// Relative error of a method's output against dense, on the last half of the queries.
fn relative_error(config: AttentionConfig, qkv: &(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)) -> f32 {
    let (q, k, v) = qkv;
    let len = q.dims()[2];
    let method = config.init::<B>(&device()).unwrap();
    let out = method.forward(q.clone(), k.clone(), v.clone()).unwrap().output;
    let reference = dense(q, k, v).output;
    rel_error(out.narrow(2, len / 2, len / 2), reference.narrow(2, len / 2, len / 2))
}

#[test]
fn error_against_dense_falls_as_the_heavy_budget_grows() {
    let dims = Dims {
        batch: 1,
        query_heads: 4,
        kv_heads: 2,
        query_len: 96,
        kv_len: 96,
        head_dim: 32,
        value_dim: 32,
    };
    let (q, k, v) = dims.qkv(31);
    // Sharpen the attention so that top-k matters.
    let qkv = (q.mul_scalar(2.0), k, v);
    let heavies = [2.0, 8.0, 24.0, 48.0, 96.0];
    let oracle: Vec<f32> = heavies
        .iter()
        .map(|&h| {
            relative_error(
                AttentionConfig::OracleTopK(
                    OracleTopKConfig::new().with_sink(1).with_window(1).with_heavy(h),
                ),
                &qkv,
            )
        })
        .collect();
    assert!(oracle.windows(2).all(|w| w[1] < w[0]), "oracle errors {oracle:?}");
    assert!(oracle[4] < 1e-5, "{oracle:?}");
    let hash: Vec<f32> =
        heavies.iter().map(|&h| relative_error(hash_config(&dims, false, h), &qkv)).collect();
    assert!(hash[0] > hash[2] && hash[2] > hash[3] && hash[4] < 1e-5, "hash errors {hash:?}");
    // Exact scores choose better than random hash functions at the same budget.
    assert!(oracle[1] < hash[1], "oracle {oracle:?} hash {hash:?}");
}

#[test]
fn gradients_of_a_covering_sparse_method_equal_dense_gradients() {
    type AB = burn::backend::Autodiff<B>;
    let dims =
        Dims { batch: 1, query_heads: 3, kv_heads: 1, query_len: 9, kv_len: 9, head_dim: 4, value_dim: 5 };
    let weights: Tensor<AB, 4> = Tensor::from_data(randn([1, 3, 9, 5], 3).into_data(), &device());
    let grads = |config: AttentionConfig| {
        let to_ad = |t: Tensor<B, 4>| Tensor::<AB, 4>::from_data(t.into_data(), &device()).require_grad();
        let (q, k, v) = dims.qkv(17);
        let (q, k, v) = (to_ad(q), to_ad(k), to_ad(v));
        let method = config.init::<AB>(&device()).unwrap();
        let out = method.forward(q.clone(), k.clone(), v.clone()).unwrap().output;
        let g = (out * weights.clone()).sum().backward();
        [q, k, v].map(|x| Tensor::<B, 4>::from_data(x.grad(&g).unwrap().into_data(), &device()))
    };
    let dense = grads(AttentionConfig::Dense(DenseAttentionConfig::new()));
    let sparse = grads(AttentionConfig::OracleTopK(
        OracleTopKConfig::new().with_sink(1).with_window(1).with_heavy(1.0),
    ));
    for (d, s) in dense.into_iter().zip(sparse) {
        assert!(max_abs_diff(d, s) < 1e-4);
    }
}

#[test]
fn cache_misuse_gives_clear_errors() {
    let dims = self_attention_dims()[1];
    let (q, k, v) = dims.qkv(2);
    let method = AttentionConfig::OracleTopK(OracleTopKConfig::new()).init::<B>(&device()).unwrap();
    let mut cache = KvCache::new();
    method.prefill(q.clone(), k.clone(), v.clone(), &mut cache).unwrap();
    let err = method.prefill(q.clone(), k.clone(), v.clone(), &mut cache).unwrap_err();
    assert!(matches!(err, AttnError::Cache(_)) && err.to_string().contains("clear()"), "{err}");

    // A cache filled without signatures cannot be continued by HashAttention.
    let hash = hash_config(&dims, true, 4.0).init::<B>(&device()).unwrap();
    let step = |x: &Tensor<B, 4>| x.clone().narrow(2, 0, 1);
    let err = hash.decode(step(&q), step(&k), step(&v), &mut cache).unwrap_err();
    assert!(matches!(err, AttnError::Cache(_)), "{err}");

    // A cache filled by one method cannot be continued by another.
    let mut hashed = KvCache::new();
    hash.prefill(q.clone(), k.clone(), v.clone(), &mut hashed).unwrap();
    let err = method.decode(step(&q), step(&k), step(&v), &mut hashed).unwrap_err();
    assert!(err.to_string().contains("hash") && err.to_string().contains("oracle-top-k"), "{err}");

    // Keys of another head size.
    let err =
        method.decode(step(&q), randn([2, 1, 1, 4], 0), randn([2, 1, 1, 6], 0), &mut cache).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");

    // Different numbers of new queries and keys.
    let err = method
        .decode(step(&q), k.clone().narrow(2, 0, 2), v.clone().narrow(2, 0, 2), &mut cache)
        .unwrap_err();
    assert!(matches!(err, AttnError::Shape { name: "k", .. }), "{err}");
}

#[test]
fn the_registry_names_every_method_once_and_builds_each_for_a_budget() {
    let heads = HeadLayout { head_dim: 8, query_heads: 4, kv_heads: 2 };
    let budget = KeyBudget::new(1024, 8.0).unwrap();
    let mut names = std::collections::HashSet::new();
    for &kind in MethodKind::ALL {
        assert!(names.insert(kind.name()), "{kind} named twice");
        assert_eq!(kind.name().parse::<MethodKind>().unwrap(), kind);
        assert!(!kind.description().is_empty());
        let config = kind.config_for_budget(&heads, &budget);
        assert_eq!(config.kind(), kind);
        assert_eq!(config.init::<B>(&device()).unwrap().kind(), kind);
    }
    assert_eq!(MethodKind::sparse().len(), MethodKind::ALL.len() - 1);
    assert!(!MethodKind::sparse().contains(&MethodKind::Dense));
    let err = "flash".parse::<MethodKind>().unwrap_err().to_string();
    assert!(err.contains("flash") && err.contains("quest"), "{err}");
}

#[test]
fn configs_round_trip_through_json_and_reject_bad_budgets() {
    use burn::config::Config;
    let dims = self_attention_dims()[2];
    let config = hash_config(&dims, true, 0.25);
    let path = std::env::temp_dir().join(format!("bsa-config-{}.json", std::process::id()));
    config.save(&path).unwrap();
    let loaded = AttentionConfig::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(format!("{loaded:?}"), format!("{config:?}"));

    let bad = AttentionConfig::OracleTopK(OracleTopKConfig::new().with_heavy(3.5));
    assert!(matches!(bad.init::<B>(&device()).unwrap_err(), AttnError::Config(_)));
    let empty = AttentionConfig::Streaming(StreamingAttentionConfig::new().with_sink(0).with_window(0));
    assert!(matches!(empty.init::<B>(&device()).unwrap_err(), AttnError::Config(_)));
}

/// Dense prefill, sparse decode: a cache filled by dense attention and handed over is
/// continued by every method exactly as if the method had filled it itself (the methods
/// that keep per-token state rebuild it from the cached keys; HiP refreshes its mask at
/// every step so that both runs choose afresh).
#[test]
fn every_method_continues_a_handed_over_dense_cache_as_its_own() {
    let dims = Dims {
        batch: 2,
        query_heads: 6,
        kv_heads: 2,
        query_len: 203,
        kv_len: 203,
        head_dim: 8,
        value_dim: 5,
    };
    let heads = HeadLayout { head_dim: 8, query_heads: 6, kv_heads: 2 };
    let budget = KeyBudget::new(200, 8.0).unwrap();
    let (q, k, v) = dims.qkv(31);
    let part = |x: &Tensor<B, 4>, start: usize, len: usize| x.clone().narrow(2, start, len);
    let dense_method = AttentionConfig::Dense(DenseAttentionConfig::new()).init::<B>(&device()).unwrap();
    for &kind in MethodKind::ALL {
        let config = match kind.config_for_budget(&heads, &budget) {
            AttentionConfig::Hip(hip) => AttentionConfig::Hip(hip.with_refresh_interval(1)),
            config => config,
        };
        let method = config.init::<B>(&device()).unwrap();
        let prefill = |m: &Attention<B>, cache: &mut KvCache<B>| {
            m.prefill(part(&q, 0, 200), part(&k, 0, 200), part(&v, 0, 200), cache).unwrap();
        };
        let (mut own, mut handed) = (KvCache::new(), KvCache::new());
        prefill(&method, &mut own);
        prefill(&dense_method, &mut handed);
        if kind != MethodKind::Dense {
            let step =
                method.decode(part(&q, 200, 1), part(&k, 200, 1), part(&v, 200, 1), &mut handed.clone());
            assert!(step.is_err(), "{kind} continued a dense cache without hand_over");
        }
        handed.hand_over();
        // Three steps: the first rebuilds the method's state, the next ones extend it.
        for t in 200..203 {
            let a = method.decode(part(&q, t, 1), part(&k, t, 1), part(&v, t, 1), &mut own).unwrap();
            let b = method.decode(part(&q, t, 1), part(&k, t, 1), part(&v, t, 1), &mut handed).unwrap();
            let diff = max_abs_diff(a.output, b.output).max(max_abs_diff(a.lse, b.lse));
            assert!(diff < 1e-5, "{kind} at step {t}: differs by {diff} after a hand-over");
        }
        assert_eq!(handed.len(), 203);
    }
}
