//! Training options: key centring (folded into the saved mappings), a time limit that ends
//! a run at an epoch boundary, and mappings used at another context length than trained at
//! (own test binary: training here draws from the backend's global seed).

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{backend::Backend, Distribution, Tensor};
use burn_sparse_attn_core::{AttentionMethod, HashAttentionConfig, HashMappingConfig};
use burn_sparse_attn_train::centring::KeyCentring;
use burn_sparse_attn_train::evaluate::recall_by_sparsity;
use burn_sparse_attn_train::trainer::{last_checkpoint, mappings_dir};
use burn_sparse_attn_train::{
    planted_clusters, train_hash_mappings, CapturedQk, HashMappings, HashMappingsConfig, HashTrainingConfig,
};
use common::{scratch, tiny_config};

type B = NdArray<f32>;
type A = Autodiff<B>;

/// Planted clusters whose keys sit far from the origin (an offset per dimension), as
/// post-RoPE keys of a real model do.
fn offset_clusters(len: usize, heads: usize, kv_heads: usize, seed: u64) -> CapturedQk {
    let mut passage = planted_clusters(6, len, heads, kv_heads, 16, 0.35, seed);
    for layer in &mut passage.layers {
        for (i, x) in layer.k.iter_mut().enumerate() {
            *x = *x * (1.0 + (i % 16) as f32 * 0.2) + 3.0 - (i % 5) as f32;
        }
    }
    passage
}

fn max_diff(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
    (a - b).abs().max().into_scalar()
}

/// The largest difference between the first key layers' weights and biases of `a` and `b`.
fn first_layer_distance(a: &HashMappings<B>, b: &HashMappings<B>) -> f32 {
    let (a, b) = (&a.layers[0].key.layers[0], &b.layers[0].key.layers[0]);
    let weight = (a.weight.val() - b.weight.val()).abs().max().into_scalar();
    let bias = (a.bias.val() - b.bias.val()).abs().max().into_scalar();
    weight.max(bias)
}

/// [`tiny_config`] with short epochs on 256-token passages, with or without centring.
fn short_config(epochs: usize, steps: usize, center_keys: bool) -> HashTrainingConfig {
    let mut config = tiny_config(epochs);
    config.steps_per_epoch = steps;
    config.min_query_position = 96;
    config.center_keys = center_keys;
    config
}

#[test]
fn centring_standardises_keys_and_folds_into_the_first_layer() {
    let device = Default::default();
    let passage = offset_clusters(200, 4, 2, 3);
    let centring = KeyCentring::from_passages(std::slice::from_ref(&passage));
    let k = passage.keys::<B>(0, passage.len, &device);
    let centred = centring.apply(0, k.clone());
    let mean = centred.clone().mean_dim(2);
    let var = (centred - mean.clone()).powi_scalar(2).mean_dim(2);
    assert!(mean.abs().max().into_scalar() < 1e-4, "centred keys have a mean");
    assert!(var.sub_scalar(1.0).abs().max().into_scalar() < 1e-3, "centred keys do not have unit variance");

    let q = passage.queries::<B>(0, 0, passage.len, &device);
    // Key MLPs per KV head and per query head (each KV head's keys feed its group's MLPs).
    for key_heads in [2, 4] {
        let config = HashMappingConfig::new(16, 4, key_heads).with_hidden(8).with_layers(2);
        B::seed(&device, key_heads as u64);
        let mappings = HashMappingsConfig::new(config, 1).init::<B>(&device).unwrap();
        let raw = &mappings.layers[0];
        let want_q = raw.query_codes(centring.apply(0, q.clone()));
        let want_k = raw.key_codes(centring.apply(0, k.clone())).unwrap();
        let folded = centring.fold(mappings.clone());
        let got_q = folded.layers[0].query_codes(q.clone());
        let got_k = folded.layers[0].key_codes(k.clone()).unwrap();
        assert!(max_diff(got_q, want_q) < 1e-3, "query codes differ after folding ({key_heads} key heads)");
        assert!(max_diff(got_k, want_k) < 1e-3, "key codes differ after folding ({key_heads} key heads)");
    }
}

