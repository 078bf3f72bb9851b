//! Attention methods as Burn modules: select, then attend.

mod choice;
mod dense;
mod hash_attention;
mod hip;
mod hyper;
mod method;
mod oracle_top_k;
mod sparse;
mod streaming;

pub use choice::{Attention, AttentionConfig};
pub use dense::{DenseAttention, DenseAttentionConfig};
pub use hash_attention::{HashAttention, HashAttentionConfig};
pub use hip::{HipAttention, HipAttentionConfig};
pub use hyper::{HyperAttention, HyperAttentionConfig};
pub use method::AttentionMethod;
pub use oracle_top_k::{OracleTopKAttention, OracleTopKConfig};
pub use streaming::{StreamingAttention, StreamingAttentionConfig};
