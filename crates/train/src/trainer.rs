//! The training run: burn-train's supervised learner over [`HashTrainee`], with loss and
//! recall metrics, per-epoch checkpoints, resume, and the trained mappings saved per layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use burn::config::Config;
use burn::data::dataloader::DataLoaderBuilder;
use burn::optim::AdamConfig;
use burn::record::DefaultRecorder;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{Learner, SupervisedTraining};
use burn_sparse_attn_core::hash::StoredPrecision;
use burn_sparse_attn_core::{AttnError, HashMappingConfig};

use crate::capture::CapturedQk;
use crate::centring::KeyCentring;
use crate::data::{QkBatch, QkBatcher, QueryChunks};
use crate::labels::LabelConfig;
use crate::metrics::ScalarMetric;
use crate::renderer::LineRenderer;
use crate::step::HashTrainee;
use crate::time_limit::TimeLimit;
use burn_sparse_attn_core::{HashMappings, HashMappingsConfig};

/// Config of a training run. Defaults follow the paper: top-32 labels, positive weight
/// `alpha + beta * keys` with 20 and 0, Adam at 1e-3.
#[derive(Config, Debug)]
pub struct HashTrainingConfig {
    /// The mapping of each layer.
    pub mapping: HashMappingConfig,
    /// Which keys are positives.
    #[config(default = "LabelConfig::new()")]
    pub labels: LabelConfig,
    /// Positive weight, constant part.
    #[config(default = 20.0)]
    pub alpha: f64,
    /// Positive weight per key of context.
    #[config(default = 0.0)]
    pub beta: f64,
    /// Adam's learning rate.
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    /// Queries per step.
    #[config(default = 64)]
    pub queries_per_step: usize,
    /// Earliest query position of a chunk (queries need keys to choose from).
    #[config(default = 256)]
    pub min_query_position: usize,
    /// Steps per epoch (a checkpoint is written after each epoch).
    #[config(default = 100)]
    pub steps_per_epoch: usize,
    /// Epochs.
    #[config(default = 3)]
    pub epochs: usize,
    /// Validation chunks per epoch.
    #[config(default = 8)]
    pub valid_steps: usize,
    /// Print a progress line every this many steps.
    #[config(default = 10)]
    pub log_every: usize,
    /// Seed of the chunk draws.
    #[config(default = 0)]
    pub seed: u64,
    /// Standardise queries and keys with the training keys' statistics before the
    /// mappings (folded into the saved mappings; see [`KeyCentring`]).
    #[config(default = false)]
    pub center_keys: bool,
    /// Stop at the end of the epoch after which another would pass this many seconds
    /// (the checkpoint is written; resume continues). `None`: run every epoch.
    #[config(default = "None")]
    pub time_limit_seconds: Option<f64>,
    /// Start from these mappings (a `.safetensors` file or a folder of records, of the
    /// same shape as `mapping`) instead of random ones; a resumed run takes its checkpoint.
    #[config(default = "None")]
    pub init_mappings: Option<String>,
}

