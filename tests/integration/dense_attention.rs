//! Dense attention against a naive loop implementation.

use crate::common::*;
use burn_sparse_attn::{dense_attention, AttnError, AttnOptions};

#[test]
fn causal_dense_matches_naive_loops_at_odd_sizes_and_gqa() {
    for (n, dims) in odd_dims().into_iter().enumerate() {
        let (q, k, v) = dims.qkv(10 * n as u64);
        let scale = 1.0 / (dims.head_dim as f32).sqrt();
        let offset = dims.kv_len - dims.query_len;
        let (out, lse) = naive_attention(
            &dims,
            &to_vec(q.clone()),
            &to_vec(k.clone()),
            &to_vec(v.clone()),
            scale,
            |i, j| j <= offset + i,
        );
        let got = dense_attention(q, k, v, &AttnOptions::causal()).unwrap();
        assert_eq!(got.output.dims(), [dims.batch, dims.query_heads, dims.query_len, dims.value_dim]);
        assert!(
            max_abs_diff(
                got.output,
                tensor(out, [dims.batch, dims.query_heads, dims.query_len, dims.value_dim])
            ) < 1e-5
        );
        let lse_got = to_vec(got.lse);
        assert!(lse_got.iter().zip(&lse).all(|(a, b)| (a - b).abs() < 1e-4), "{dims:?}");
    }
}

#[test]
fn non_causal_explicit_offset_and_scale_match_naive_loops() {
    let dims =
        Dims { batch: 1, query_heads: 3, kv_heads: 3, query_len: 5, kv_len: 11, head_dim: 7, value_dim: 3 };
    let (q, k, v) = dims.qkv(7);
    let (qv, kv, vv) = (to_vec(q.clone()), to_vec(k.clone()), to_vec(v.clone()));
    let shape = [1, 3, 5, 3];

    let (out, _) = naive_attention(&dims, &qv, &kv, &vv, 0.3, |_, _| true);
    let got =
        dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::non_causal().with_scale(0.3)).unwrap();
    assert!(max_abs_diff(got.output, tensor(out, shape)) < 1e-5);

    let (out, _) = naive_attention(&dims, &qv, &kv, &vv, 1.0 / 7f32.sqrt(), |i, j| j <= 2 + i);
    let got = dense_attention(q, k, v, &AttnOptions::causal().with_query_offset(2)).unwrap();
    assert!(max_abs_diff(got.output, tensor(out, shape)) < 1e-5);
}

#[test]
fn long_context_is_chunked_without_changing_the_result() {
    // 1 x 4 heads x 2100 keys: more than one chunk of queries (2^24 / (4 * 2100) < 2100).
    let dims = Dims {
        batch: 1,
        query_heads: 4,
        kv_heads: 4,
        query_len: 2100,
        kv_len: 2100,
        head_dim: 4,
        value_dim: 2,
    };
    let (q, k, v) = dims.qkv(3);
    let got = dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::causal()).unwrap();
    // Reference: the last 5 queries alone (a single chunk) with the same positions.
    let tail = dense_attention(q.narrow(2, 2095, 5), k, v, &AttnOptions::causal()).unwrap();
    assert!(max_abs_diff(got.output.narrow(2, 2095, 5), tail.output) < 1e-6);
}

#[test]
fn bad_shapes_give_clear_errors() {
    let q = randn([1, 4, 3, 8], 0);
    let k = randn([1, 3, 5, 8], 1);
    let v = randn([1, 3, 5, 8], 2);
    let err = dense_attention(q.clone(), k, v, &AttnOptions::causal()).unwrap_err();
    assert_eq!(err, AttnError::HeadsNotDivisible { query_heads: 4, kv_heads: 3 });

    let err =
        dense_attention(q.clone(), randn([1, 2, 5, 7], 1), randn([1, 2, 5, 8], 2), &AttnOptions::causal())
            .unwrap_err();
    assert!(matches!(err, AttnError::Shape { name: "k", .. }), "{err}");
    assert!(err.to_string().contains("head_dim"), "{err}");

    let err =
        dense_attention(q.clone(), randn([1, 2, 5, 8], 1), randn([1, 2, 4, 8], 2), &AttnOptions::causal())
            .unwrap_err();
    assert!(matches!(err, AttnError::Shape { name: "v", .. }), "{err}");

    let err =
        dense_attention(q.clone(), randn([1, 2, 2, 8], 1), randn([1, 2, 2, 8], 2), &AttnOptions::causal())
            .unwrap_err();
    assert_eq!(err, AttnError::QueriesPastContext { offset: 0, end: 3, context: 2 });

    let err = dense_attention(
        q.clone(),
        randn([1, 2, 5, 8], 1),
        randn([1, 2, 5, 8], 2),
        &AttnOptions::causal().with_query_offset(3),
    )
    .unwrap_err();
    assert_eq!(err, AttnError::QueriesPastContext { offset: 3, end: 6, context: 5 });

    let err = dense_attention(q, randn([1, 2, 0, 8], 1), randn([1, 2, 0, 8], 2), &AttnOptions::non_causal())
        .unwrap_err();
    assert_eq!(err, AttnError::EmptyContext);
}
