//! Attend: exact attention over all keys or over selected keys, with log-sum-exp output.

pub(crate) mod chunks;
mod dense;
mod gather;
mod merge;
mod options;
mod output;
pub(crate) mod softmax;

pub use crate::positions::QueryPositions;
pub(crate) use chunks::{
    causal_query_chunks, query_chunks, query_chunks_within, CausalChunk, MAX_GPU_CHUNK_ELEMENTS,
};
pub use dense::dense_attention;
pub use gather::gather_attention;
pub(crate) use gather::gather_attention_unchecked;
pub use merge::merge;
pub use options::AttnOptions;
pub use output::AttnOutput;
