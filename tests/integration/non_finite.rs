//! Documented behaviour on NaN input: it propagates to the rows that read it, top-k never
//! selects a key whose score is NaN, and `ensure_finite` reports it.

use crate::common::*;
use burn::tensor::Tensor;
use burn_sparse_attn::{
    dense_attention, ensure_finite, AttentionMethod, AttnError, AttnOptions, OracleTopKConfig,
};

fn with_nan(x: Tensor<B, 4>, position: usize) -> Tensor<B, 4> {
    let [b, h, _, d] = x.dims();
    x.slice_fill([0..b, 0..h, position..position + 1, 0..d], f32::NAN)
}

fn nan_rows(out: Tensor<B, 4>) -> Vec<bool> {
    let d = out.dims()[3];
    to_vec(out).chunks(d).map(|row| row.iter().any(|x| x.is_nan())).collect()
}

#[test]
fn nan_in_a_query_reaches_only_its_own_row() {
    let (q, k, v) = (randn([1, 1, 6, 4], 0), randn([1, 1, 6, 4], 1), randn([1, 1, 6, 4], 2));
    let out = dense_attention(with_nan(q, 2), k, v, &AttnOptions::causal()).unwrap();
    assert_eq!(nan_rows(out.output), vec![false, false, true, false, false, false]);
}

#[test]
fn nan_in_a_key_reaches_the_rows_that_see_it_and_top_k_skips_it() {
    let (q, k, v) = (randn([1, 2, 12, 4], 3), randn([1, 2, 12, 4], 4), randn([1, 2, 12, 4], 5));
    let k = with_nan(k, 3);
    let dense = dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::causal()).unwrap();
    let rows: Vec<bool> = (0..24).map(|r| r % 12 >= 3).collect();
    assert_eq!(nan_rows(dense.output), rows);

    let method =
        OracleTopKConfig::new().with_sink(1).with_window(2).with_heavy(3.0).init::<B>(&device()).unwrap();
    let sparse = method.forward(q, k, v).unwrap();
    // Key 3 is in the window of queries 3 and 4 only; later queries never select it.
    let rows: Vec<bool> = (0..24).map(|r| r % 12 == 3 || r % 12 == 4).collect();
    assert_eq!(nan_rows(sparse.output), rows);
}

#[test]
fn ensure_finite_reports_nan_and_infinity() {
    let x = randn([1, 1, 3, 2], 0);
    assert!(ensure_finite(&x, "q").is_ok());
    assert_eq!(ensure_finite(&with_nan(x.clone(), 1), "q").unwrap_err(), AttnError::NonFinite("q"));
    assert_eq!(
        ensure_finite(&x.slice_fill([0..1, 0..1, 0..1, 0..1], f32::INFINITY), "k").unwrap_err(),
        AttnError::NonFinite("k")
    );
}
