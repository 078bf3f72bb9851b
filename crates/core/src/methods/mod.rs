//! Attention methods as Burn modules: select, then attend.
//!
//! [`registry`] lists them; each has its own file (config, module, registry entry).

mod budget;
mod dense;
mod hash_attention;
mod hip;
mod hyper;
mod method;
mod oracle_top_k;
mod quest;
mod registry;
mod sparse;
mod streaming;

pub use budget::{HeadLayout, KeyBudget};
pub use dense::{DenseAttention, DenseAttentionConfig};
pub use hash_attention::{HashAttention, HashAttentionConfig, KeySignatures};
pub use hip::{CachedMask, HipAttention, HipAttentionConfig};
pub use hyper::{
    hyper_attention_causal, hyper_attention_non_causal, HyperAttention, HyperAttentionConfig, HyperParams,
};
pub use method::AttentionMethod;
pub use oracle_top_k::{OracleTopKAttention, OracleTopKConfig};
pub use quest::{PageBounds, QuestAttention, QuestConfig};
pub use registry::{Attention, AttentionConfig, MethodEntry, MethodKind};
pub use streaming::{StreamingAttention, StreamingAttentionConfig};
