//! One attention method chosen by config, for models that hold "some attention".

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use super::dense::{DenseAttention, DenseAttentionConfig};
use super::hash_attention::{HashAttention, HashAttentionConfig};
use super::hip::{HipAttention, HipAttentionConfig};
use super::hyper::{HyperAttention, HyperAttentionConfig};
use super::method::AttentionMethod;
use super::oracle_top_k::{OracleTopKAttention, OracleTopKConfig};
use super::streaming::{StreamingAttention, StreamingAttentionConfig};
use crate::attend::AttnOutput;
use crate::cache::KvCache;
use crate::error::AttnResult;

/// Which attention method to build, with its options.
#[derive(Config, Debug)]
pub enum AttentionConfig {
    /// Exact attention.
    Dense(DenseAttentionConfig),
    /// Sink + sliding window.
    Streaming(StreamingAttentionConfig),
    /// Sink + window + top-k by exact score.
    OracleTopK(OracleTopKConfig),
    /// Sink + window + top-k by learned bit signatures.
    Hash(HashAttentionConfig),
    /// Hierarchically pruned top-k key blocks + sink + window.
    Hip(HipAttentionConfig),
    /// LSH-sorted blocks + sampled columns.
    Hyper(HyperAttentionConfig),
}

/// Any attention method of this crate; every variant answers the same
/// [`AttentionMethod`] calls.
#[derive(Module, Debug)]
pub enum Attention<B: Backend> {
    /// Exact attention.
    Dense(DenseAttention),
    /// Sink + sliding window.
    Streaming(StreamingAttention),
    /// Top-k by exact score.
    OracleTopK(OracleTopKAttention),
    /// Top-k by learned bit signatures.
    Hash(HashAttention<B>),
    /// Hierarchically pruned top-k key blocks.
    Hip(HipAttention),
    /// LSH-sorted blocks + sampled columns.
    Hyper(HyperAttention<B>),
}

impl AttentionConfig {
    /// Builds the chosen method.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AttnResult<Attention<B>> {
        Ok(match self {
            Self::Dense(c) => Attention::Dense(c.init::<B>(device)),
            Self::Streaming(c) => Attention::Streaming(c.init::<B>(device)?),
            Self::OracleTopK(c) => Attention::OracleTopK(c.init::<B>(device)?),
            Self::Hash(c) => Attention::Hash(c.init(device)?),
            Self::Hip(c) => Attention::Hip(c.init::<B>(device)?),
            Self::Hyper(c) => Attention::Hyper(c.init(device)?),
        })
    }
}

impl<B: Backend> Attention<B> {
    /// Short name of the method, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Dense(_) => "dense",
            Self::Streaming(_) => "streaming",
            Self::OracleTopK(_) => "oracle-top-k",
            Self::Hash(_) => "hash",
            Self::Hip(_) => "hip",
            Self::Hyper(_) => "hyper",
        }
    }
}

impl<B: Backend> AttentionMethod<B> for Attention<B> {
    fn forward_cached(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> AttnResult<AttnOutput<B>> {
        match self {
            Self::Dense(m) => m.forward_cached(q, k, v, cache),
            Self::Streaming(m) => m.forward_cached(q, k, v, cache),
            Self::OracleTopK(m) => m.forward_cached(q, k, v, cache),
            Self::Hash(m) => m.forward_cached(q, k, v, cache),
            Self::Hip(m) => m.forward_cached(q, k, v, cache),
            Self::Hyper(m) => m.forward_cached(q, k, v, cache),
        }
    }
}