#[test]
fn a_time_limit_stops_at_an_epoch_and_resume_finishes_with_centred_keys() {
    let device = Default::default();
    let passages = || vec![offset_clusters(256, 2, 1, 5)];
    let config = short_config(3, 5, true);
    let dir = scratch("time-limit");
    A::seed(&device, 3);
    let limited = config.clone().with_time_limit_seconds(Some(0.0));
    train_hash_mappings::<A>(&limited, passages(), passages(), &dir, false, &device).unwrap();
    assert_eq!(last_checkpoint(&dir), Some(1), "a spent time limit ends the run after its first epoch");
    let resumed = train_hash_mappings::<A>(&config, passages(), passages(), &dir, true, &device).unwrap();
    assert_eq!(last_checkpoint(&dir), Some(3));
    // What was saved is the folded mappings that were returned.
    let (_, loaded) = HashMappingsConfig::load_dir::<B>(mappings_dir(&dir), &device).unwrap();
    let q = passages()[0].queries::<B>(0, 0, 256, &device);
    let codes = |m: &HashMappings<B>| m.layers[0].query_codes(q.clone());
    assert!(max_diff(codes(&loaded), codes(&resumed)) < 1e-6);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mappings_trained_at_one_length_run_at_another() {
    let device = Default::default();
    let passages = |seed: u64| (0..2u64).map(|i| offset_clusters(256, 2, 1, seed + i)).collect::<Vec<_>>();
    let config = short_config(2, 60, true);
    let dir = scratch("lengths");
    A::seed(&device, 11);
    let trained =
        train_hash_mappings::<A>(&config, passages(10), passages(20), &dir, false, &device).unwrap();
    B::seed(&device, 12);
    let random = HashMappingsConfig::new(config.mapping.clone(), 1).init::<B>(&device).unwrap();

    // Recall on a passage 2.5x longer than the training passages.
    let long = offset_clusters(640, 2, 1, 99);
    let recall = |m| recall_by_sparsity("x", m, &long, &config.labels, &[16.0], 128, &device)[0].recall;
    let (trained_recall, random_recall) = (recall(&trained), recall(&random));
    assert!(trained_recall > 2.0 * random_recall, "trained {trained_recall} vs random {random_recall}");

    // And as HashAttention's mapping over the long passage's queries and keys.
    let method = HashAttentionConfig::new(config.mapping.clone())
        .with_sink(4)
        .with_window(8)
        .with_heavy(0.125)
        .init_with(trained.layers[0].clone())
        .unwrap();
    let q = long.queries::<B>(0, 0, long.len, &device);
    let k = long.keys::<B>(0, long.len, &device);
    let v = Tensor::<B, 4>::random([1, 1, long.len, 16], Distribution::Normal(0.0, 1.0), &device);
    let out = method.forward(q, k, v).unwrap().output;
    assert_eq!(out.dims(), [1, 2, 640, 16]);
    assert!(!out.is_nan().any().into_scalar(), "NaN in the output");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn training_starts_from_given_mappings_with_and_without_centring() {
    for center in [true, false] {
        let device = Default::default();
        let passages = || vec![offset_clusters(256, 2, 1, 7)];
        let config = short_config(1, 5, center);
        let first = scratch(&format!("init-first-{center}"));
        A::seed(&device, 5);
        let trained =
            train_hash_mappings::<A>(&config, passages(), passages(), &first, false, &device).unwrap();

        let centring = KeyCentring::from_passages(&passages());
        let round_trip = centring.unfold(centring.fold(trained.clone()));
        let diff = first_layer_distance(&round_trip, &trained);
        assert!(diff < 1e-4, "unfold(fold(m)) differs from m by {diff}");

        // A learning rate too small to move anything: the run ends where it started.
        let init = Some(mappings_dir(&first).display().to_string());
        let still =
            HashTrainingConfig { learning_rate: 1e-20, init_mappings: init.clone(), ..config.clone() };
        let second = scratch(&format!("init-second-{center}"));
        let kept = train_hash_mappings::<A>(&still, passages(), passages(), &second, false, &device).unwrap();
        let diff = first_layer_distance(&kept, &trained);
        assert!(diff < 1e-4, "a warm start does not start from the given mappings ({diff})");
        // With a real learning rate the given mappings train on.
        let moving = HashTrainingConfig { init_mappings: init, ..config.clone() };
        let third = scratch(&format!("init-third-{center}"));
        let moved =
            train_hash_mappings::<A>(&moving, passages(), passages(), &third, false, &device).unwrap();
        assert!(first_layer_distance(&moved, &trained) > 1e-4, "warm-started mappings did not train");

        let other = HashTrainingConfig {
            mapping: config.mapping.clone().with_hidden(16),
            init_mappings: Some(mappings_dir(&first).display().to_string()),
            ..config.clone()
        };
        let error = train_hash_mappings::<A>(
            &other,
            passages(),
            passages(),
            &scratch(&format!("init-other-{center}")),
            false,
            &device,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("differ from the ones to train"), "{error}");
        for dir in [first, second, third] {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}
