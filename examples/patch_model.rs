//! Patching a model: a small Burn transformer written without this crate, whose attention
//! is replaced by any of its methods in a few lines.
//!
//! `TinyTransformer` below is a user's own model: pre-norm blocks with hand-written causal
//! softmax attention. The patch swaps that hand-written attention for an `Attention` field
//! (the three marked lines in `Block`), after which the method is chosen by config and can
//! change per layer without retraining. The example checks that the patched model with
//! dense attention gives the original's output, then runs it with sparse methods.
//!
//! Run: `cargo run --release --example patch_model`

use burn::backend::NdArray;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{activation, backend::Backend, Int, Tensor};
use burn_sparse_attn::{
    Attention, AttentionConfig, AttentionMethod, AttnResult, DenseAttentionConfig, HeadLayout, KeyBudget,
    KvCache, MethodKind,
};

/// One block of the user's model.
#[derive(Module, Debug)]
struct Block<B: Backend> {
    norm: LayerNorm<B>,
    qkv: Linear<B>,
    out: Linear<B>,
    mlp_in: Linear<B>,
    mlp_out: Linear<B>,
    /// The patch, 1 of 3: the attention is a field, chosen by config.
    attention: Option<Attention<B>>,
    #[module(skip)]
    heads: usize,
}

impl<B: Backend> Block<B> {
    /// `x: [batch, len, d_model]` -> `[batch, len, d_model]`.
    fn forward(&self, x: Tensor<B, 3>, cache: &mut KvCache<B>) -> AttnResult<Tensor<B, 3>> {
        let [b, t, d] = x.dims();
        let hd = d / self.heads;
        let qkv = self.qkv.forward(self.norm.forward(x.clone()));
        let split =
            |i: usize| qkv.clone().narrow(2, i * d, d).reshape([b, t, self.heads, hd]).swap_dims(1, 2);
        let (q, k, v) = (split(0), split(1), split(2));
        let attended = match &self.attention {
            // The patch, 2 of 3: the method attends (with a KV cache for generation).
            Some(attention) => attention.forward_cached(q, k, v, cache)?.output,
            None => hand_written_attention(q, k, v),
        };
        let x = x + self.out.forward(attended.swap_dims(1, 2).reshape([b, t, d]));
        Ok(x.clone() + self.mlp_out.forward(activation::gelu(self.mlp_in.forward(x))))
    }
}

/// The user's original attention: causal softmax over every key, `[batch, heads, len, dim]`.
fn hand_written_attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, t, d] = q.dims();
    let scores = q.matmul(k.swap_dims(2, 3)) / (d as f64).sqrt();
    let future = Tensor::<B, 2, Int>::ones([t, t], &scores.device()).triu(1).bool().unsqueeze::<4>();
    activation::softmax(scores.mask_fill(future, f32::NEG_INFINITY), 3).matmul(v)
}

/// The user's model.
#[derive(Module, Debug)]
struct TinyTransformer<B: Backend> {
    embedding: Embedding<B>,
    blocks: Vec<Block<B>>,
    head: Linear<B>,
}

impl<B: Backend> TinyTransformer<B> {
    fn new(vocab: usize, d_model: usize, heads: usize, layers: usize, device: &B::Device) -> Self {
        let block = || Block {
            norm: LayerNormConfig::new(d_model).init(device),
            qkv: LinearConfig::new(d_model, 3 * d_model).init(device),
            out: LinearConfig::new(d_model, d_model).init(device),
            mlp_in: LinearConfig::new(d_model, 4 * d_model).init(device),
            mlp_out: LinearConfig::new(4 * d_model, d_model).init(device),
            attention: None,
            heads,
        };
        Self {
            embedding: EmbeddingConfig::new(vocab, d_model).init(device),
            blocks: (0..layers).map(|_| block()).collect(),
            head: LinearConfig::new(d_model, vocab).init(device),
        }
    }

    /// Logits `[batch, len, vocab]` of `tokens: [batch, len]`.
    fn forward(&self, tokens: Tensor<B, 2, Int>) -> AttnResult<Tensor<B, 3>> {
        let mut x = self.embedding.forward(tokens);
        for block in &self.blocks {
            x = block.forward(x, &mut KvCache::new())?;
        }
        Ok(self.head.forward(x))
    }

    /// The patch, 3 of 3: give every block but `keep_dense` the attention of `config`.
    fn patch(
        mut self,
        config: &AttentionConfig,
        keep_dense: &[usize],
        device: &B::Device,
    ) -> AttnResult<Self> {
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let dense = AttentionConfig::Dense(DenseAttentionConfig::new());
            block.attention = Some(if keep_dense.contains(&i) { &dense } else { config }.init(device)?);
        }
        Ok(self)
    }
}

fn main() -> AttnResult<()> {
    type B = NdArray<f32>;
    let device = Default::default();
    let (vocab, d_model, heads, layers, len) = (500, 128, 4, 4, 1024);
    let model = TinyTransformer::<B>::new(vocab, d_model, heads, layers, &device);
    let tokens =
        Tensor::<B, 1, Int>::arange(0..len as i64, &device).mul_scalar(7).remainder_scalar(vocab as i64);
    let tokens: Tensor<B, 2, Int> = tokens.unsqueeze();
    let original = model.forward(tokens.clone())?;

    let layout = HeadLayout { head_dim: d_model / heads, query_heads: heads, kv_heads: heads };
    let budget = KeyBudget::new(len, 8.0)?;
    println!(
        "{len} tokens; sparse methods attend to {} keys per query (1/8); block 0 stays dense",
        budget.total
    );
    println!("{:<14} {:>24}", "method", "max |logit - original|");
    for &method in MethodKind::ALL {
        // Random hash mappings here; a real model loads trained ones (README, HashAttention).
        let config = method.config_for_budget(&layout, &budget);
        let patched = model.clone().patch(&config, &[0], &device)?;
        let difference = (patched.forward(tokens.clone())? - original.clone()).abs().max().into_scalar();
        println!("{:<14} {:>24.6}", method.name(), difference);
        if method == MethodKind::Dense {
            assert!(difference < 1e-3, "dense attention must reproduce the hand-written model");
        }
    }
    Ok(())
}
