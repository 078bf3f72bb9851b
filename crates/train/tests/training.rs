//! Hash-mapping training on a tiny planted-cluster problem, on ndarray: labels and recall
//! against direct computations, and recall rising far above random mappings.

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{backend::Backend, Bool, Tensor, TensorData};
use burn_sparse_attn_core::rng::SplitMix64;
use burn_sparse_attn_train::evaluate::recall_by_sparsity;
use burn_sparse_attn_train::labels::{top_k_labels, true_logits, LabelConfig};
use burn_sparse_attn_train::objective::recall_at_budget;
use burn_sparse_attn_train::{planted_clusters, train_hash_mappings, HashMappingsConfig};
use common::{scratch, tiny_config};

type B = NdArray<f32>;
type A = Autodiff<B>;

#[test]
fn labels_are_the_top_k_eligible_keys_by_true_logit() {
    let device = Default::default();
    let (heads, kv_heads, d, start, count, end) = (3, 1, 5, 19, 7, 26);
    let passage = planted_clusters(3, end, heads, kv_heads, d, 1.0, 5);
    let q = passage.queries::<B>(0, start, count, &device);
    let k = passage.keys::<B>(0, end, &device);
    let config = LabelConfig::new().with_sink(3).with_window(4).with_top_k(6);
    let eligible = config.eligible::<B>(start, count, end, &device);
    let labels = top_k_labels(true_logits(q, k), eligible, config.top_k);
    let got: Vec<bool> = labels.into_data().to_vec().unwrap();
    let layer = &passage.layers[0];
    for h in 0..heads {
        for i in 0..count {
            let pos = start + i;
            let qv = &layer.q[(h * end + pos) * d..][..d];
            let mut scored: Vec<(f32, usize)> = (config.sink..=pos - config.window)
                .map(|j| {
                    let kv = &layer.k[j * d..][..d];
                    (qv.iter().zip(kv).map(|(a, b)| a * b).sum::<f32>() / (d as f32).sqrt(), j)
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let want: Vec<usize> = scored.iter().take(config.top_k).map(|s| s.1).collect();
            let row: Vec<usize> = (0..end).filter(|&j| got[(h * count + i) * end + j]).collect();
            let mut want_sorted = want.clone();
            want_sorted.sort();
            assert_eq!(row, want_sorted, "head {h} query {pos}");
        }
    }
}

#[test]
fn labels_keep_ties_short_rows_and_empty_rows() {
    let device = Default::default();
    // Rows: ties at the top; ties at the cut; two eligible keys for k = 3; none eligible;
    // values that differ by one float step around the cut.
    let near = 0.3f32;
    let logits = [
        [1.0, 5.0, 5.0, 5.0, 2.0, -1.0],
        [9.0, 4.0, 1.0, 4.0, 4.0, -3.0],
        [7.0, 1.0, 8.0, 2.0, 0.5, 3.0],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        [near, f32::from_bits(near.to_bits() + 1), -2.0, 1e-7, 50.0, -50.0],
    ];
    let eligible = [[true; 6], [true; 6], [false, true, false, true, false, false], [false; 6], [true; 6]];
    let flat: Vec<f32> = logits.iter().flatten().copied().collect();
    let mask: Vec<bool> = eligible.iter().flatten().copied().collect();
    let logits = Tensor::<B, 4>::from_data(TensorData::new(flat, [1, 1, 5, 6]), &device);
    let eligible = Tensor::<B, 4, Bool>::from_data(TensorData::new(mask, [1, 1, 5, 6]), &device);
    let got: Vec<bool> = top_k_labels(logits, eligible, 3).into_data().to_vec().unwrap();
    let rows: Vec<Vec<usize>> = got.chunks(6).map(|r| (0..6).filter(|&j| r[j]).collect()).collect();
    assert_eq!(rows[0], vec![1, 2, 3], "three-way tie at the top");
    assert_eq!(rows[1], vec![0, 1, 3, 4], "ties at the cut all count");
    assert_eq!(rows[2], vec![1, 3], "fewer eligible keys than k");
    assert!(rows[3].is_empty(), "no eligible key");
    assert_eq!(rows[4], vec![0, 1, 4], "one float step apart");
}

#[test]
fn recall_at_budget_matches_a_direct_count_with_shared_ties() {
    let device = Default::default();
    let (rows, keys, bits) = (5, 23, 4);
    let mut rng = SplitMix64::new(3);
    let hard: Vec<f32> = (0..rows * keys).map(|_| rng.below(bits + 1) as f32).collect();
    let labels: Vec<bool> = (0..rows * keys).map(|_| rng.below(4) == 0).collect();
    let eligible: Vec<bool> = (0..rows * keys).map(|i| i % keys >= 2).collect();
    let budget = 6;
    let t = |v: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(v, [1, 1, rows, keys]), &device);
    let b = |v: Vec<bool>| {
        Tensor::<B, 4, burn::tensor::Bool>::from_data(TensorData::new(v, [1, 1, rows, keys]), &device)
    };
    let got =
        recall_at_budget(t(hard.clone()), b(labels.clone()), b(eligible.clone()), bits, budget).into_scalar();
    let mut total = 0.0;
    let mut counted = 0;
    for r in 0..rows {
        let row = |v: &[f32]| v[r * keys..(r + 1) * keys].to_vec();
        let scores: Vec<f32> =
            row(&hard).iter().zip(&eligible[r * keys..]).map(|(s, e)| if *e { *s } else { -1.0 }).collect();
        let positives: Vec<usize> =
            (0..keys).filter(|&j| labels[r * keys + j] && eligible[r * keys + j]).collect();
        if positives.is_empty() {
            continue;
        }
        let mut sorted = scores.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let cut = sorted[budget - 1];
        let above = scores.iter().filter(|&&s| s > cut).count();
        let tied = scores.iter().filter(|&&s| s == cut).count();
        let share = (budget - above) as f64 / tied as f64;
        let found: f64 = positives
            .iter()
            .map(|&j| {
                if scores[j] > cut {
                    1.0
                } else if scores[j] == cut {
                    share
                } else {
                    0.0
                }
            })
            .sum();
        total += found / positives.len() as f64;
        counted += 1;
    }
    assert!((got as f64 - total / counted as f64).abs() < 1e-5, "{got} vs {}", total / counted as f64);
}

#[test]
fn training_raises_recall_far_above_random_mappings() {
    let device = Default::default();
    let passages = |seed: u64| {
        (0..2u64).map(|i| planted_clusters(24, 384, 2, 1, 16, 0.35, seed + i)).collect::<Vec<_>>()
    };
    let held_out = planted_clusters(24, 384, 2, 1, 16, 0.35, 99);
    let config = tiny_config(4);
    let dir = scratch("recall");
    A::seed(&device, 1);
    let trained =
        train_hash_mappings::<A>(&config, passages(10), passages(20), &dir, false, &device).unwrap();
    B::seed(&device, 2);
    let random = HashMappingsConfig::new(config.mapping.clone(), 1).init::<B>(&device).unwrap();
    let sparsity = [(384.0 - 12.0) / 8.0 / 2.0];
    let recall =
        |name, m| recall_by_sparsity(name, m, &held_out, &config.labels, &sparsity, 128, &device)[0].recall;
    let (trained_recall, random_recall) = (recall("trained", &trained), recall("random", &random));
    eprintln!("recall at budget 16 (top 8): trained {trained_recall:.3}, random {random_recall:.3}");
    assert!(trained_recall > 0.4, "trained recall {trained_recall}");
    assert!(trained_recall > 5.0 * random_recall, "trained {trained_recall} vs random {random_recall}");
    std::fs::remove_dir_all(&dir).ok();
}
