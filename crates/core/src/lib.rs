//! Core of burn-sparse-attn: sparse attention as generic Burn modules.
//!
//! Every method is two steps. **Select** ([`select`]) decides which keys each query
//! attends to, as an index set ([`KeySelection`]); **attend** ([`attend`]) runs attention
//! over exactly those keys and returns the output with its log-sum-exp, so that partial
//! results [`merge`] exactly. The methods ([`methods`]) compose the two behind one
//! interface, [`AttentionMethod`], with a [`KvCache`] for decoding.
//!
//! Tensors follow `[batch, heads, seq, head_dim]`. Keys and values may have fewer heads
//! than queries (grouped-query attention): query head `h` reads key/value head
//! `h / (query_heads / kv_heads)`.

pub mod attend;
pub mod cache;
pub mod error;
mod finite;
pub mod hash;
pub mod kernels;
pub mod methods;
pub mod positions;
pub mod profile;
pub mod quality;
pub mod rng;
pub mod select;
mod shape;
pub mod synthetic;

pub use attend::{dense_attention, gather_attention, merge, AttnOptions, AttnOutput, QueryPositions};
pub use cache::KvCache;
pub use error::{AttnError, AttnResult};
pub use finite::ensure_finite;
pub use hash::{HashActivation, HashMapping, HashMappingConfig, HashMappings, HashMappingsConfig};
pub use kernels::{kernel_path, kernels_active, KernelPath};
pub use methods::{
    hyper_attention_causal, Attention, AttentionConfig, AttentionMethod, DenseAttention,
    DenseAttentionConfig, HashAttention, HashAttentionConfig, HeadLayout, HipAttention, HipAttentionConfig,
    HyperAttention, HyperAttentionConfig, KeyBudget, MethodEntry, MethodKind, OracleTopKAttention,
    OracleTopKConfig, QuestAttention, QuestConfig, StreamingAttention, StreamingAttentionConfig,
};
pub use select::{KeySelection, SparseBudget};
pub use shape::AttnShape;
