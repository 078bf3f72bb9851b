//! The decoder: RMSNorm, RoPE, grouped-query attention by any method, SwiGLU, tied
//! embeddings.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{activation::silu, backend::Backend, FloatDType, Int, Tensor, TensorData};
use std::ops::Range;
use std::path::{Path, PathBuf};

use burn_sparse_attn_core::{
    profile, Attention, AttentionConfig, AttentionMethod, HashMappings, HashMappingsConfig, KvCache,
};

use super::config::LlamaConfig;
use super::rope::RopeTable;
use crate::error::{ModelError, ModelResult};

/// Root-mean-square normalisation with a learned gain.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// `[d_model]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square.
    #[module(skip)]
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// `x: [.., d_model]`. The mean square is taken in f32 whatever `x`'s float type: in
    /// half precision the squares of large activations overflow.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = FloatDType::from(x.dtype());
        let wide = x.clone().cast(FloatDType::F32);
        let rms = wide.powf_scalar(2.0).mean_dim(D - 1).add_scalar(self.eps).sqrt().cast(dtype);
        let shape: [usize; D] = std::array::from_fn(|i| if i + 1 == D { self.weight.dims()[0] } else { 1 });
        x / rms * self.weight.val().reshape(shape)
    }
}

/// One decoder layer.
#[derive(Module, Debug)]
pub struct LlamaLayer<B: Backend> {
    /// Norm before attention.
    pub attn_norm: RmsNorm<B>,
    /// Query projection.
    pub q: Linear<B>,
    /// Key projection.
    pub k: Linear<B>,
    /// Value projection.
    pub v: Linear<B>,
    /// Output projection.
    pub o: Linear<B>,
    /// The attention method of this layer.
    pub attention: Attention<B>,
    /// Norm before the MLP.
    pub ffn_norm: RmsNorm<B>,
    /// SwiGLU gate.
    pub gate: Linear<B>,
    /// SwiGLU up projection.
    pub up: Linear<B>,
    /// SwiGLU down projection.
    pub down: Linear<B>,
}

/// A Llama-family decoder whose attention is chosen per layer.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// Token embeddings `[vocab, d_model]`, tied to the output.
    pub embedding: Param<Tensor<B, 2>>,
    /// The layers.
    pub layers: Vec<LlamaLayer<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// Sizes.
    #[module(skip)]
    pub config: LlamaConfig,
}

/// Which attention each layer gets: `dense_layers` dense, then the method of the last of
/// `layers` whose range holds the layer, else `default`. Methods deployed in part of a
/// model (HyperAttention in its last layers, HiP after its first) are plans with ranges.
#[derive(Debug, Clone)]
pub struct AttentionPlan {
    /// The method of the layers no range names.
    pub default: AttentionConfig,
    /// Layers kept dense (the first layers, often), whatever `layers` says.
    pub dense_layers: Vec<usize>,
    /// Methods for ranges of layers; a later range wins where two overlap.
    pub layers: Vec<LayerMethod>,
    /// Trained HashAttention mappings, one per layer (a `.safetensors` file or a folder
    /// written by `HashMappings::save_dir`); `None` gives HashAttention layers random
    /// mappings.
    pub hash_mappings: Option<PathBuf>,
}

/// A method for a range of layers of an [`AttentionPlan`].
#[derive(Debug, Clone)]
pub struct LayerMethod {
    /// The layers, `start..end`.
    pub range: Range<usize>,
    /// Their method.
    pub config: AttentionConfig,
}

impl AttentionPlan {
    /// Dense attention in every layer.
    pub fn dense() -> Self {
        Self::new(AttentionConfig::Dense(burn_sparse_attn_core::DenseAttentionConfig::new()), vec![])
    }

    /// `default` in every layer but `dense_layers`, with random hash mappings.
    pub fn new(default: AttentionConfig, dense_layers: Vec<usize>) -> Self {
        Self { default, dense_layers, layers: vec![], hash_mappings: None }
    }

    /// This plan with `config` in the layers of `range` (over earlier ranges).
    pub fn with_layers(mut self, range: Range<usize>, config: AttentionConfig) -> Self {
        self.layers.push(LayerMethod { range, config });
        self
    }