/// Trains mappings for every layer of `train` (passages from one model) and validates on
/// `valid`; checkpoints go to `dir/checkpoint`, the trained mappings to `dir/mappings`.
/// With `resume`, training continues from the last checkpoint in `dir` (with the same
/// passages: key centring recomputes its statistics from them).
pub fn train_hash_mappings<B: AutodiffBackend>(
    config: &HashTrainingConfig,
    train: Vec<CapturedQk>,
    valid: Vec<CapturedQk>,
    dir: &Path,
    resume: bool,
    device: &B::Device,
) -> Result<HashMappings<B::InnerBackend>, AttnError> {
    let first = train.first().ok_or_else(|| AttnError::Config("no training passages".into()))?;
    let layers = first.layers.len();
    if valid.iter().chain(&train).any(|p| p.layers.len() != layers || p.heads != first.heads) {
        return Err(AttnError::Config("training and validation passages come from different models".into()));
    }
    let mappings_config = HashMappingsConfig::new(config.mapping.clone(), layers);
    let centring = config.center_keys.then(|| Arc::new(KeyCentring::from_passages(&train)));
    let chunks = |passages: &[CapturedQk], len: usize, seed: u64| QueryChunks {
        passage_lens: passages.iter().map(|p| p.len).collect(),
        count: config.queries_per_step,
        min_start: config.min_query_position,
        len,
        seed,
    };
    let train_chunks = chunks(&train, config.steps_per_epoch, config.seed);
    let valid_chunks = chunks(&valid, config.valid_steps, config.seed ^ 0x5EED);
    let train_loader = DataLoaderBuilder::<B, _, QkBatch<B>>::new(QkBatcher { passages: Arc::new(train) })
        .batch_size(1)
        .set_device(device.clone())
        .build(train_chunks);
    let valid_loader = DataLoaderBuilder::<B::InnerBackend, _, QkBatch<B::InnerBackend>>::new(QkBatcher {
        passages: Arc::new(valid),
    })
    .batch_size(1)
    .set_device(device.clone())
    .build(valid_chunks);
    let initial = match &config.init_mappings {
        Some(path) => {
            let (found, mappings) = HashMappingsConfig::load_from::<B>(path, device)?;
            if (found.layers, found.mapping.to_string()) != (layers, config.mapping.to_string()) {
                return Err(AttnError::Config(format!(
                    "the initial mappings {path} ({} layers, {}) differ from the ones to train ({layers} layers, {})",
                    found.layers, found.mapping, config.mapping
                )));
            }
            // Saved mappings take raw inputs: undo the centring that training applies.
            match &centring {
                Some(c) => c.unfold(mappings),
                None => mappings,
            }
        }
        None => mappings_config.init::<B>(device)?,
    };
    let trainee = HashTrainee {
        mappings: initial,
        labels: config.labels.clone(),
        alpha: config.alpha,
        beta: config.beta,
        bits: config.mapping.bits,
        centring: centring.clone(),
    };
    let k = config.labels.top_k;
    let mut training = SupervisedTraining::new(dir, train_loader, valid_loader)
        .metric_train_numeric(ScalarMetric::loss())
        .metric_valid_numeric(ScalarMetric::loss())
        .metric_train_numeric(ScalarMetric::recall(k))
        .metric_valid_numeric(ScalarMetric::recall(k))
        .with_file_checkpointer(DefaultRecorder::new())
        .with_application_logger(None)
        .renderer(LineRenderer::new(config.log_every))
        .num_epochs(config.epochs);
    if let Some(seconds) = config.time_limit_seconds {
        training = training.early_stopping(TimeLimit::new(Duration::from_secs_f64(seconds.max(0.0))));
    }
    if resume {
        if let Some(epoch) = last_checkpoint(dir) {
            training = training.checkpoint(epoch);
        }
    }
    let optimizer = AdamConfig::new().with_epsilon(1e-8).init();
    let result = training.launch(Learner::new(trainee, optimizer, config.learning_rate));
    let mappings = match &centring {
        Some(c) => c.fold(result.model.mappings),
        None => result.model.mappings,
    };
    mappings.save_dir(&mappings_config, dir.join("mappings"))?;
    // The same weights as one file that Python tools read (docs/hash-training.md).
    mappings.save_safetensors(&mappings_config, dir.join("mappings.safetensors"), StoredPrecision::F32)?;
    config
        .save(dir.join("training.json"))
        .map_err(|e| AttnError::File { path: dir.display().to_string(), message: e.to_string() })?;
    Ok(mappings)
}

/// The last epoch with a model checkpoint in `dir/checkpoint`.
pub fn last_checkpoint(dir: &Path) -> Option<usize> {
    std::fs::read_dir(dir.join("checkpoint"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("model-")?.strip_suffix(".mpk")?.parse().ok()
        })
        .max()
}

/// Where the trained mappings of a run in `dir` are.
pub fn mappings_dir(dir: &Path) -> PathBuf {
    dir.join("mappings")
}
