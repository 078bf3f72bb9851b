//! Trains HashAttention mappings on a synthetic problem with a known answer (queries and keys
//! around 24 random directions) and compares their recall with random mappings.
//!
//! `cargo run --release -p burn-sparse-attn-train --example planted_clusters`
//!
//! For the real model, see `bsa train-hash` (captures SmolLM2's queries and keys on books).

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn_sparse_attn_core::HashMappingConfig;
use burn_sparse_attn_train::evaluate::recall_by_sparsity;
use burn_sparse_attn_train::labels::LabelConfig;
use burn_sparse_attn_train::{planted_clusters, train_hash_mappings, HashMappingsConfig, HashTrainingConfig};

type B = NdArray<f32>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    // 2 query heads sharing 1 key head, head_dim 16, 384 tokens per passage.
    let passage = |seed| planted_clusters(24, 384, 2, 1, 16, 0.35, seed);
    let mapping = HashMappingConfig::new(16, 2, 1).with_hidden(32).with_layers(2);
    let labels = LabelConfig::new().with_sink(4).with_window(8).with_top_k(8);
    let config = HashTrainingConfig::new(mapping.clone())
        .with_labels(labels.clone())
        .with_queries_per_step(32)
        .with_min_query_position(160)
        .with_steps_per_epoch(100)
        .with_epochs(4)
        .with_log_every(50);
    let dir = std::env::temp_dir().join("bsa-planted-clusters");
    let _ = std::fs::remove_dir_all(&dir);
    let trained = train_hash_mappings::<Autodiff<B>>(
        &config,
        vec![passage(1), passage(2)],
        vec![passage(3)],
        &dir,
        false,
        &device,
    )?;
    B::seed(&device, 0);
    let random = HashMappingsConfig::new(mapping, 1).init::<B>(&device)?;
    let held_out = passage(4);
    let sparsities = [4.0, 8.0, 16.0];
    println!("recall of the true top-8 keys within the budget (held-out passage)");
    for (name, mappings) in [("trained", &trained), ("random", &random)] {
        for row in recall_by_sparsity(name, mappings, &held_out, &labels, &sparsities, 128, &device) {
            println!("{:<8} {:>4}x {:.3}", row.mappings, row.sparsity, row.recall);
        }
    }
    println!("checkpoints and trained mappings: {}", dir.display());
    Ok(())
}
