//! CubeCL kernels of burn-sparse-attn, one source for CUDA and wgpu.
//!
//! Each module holds a kernel body and its launch function; the launch functions take and
//! return [`CubeTensor`](burn_cubecl::tensor::CubeTensor)s. `burn-sparse-attn-core` calls
//! them when the tensors live on a CubeCL backend and runs its reference path (plain Burn
//! tensor ops, the ground truth of the tests) on every other backend.
//!
//! Kernels:
//! - HashAttention's signatures: the query/key MLP and the sign packing fused for decoding
//!   ([`hash_signatures`]), or the packing alone ([`pack_signs`]);
//! - top-k without a sort: radix select over float scores ([`top_k`]), and a histogram of
//!   signature match counts spread over many cubes per row ([`match_top_k`]);
//! - attention over per-query key lists with a log-sum-exp output, split over the keys like
//!   flash-decoding ([`sparse_attention`]);
//! - causal attention of tiles of queries over a shared list of sink, window and chosen key
//!   blocks, for prefill, dense or block-sparse ([`block_attention`]);
//! - a stable counting sort of small keys ([`counting_sort_order`], HyperAttention's LSH
//!   buckets) and HiP's fused child scoring ([`child_scores`]).
//!
//! The attention kernels share their online softmax and outputs ([`softmax`]); each kernel
//! with size limits says which sizes it runs (`supports`). [`launches`] counts launches.

pub mod block_attention;
pub mod child_scores;
pub mod counting_sort;
pub mod grid;
pub mod hash_signatures;
mod key_lists;
pub mod launches;
pub mod match_top_k;
pub mod mma_attention;
pub mod pack_signs;
pub mod softmax;
pub mod sparse_attention;
pub mod tensor_core_attention;
pub mod tensor_core_child_scores;
pub mod top_k;
pub mod vectors;

pub use block_attention::{block_attention, BlockKeys};
pub use child_scores::child_scores;
pub use counting_sort::counting_sort_order;
pub use hash_signatures::hash_signatures;
pub use launches::launches;
pub use match_top_k::match_top_k;
pub use pack_signs::pack_signs;
pub use softmax::SparseAttentionOutput;
pub use sparse_attention::{sparse_attention, KeyList};
pub use top_k::top_k;

pub use burn_cubecl;
pub use cubecl;