    /// Errors when a dense layer or a range is not within a model of `layers` layers.
    pub fn check(&self, layers: usize) -> ModelResult<()> {
        if let Some(l) = self.dense_layers.iter().find(|&&l| l >= layers) {
            return Err(ModelError::Config(format!("dense layer {l} is not among the {layers} layers")));
        }
        match self.layers.iter().find(|m| m.range.is_empty() || m.range.end > layers) {
            Some(m) => Err(ModelError::Config(format!(
                "layer range {:?} is empty or not within the {layers} layers",
                m.range
            ))),
            None => Ok(()),
        }
    }

    /// The config of layer `layer`.
    pub fn for_layer(&self, layer: usize) -> AttentionConfig {
        if self.dense_layers.contains(&layer) {
            return AttentionConfig::Dense(burn_sparse_attn_core::DenseAttentionConfig::new());
        }
        let ranged = self.layers.iter().rev().find(|m| m.range.contains(&layer));
        ranged.map_or(&self.default, |m| &m.config).clone()
    }
}

/// The inputs of one layer's attention: post-RoPE queries `[batch, heads, len, head_dim]`
/// and keys and values `[batch, kv_heads, len, head_dim]` of the new tokens.
#[derive(Debug, Clone)]
pub struct AttentionInputs<B: Backend> {
    /// Queries after RoPE.
    pub q: Tensor<B, 4>,
    /// Keys after RoPE.
    pub k: Tensor<B, 4>,
    /// Values.
    pub v: Tensor<B, 4>,
}

impl<B: Backend> LlamaLayer<B> {
    /// Queries, keys and values of `x: [batch, len, d_model]` at the positions of `rope`.
    fn attention_inputs(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTable<B>,
        config: &LlamaConfig,
    ) -> AttentionInputs<B> {
        let [b, t, _] = x.dims();
        let hd = config.head_dim();
        let heads = |y: Tensor<B, 3>, h: usize| y.reshape([b, t, h, hd]).swap_dims(1, 2);
        let h = self.attn_norm.forward(x);
        let q = rope.apply(heads(self.q.forward(h.clone()), config.heads));
        let k = rope.apply(heads(self.k.forward(h.clone()), config.kv_heads));
        let v = heads(self.v.forward(h), config.kv_heads);
        AttentionInputs { q, k, v }
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        cache: &mut KvCache<B>,
        rope: &RopeTable<B>,
        config: &LlamaConfig,
        probe: &mut dyn FnMut(&AttentionInputs<B>) -> ModelResult<()>,
    ) -> ModelResult<Tensor<B, 3>> {
        let [b, t, _] = x.dims();
        let device = x.device();
        let phase = phase_name(t);
        let inputs = profile::span::<B, _>(format_args!("{phase} q k v"), &device, || {
            self.attention_inputs(x.clone(), rope, config)
        });
        probe(&inputs)?;
        let AttentionInputs { q, k, v } = inputs;
        let attended = profile::span::<B, _>(format_args!("{phase} attention"), &device, || {
            self.attention.forward_cached(q, k, v, cache)
        })?
        .output;
        Ok(profile::span::<B, _>(format_args!("{phase} output and mlp"), &device, || {
            let x = x + self.o.forward(attended.swap_dims(1, 2).reshape([
                b,
                t,
                config.heads * config.head_dim(),
            ]));
            let h = self.ffn_norm.forward(x.clone());
            x.clone() + self.down.forward(silu(self.gate.forward(h.clone())) * self.up.forward(h))
        }))
    }
}

