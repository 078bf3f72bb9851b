//! Shared set-up of the training tests: a tiny config and scratch folders.

#![allow(dead_code)]

use std::path::PathBuf;

use burn_sparse_attn_core::HashMappingConfig;
use burn_sparse_attn_train::labels::LabelConfig;
use burn_sparse_attn_train::HashTrainingConfig;

/// Mappings for 2 query heads, 1 key head, head_dim 16; top-8 labels; `epochs` of 100 steps.
pub fn tiny_config(epochs: usize) -> HashTrainingConfig {
    let mapping = HashMappingConfig::new(16, 2, 1).with_hidden(32).with_layers(2);
    HashTrainingConfig::new(mapping)
        .with_labels(LabelConfig::new().with_sink(4).with_window(8).with_top_k(8))
        .with_queries_per_step(32)
        .with_min_query_position(160)
        .with_steps_per_epoch(100)
        .with_epochs(epochs)
        .with_valid_steps(4)
        .with_log_every(50)
}

/// An empty folder under the temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bsa-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
