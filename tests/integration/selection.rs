//! Index-set selection: sink, window, top-k and their union, against direct computation.

use std::collections::BTreeSet;

use crate::common::*;
use burn::tensor::Tensor;
use burn_sparse_attn::select::{budget_selection, sink_selection, top_k_selection, window_selection};
use burn_sparse_attn::{AttnError, AttnOptions, AttnShape, KeySelection, QueryPositions, SparseBudget};

/// The valid keys of every (batch, head, query) row, as sets.
fn key_sets(selection: &KeySelection<B>) -> Vec<BTreeSet<i64>> {
    let n = selection.width();
    let indices = to_ints(selection.indices.clone());
    let valid = to_bools(selection.valid.clone());
    indices
        .chunks(n)
        .zip(valid.chunks(n))
        .map(|(idx, ok)| {
            let row: Vec<i64> = idx.iter().zip(ok).filter(|(_, ok)| **ok).map(|(i, _)| *i).collect();
            let set: BTreeSet<i64> = row.iter().cloned().collect();
            assert_eq!(set.len(), row.len(), "duplicate key in {row:?}");
            set
        })
        .collect()
}

fn causal(query_len: usize, kv_len: usize) -> QueryPositions {
    let q = randn([1, 1, query_len, 1], 0);
    let k = randn([1, 1, kv_len, 1], 0);
    AttnOptions::causal().positions(&AttnShape::of(&q, &k, &k).unwrap()).unwrap()
}

#[test]
fn sink_and_window_are_what_their_definitions_say() {
    for (tq, tk, sink, window) in [(9, 9, 2, 3), (1, 17, 4, 5), (6, 20, 0, 7), (5, 5, 9, 1), (3, 30, 3, 40)] {
        let pos = causal(tq, tk);
        let dims = [2, 3, tq];
        let sink_sets = sink_selection::<B>(&pos, dims, sink, &device()).map(|s| key_sets(&s));
        let window_sets = window_selection::<B>(&pos, dims, sink, window, &device()).map(|s| key_sets(&s));
        for row in 0..2 * 3 * tq {
            let last = (tk - tq + row % tq) as i64;
            let want_sink: BTreeSet<i64> = (0..sink as i64).filter(|&j| j <= last && j < tk as i64).collect();
            let want_window: BTreeSet<i64> =
                (last - window as i64 + 1..=last).filter(|&j| j >= sink as i64 && j >= 0).collect();
            assert_eq!(sink_sets.as_ref().map_or(BTreeSet::new(), |s| s[row].clone()), want_sink);
            assert_eq!(window_sets.as_ref().map_or(BTreeSet::new(), |s| s[row].clone()), want_window);
        }
    }
}

#[test]
fn top_k_keeps_exactly_the_k_highest_scores_outside_sink_and_window() {
    let (tq, tk, sink, window, k) = (7, 23, 2, 3, 5);
    let scores_vec = randn_vec(2 * tq * tk, 42);
    let scores = Tensor::<B, 4>::from_data(
        burn::tensor::TensorData::new(scores_vec.clone(), [1, 2, tq, tk]),
        &device(),
    );
    let pos = causal(tq, tk);
    let selection = top_k_selection(scores, &pos, sink, window, k).unwrap().unwrap();
    let sets = key_sets(&selection);
    for (row, set) in sets.iter().enumerate() {
        let last = tk - tq + row % tq;
        let mut candidates: Vec<(f32, i64)> = (sink..tk)
            .filter(|&j| j + window <= last)
            .map(|j| (scores_vec[row * tk + j], j as i64))
            .collect();
        candidates.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
        let want: BTreeSet<i64> = candidates.iter().take(k).map(|c| c.1).collect();
        assert_eq!(set, &want, "row {row}");
    }
}

#[test]
fn union_removes_duplicates_and_sorts() {
    let a = KeySelection::new(
        int_tensor(vec![3, 1, 4, 1], [1, 1, 1, 4]),
        Tensor::<B, 4, burn::tensor::Int>::ones([1, 1, 1, 4], &device()).bool(),
    )
    .unwrap();
    let b_valid = int_tensor(vec![1, 0, 1], [1, 1, 1, 3]).bool();
    let b = KeySelection::new(int_tensor(vec![5, 9, 3], [1, 1, 1, 3]), b_valid).unwrap();
    let union = KeySelection::union(vec![a, b], 10).unwrap();
    let indices = to_ints(union.indices.clone());
    let valid = to_bools(union.valid.clone());
    let kept: Vec<i64> = indices.iter().zip(&valid).filter(|(_, v)| **v).map(|(i, _)| *i).collect();
    assert_eq!(kept, vec![1, 3, 4, 5]);
    assert_eq!(to_ints(union.counts()), vec![4]);
}

#[test]
fn budget_selection_is_the_union_and_respects_causality() {
    let (tq, tk) = (11, 11);
    let pos = causal(tq, tk);
    let budget = SparseBudget { sink: 2, window: 3, heavy: 4.0 };
    let scores = randn([1, 2, tq, tk], 5);
    let selection = budget_selection(Some(scores), &pos, [1, 2, tq], &budget, &device()).unwrap();
    for (row, set) in key_sets(&selection).iter().enumerate() {
        let last = (row % tq) as i64;
        assert!(set.iter().all(|&j| j <= last), "future key in row {row}: {set:?}");
        let want = (last as usize + 1).min(2 + 3 + 4);
        assert_eq!(set.len(), want, "row {row}: {set:?}");
    }
}

#[test]
fn impossible_budgets_and_indices_give_clear_errors() {
    let pos = causal(4, 6);
    let err = top_k_selection(randn([1, 1, 4, 6], 0), &pos, 0, 0, 7).unwrap_err();
    assert_eq!(err, AttnError::BudgetExceedsContext { budget: 7, context: 6 });

    let bad = KeySelection::new(
        int_tensor(vec![0, 6], [1, 1, 1, 2]),
        Tensor::<B, 4, burn::tensor::Int>::ones([1, 1, 1, 2], &device()).bool(),
    )
    .unwrap();
    assert_eq!(bad.check_in_range(6).unwrap_err(), AttnError::IndexOutOfRange { index: 6, context: 6 });
    assert!(bad.check_in_range(7).is_ok());

    let mismatched = KeySelection::new(
        int_tensor(vec![0, 1], [1, 1, 1, 2]),
        Tensor::<B, 4, burn::tensor::Int>::ones([1, 1, 2, 1], &device()).bool(),
    );
    assert!(matches!(mismatched.unwrap_err(), AttnError::Shape { name: "valid", .. }));

    for heavy in [-1.0, f64::NAN, 2.5] {
        let budget = SparseBudget { sink: 1, window: 1, heavy };
        assert!(matches!(budget.validate(), Err(AttnError::Config(_))), "{heavy}");
    }
}