impl<B: Backend> Llama<B> {
    /// Logits `[batch, len, vocab]` of `tokens: [batch, len]`, appended to `caches` (one per
    /// layer; empty for a fresh sequence).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, caches: &mut [KvCache<B>]) -> ModelResult<Tensor<B, 3>> {
        let logits = self.logits(self.hidden(tokens, caches)?);
        if first_non_finite(vec![logits.clone().cast(FloatDType::F32).sum()]).is_some() {
            return Err(ModelError::NonFinite("the logits".into()));
        }
        Ok(logits)
    }

    /// Final hidden states `[batch, len, d_model]` (normalised) of `tokens: [batch, len]`.
    pub fn hidden(&self, tokens: Tensor<B, 2, Int>, caches: &mut [KvCache<B>]) -> ModelResult<Tensor<B, 3>> {
        self.hidden_probed(tokens, caches, |_, _| Ok(()))
    }

    /// [`Llama::hidden`], calling `probe(layer, inputs)` with each layer's attention inputs
    /// before that layer attends (to measure or capture them).
    pub fn hidden_probed(
        &self,
        tokens: Tensor<B, 2, Int>,
        caches: &mut [KvCache<B>],
        mut probe: impl FnMut(usize, &AttentionInputs<B>) -> ModelResult<()>,
    ) -> ModelResult<Tensor<B, 3>> {
        assert_eq!(caches.len(), self.layers.len(), "one cache per layer");
        let [b, t] = tokens.dims();
        let d = self.config.d_model;
        let mut x = self.embedding.val().select(0, tokens.reshape([b * t])).reshape([b, t, d]);
        let mut sums = Vec::with_capacity(self.layers.len());
        let device = x.device();
        let table =
            |offset| RopeTable::new(offset, t, self.config.head_dim(), self.config.rope_theta, &device);
        let mut rope = table(caches.first().map_or(0, KvCache::len));
        for (i, (layer, cache)) in self.layers.iter().zip(caches.iter_mut()).enumerate() {
            if cache.len() != rope.offset {
                rope = table(cache.len());
            }
            x = layer.forward(x, cache, &rope, &self.config, &mut |inputs| probe(i, inputs))?;
            sums.push(x.clone().cast(FloatDType::F32).sum());
        }
        // One read-back for all layers: NaN from bad weights or inputs stops the run here,
        // named by the first layer whose output holds it, instead of turning into a score.
        let non_finite =
            profile::span::<B, _>(format_args!("{} finite check", phase_name(t)), &device, || {
                first_non_finite(sums)
            });
        if let Some(layer) = non_finite {
            return Err(ModelError::NonFinite(format!("the hidden states after layer {layer}")));
        }
        Ok(self.norm.forward(x))
    }

    /// Logits `[batch, len, vocab]` of hidden states `[batch, len, d_model]` (tied embeddings).
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        // `embedding @ hidden^T`, transposed back: multiplying by a transposed embedding made
        // the CPU backend copy the whole embedding (113 MB for SmolLM2) on every call.
        let [b, t, d] = hidden.dims();
        let vocab = self.embedding.dims()[0];
        let logits = self.embedding.val().matmul(hidden.reshape([b * t, d]).transpose());
        logits.transpose().reshape([b, t, vocab])
    }

    /// Gives every layer the attention `plan` chooses for it (the weights stay), with the
    /// plan's trained hash mappings in HashAttention layers.
    pub fn set_attention(&mut self, plan: &AttentionPlan, device: &B::Device) -> ModelResult<()> {
        let attention = self.build_attention(plan, device)?;
        self.use_attention(attention);
        Ok(())
    }

    /// Each layer's attention under `plan`, built but not installed (see
    /// [`Llama::use_attention`]): switching between built plans costs no loading.
    pub fn build_attention(
        &self,
        plan: &AttentionPlan,
        device: &B::Device,
    ) -> ModelResult<Vec<Attention<B>>> {
        plan.check(self.layers.len())?;
        let trained = self.load_hash_mappings(plan.hash_mappings.as_deref(), device)?;
        (0..self.layers.len())
            .map(|i| layer_attention(&plan.for_layer(i), trained.as_ref(), i, device))
            .collect()
    }

    /// Installs `attention`, one per layer (from [`Llama::build_attention`]).
    ///
    /// # Panics
    /// When `attention` has not one entry per layer.
    pub fn use_attention(&mut self, attention: Vec<Attention<B>>) {
        assert_eq!(attention.len(), self.layers.len(), "one attention per layer");
        for (layer, attention) in self.layers.iter_mut().zip(attention) {
            layer.attention = attention;
        }
    }

    /// Trained hash mappings from `dir` (one per layer of this model; a `.safetensors` file
    /// or a folder of Burn records), if given.
    pub fn load_hash_mappings(
        &self,
        dir: Option<&Path>,
        device: &B::Device,
    ) -> ModelResult<Option<HashMappings<B>>> {
        let Some(dir) = dir else { return Ok(None) };
        let config = HashMappingsConfig::read_config_at(dir)?;
        let (m, c) = (&config.mapping, &self.config);
        let mismatch = if config.layers != c.layers {
            Some(format!("they are for {} layers, the model has {}", config.layers, c.layers))
        } else if m.head_dim != c.head_dim() {
            Some(format!("they are for head_dim {}, the model's is {}", m.head_dim, c.head_dim()))
        } else if m.query_heads != c.heads {
            Some(format!("they are for {} query heads, the model has {}", m.query_heads, c.heads))
        } else if m.key_heads != c.heads && m.key_heads != c.kv_heads {
            Some(format!(
                "they are for {} key heads, the model has {} heads and {} KV heads",
                m.key_heads, c.heads, c.kv_heads
            ))
        } else {
            None
        };
        if let Some(problem) = mismatch {
            return Err(ModelError::HashMappings { dir: dir.display().to_string(), problem });
        }
        Ok(Some(HashMappingsConfig::load_from::<B>(dir, device)?.1))
    }

    /// Empty caches, one per layer.
    pub fn new_caches(&self) -> Vec<KvCache<B>> {
        (0..self.layers.len()).map(|_| KvCache::new()).collect()
    }
}

