//! Save, load and resume of hash-mapping training reproduce the same mappings and metric
//! (own test binary: the backend's seed is global, so no other training may run beside it).

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn_sparse_attn_train::evaluate::recall_by_sparsity;
use burn_sparse_attn_train::{
    planted_clusters, train_hash_mappings, HashMappings, HashMappingsConfig, HashTrainingConfig,
};
use common::{scratch, tiny_config};

type B = NdArray<f32>;
type A = Autodiff<B>;

#[test]
fn save_load_and_resume_reproduce_the_mappings_and_the_metric() {
    let device = Default::default();
    let passages = || vec![planted_clusters(6, 256, 2, 1, 16, 0.35, 4)];
    let mut config = tiny_config(2);
    config.steps_per_epoch = 10;
    config.min_query_position = 96;
    let straight = scratch("straight");
    A::seed(&device, 7);
    let whole = train_hash_mappings::<A>(&config, passages(), passages(), &straight, false, &device).unwrap();

    let resumed = scratch("resumed");
    A::seed(&device, 7);
    let first = HashTrainingConfig { epochs: 1, ..config.clone() };
    train_hash_mappings::<A>(&first, passages(), passages(), &resumed, false, &device).unwrap();
    let continued =
        train_hash_mappings::<A>(&config, passages(), passages(), &resumed, true, &device).unwrap();

    let weights = |m: &HashMappings<B>| -> Vec<f32> {
        m.layers[0]
            .query
            .layers
            .iter()
            .flat_map(|l| l.weight.val().into_data().convert::<f32>().to_vec::<f32>().unwrap())
            .collect()
    };
    let (a, b) = (weights(&whole), weights(&continued));
    let max_diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(max_diff < 1e-5, "resumed training differs from straight training by {max_diff}");

    let (loaded_config, loaded) =
        HashMappingsConfig::load_dir::<B>(straight.join("mappings"), &device).unwrap();
    assert_eq!(loaded_config.layers, 1);
    assert_eq!(weights(&loaded), a);
    let (_, from_safetensors) =
        HashMappingsConfig::load_safetensors::<B>(straight.join("mappings.safetensors"), &device).unwrap();
    assert_eq!(weights(&from_safetensors), a);
    let held_out = planted_clusters(6, 256, 2, 1, 16, 0.35, 8);
    let recall = |m| recall_by_sparsity("x", m, &held_out, &config.labels, &[10.0], 64, &device)[0].recall;
    assert_eq!(recall(&loaded), recall(&whole));
    let missing = HashMappingsConfig::load_dir::<B>(straight.join("nowhere"), &device).unwrap_err();
    assert!(missing.to_string().contains("config.json"), "{missing}");
    for dir in [straight, resumed] {
        std::fs::remove_dir_all(dir).ok();
    }
}
