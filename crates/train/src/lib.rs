//! Learning HashAttention's hash mappings with burn-train.
//!
//! 1. [`capture`]: post-RoPE queries and keys of every layer of a frozen model running on
//!    real text (or synthetic planted clusters), kept per token, never per pair.
//! 2. [`labels`]: each query's true top-k keys by `q.k / sqrt(d)`, outside sink and window.
//! 3. [`objective`]: the relaxed score `tanh(phi_q) . tanh(phi_k)` through a sigmoid,
//!    class-weighted binary cross-entropy, and recall@k of the hard signatures.
//! 4. [`data`] streams query chunks against all their keys; [`trainer`] runs burn-train's
//!    learner (loss and recall metrics, checkpoints, resume) over `HashMappings` for every
//!    layer; [`evaluate`] measures recall at given sparsities against random mappings.
//! 5. Options: [`centring`] standardises inputs with fixed key statistics (folded into the
//!    saved mappings); [`time_limit`] ends a run at an epoch boundary before a deadline, so
//!    that long training spans several runs with `resume`.

pub mod capture;
pub mod centring;
pub mod data;
pub mod evaluate;
pub mod labels;
pub mod metrics;
pub mod objective;
pub mod renderer;
pub mod step;
pub mod time_limit;
pub mod trainer;

pub use burn_sparse_attn_core::{HashMappings, HashMappingsConfig};
pub use capture::{capture_qk, planted_clusters, CapturedQk};
pub use trainer::{train_hash_mappings, HashTrainingConfig};
