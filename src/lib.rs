#![doc = include_str!("../README.md")]

pub use burn_sparse_attn_core::*;
