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
pub mod select;
mod shape;
pub mod synthetic;

pub use attend::{dense_attention, gather_attention, merge, AttnOptions, AttnOutput, QueryPositions};
pub use cache::{CachedMask, KvCache};
pub use error::{AttnError, AttnResult};
pub use finite::ensure_finite;
pub use hash::{HashActivation, HashMapping, HashMappingConfig, HashMappings, HashMappingsConfig};
pub use kernels::kernels_active;
pub use methods::{
    Attention, AttentionConfig, AttentionMethod, DenseAttention, DenseAttentionConfig, HashAttention,
    HashAttentionConfig, HipAttention, HipAttentionConfig, HyperAttention, HyperAttentionConfig,
    OracleTopKAttention, OracleTopKConfig, StreamingAttention, StreamingAttentionConfig,
};
pub use select::{KeySelection, SparseBudget};
pub use shape::AttnShape;
