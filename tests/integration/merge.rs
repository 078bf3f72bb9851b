//! Merging partial results by log-sum-exp, and gather attention over index sets.

use crate::common::*;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use burn_sparse_attn::{dense_attention, gather_attention, merge, AttnError, AttnOptions, KeySelection};

/// Every key, with validity given per (row, key) by `keep`.
fn all_keys(dims: &Dims, keep: impl Fn(usize, usize) -> bool) -> KeySelection<B> {
    let rows = dims.batch * dims.query_heads * dims.query_len;
    let n = dims.kv_len;
    let indices: Vec<i64> = (0..rows).flat_map(|_| 0..n as i64).collect();
    let valid: Vec<bool> =
        (0..rows).flat_map(|r| (0..n).map(move |j| (r, j))).map(|(r, j)| keep(r, j)).collect();
    let shape = [dims.batch, dims.query_heads, dims.query_len, n];
    KeySelection::new(
        Tensor::<B, 4, Int>::from_data(TensorData::new(indices, shape), &device()),
        Tensor::<B, 4, Bool>::from_data(TensorData::new(valid, shape), &device()),
    )
    .unwrap()
}

#[test]
fn merge_of_disjoint_parts_equals_attention_over_their_union() {
    for (n, dims) in odd_dims().into_iter().enumerate() {
        let (q, k, v) = dims.qkv(100 + n as u64);
        let scale = 1.0 / (dims.head_dim as f64).sqrt();
        let mut rng = Rng::new(n as u64);
        let split: Vec<bool> = (0..dims.batch * dims.query_heads * dims.query_len * dims.kv_len)
            .map(|_| rng.uniform() < 0.4)
            .collect();
        let kv = dims.kv_len;
        let part_a = all_keys(&dims, |r, j| split[r * kv + j]);
        let part_b = all_keys(&dims, |r, j| !split[r * kv + j]);
        let a = gather_attention(q.clone(), k.clone(), v.clone(), &part_a, scale).unwrap();
        let b = gather_attention(q.clone(), k.clone(), v.clone(), &part_b, scale).unwrap();
        let merged = merge(a, b).unwrap();
        let full = dense_attention(q, k, v, &AttnOptions::non_causal()).unwrap();
        assert!(max_abs_diff(merged.output, full.output) < 1e-5, "{dims:?}");
        assert!(max_abs_diff(merged.lse, full.lse) < 1e-4, "{dims:?}");
    }
}

#[test]
fn a_part_without_keys_contributes_nothing() {
    let dims = odd_dims()[1];
    let (q, k, v) = dims.qkv(9);
    let scale = 0.5;
    let none =
        gather_attention(q.clone(), k.clone(), v.clone(), &all_keys(&dims, |_, _| false), scale).unwrap();
    assert!(to_vec(none.lse.clone()).iter().all(|l| *l == f32::NEG_INFINITY));
    assert!(to_vec(none.output.clone()).iter().all(|o| *o == 0.0));
    let some = gather_attention(q, k, v, &all_keys(&dims, |r, j| (r + j) % 3 == 0), scale).unwrap();
    let merged = merge(none, some.clone()).unwrap();
    assert!(max_abs_diff(merged.output, some.output) < 1e-6);
}

#[test]
fn gather_attention_matches_naive_loops_on_a_causal_index_set() {
    let dims = odd_dims()[3];
    let (q, k, v) = dims.qkv(77);
    let offset = dims.kv_len - dims.query_len;
    let keep = |i: usize, j: usize| j <= offset + i && (i * 7 + j) % 4 != 1;
    let selection = all_keys(&dims, |r, j| keep(r % dims.query_len, j));
    let scale = 1.0 / (dims.head_dim as f32).sqrt();
    let (out, _) =
        naive_attention(&dims, &to_vec(q.clone()), &to_vec(k.clone()), &to_vec(v.clone()), scale, keep);
    let got = gather_attention(q, k, v, &selection, scale as f64).unwrap();
    let shape = [dims.batch, dims.query_heads, dims.query_len, dims.value_dim];
    assert!(max_abs_diff(got.output, tensor(out, shape)) < 1e-5);
}

#[test]
fn gather_and_merge_reject_mismatched_inputs() {
    let dims = odd_dims()[0];
    let (q, k, v) = dims.qkv(1);
    let wrong_queries = Dims { query_len: dims.query_len - 1, ..dims };
    let err = gather_attention(q.clone(), k.clone(), v.clone(), &all_keys(&wrong_queries, |_, _| true), 1.0)
        .unwrap_err();
    assert!(matches!(err, AttnError::Shape { name: "selection", .. }), "{err}");

    let a = dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::causal()).unwrap();
    let b = dense_attention(q.narrow(2, 0, 3), k, v, &AttnOptions::causal().with_query_offset(0)).unwrap();
    assert!(matches!(merge(a, b).unwrap_err(), AttnError::Shape { name: "merge", .. }));
}
