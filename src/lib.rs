pub use burn_sparse_attn_core::*;