/// The attention of layer `layer` for `config`: HashAttention gets that layer's `trained`
/// mappings when given, every method otherwise its own initialisation.
pub fn layer_attention<B: Backend>(
    config: &AttentionConfig,
    trained: Option<&HashMappings<B>>,
    layer: usize,
    device: &B::Device,
) -> ModelResult<Attention<B>> {
    Ok(match (config, trained) {
        (AttentionConfig::Hash(hash), Some(mappings)) => {
            Attention::Hash(hash.init_with(mappings.layers[layer].clone())?)
        }
        (config, _) => config.init(device)?,
    })
}

/// The profile's name of a pass over `len` new tokens per row (see
/// [`burn_sparse_attn_core::profile`]).
pub(crate) fn phase_name(len: usize) -> &'static str {
    if len > 1 {
        "prefill"
    } else {
        "decode"
    }
}

/// `tokens` as a batch of one, `[1, len]`, on `device`.
pub fn token_ids<B: Backend>(tokens: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(ids, [1, tokens.len()]), device)
}

/// `rows` of one length as a batch, `[rows, len]`, on `device`; errors when their lengths
/// differ.
pub fn token_batch<B: Backend>(rows: &[Vec<u32>], device: &B::Device) -> ModelResult<Tensor<B, 2, Int>> {
    let len = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || rows.iter().any(|r| r.len() != len) {
        return Err(ModelError::Generation(
            "a batch needs at least one prompt, every prompt of the same length".into(),
        ));
    }
    let ids: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
    Ok(Tensor::from_data(TensorData::new(ids, [rows.len(), len]), device))
}

/// The index of the first of `sums` (one-element f32 tensors, each the sum of a tensor)
/// that is NaN or infinite, read back from the device at once. A sum is not finite when
/// its tensor holds NaN or an infinity (an f32 sum of finite activations does not
/// overflow), and it costs one reduction where `is_finite().all()` takes nine launches.
fn first_non_finite<B: Backend>(sums: Vec<Tensor<B, 1>>) -> Option<usize> {
    if sums.is_empty() {
        return None;
    }
    Tensor::cat(sums, 0).into_data().iter::<f32>().position(|sum| !sum.is_finite())
}

/// A bias-free linear layer holding `weight: [d_input, d_output]`.
pub(crate) fn linear<B: Backend>(weight: Tensor<B, 2>) -> Linear<B> {
    let [d_input, d_output] = weight.dims();
    let mut layer = LinearConfig::new(d_input, d_output).with_bias(false).init(&weight.device());
    layer.weight = Param::from_tensor(weight);
    layer
}
