//! Quickstart: a causal self-attention block whose attention is chosen by config, run with
//! every method on the same input (prefill, then token-by-token decode), compared with dense.
//!
//! Run: `cargo run --release --example quickstart` (ndarray backend, CPU).

use std::time::Instant;

use burn::backend::NdArray;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{backend::Backend, Distribution, Tensor};
use burn_sparse_attn::{
    Attention, AttentionConfig, AttentionMethod, AttnResult, DenseAttentionConfig, HashAttentionConfig,
    HashMappingConfig, KvCache, OracleTopKConfig, StreamingAttentionConfig,
};

/// A grouped-query self-attention block: projections around a pluggable attention method.
#[derive(Module, Debug)]
struct SelfAttentionBlock<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    out: Linear<B>,
    attention: Attention<B>,
    #[module(skip)]
    heads: [usize; 3], // query heads, kv heads, head dim
}

impl<B: Backend> SelfAttentionBlock<B> {
    fn new(
        d_model: usize,
        query_heads: usize,
        kv_heads: usize,
        attention: &AttentionConfig,
        device: &B::Device,
    ) -> Self {
        let head_dim = d_model / query_heads;
        Self {
            query: LinearConfig::new(d_model, query_heads * head_dim).init(device),
            key: LinearConfig::new(d_model, kv_heads * head_dim).init(device),
            value: LinearConfig::new(d_model, kv_heads * head_dim).init(device),
            out: LinearConfig::new(query_heads * head_dim, d_model).init(device),
            attention: attention.init(device).expect("valid attention config"),
            heads: [query_heads, kv_heads, head_dim],
        }
    }

    /// `x: [batch, new_tokens, d_model]` -> `[batch, new_tokens, d_model]`, appending to `cache`.
    fn forward(&self, x: Tensor<B, 3>, cache: &mut KvCache<B>) -> AttnResult<Tensor<B, 3>> {
        let [batch, len, _] = x.dims();
        let [qh, kvh, d] = self.heads;
        let split = |t: Tensor<B, 3>, h: usize| t.reshape([batch, len, h, d]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()), qh);
        let k = split(self.key.forward(x.clone()), kvh);
        let v = split(self.value.forward(x), kvh);
        let out = self.attention.forward_cached(q, k, v, cache)?.output;
        Ok(self.out.forward(out.swap_dims(1, 2).reshape([batch, len, qh * d])))
    }
}

/// `len` tokens `[1, len, d_model]`, each a random one of `clusters` centres plus noise.
fn clustered_tokens<B: Backend>(
    len: usize,
    d_model: usize,
    clusters: usize,
    device: &B::Device,
) -> Tensor<B, 3> {
    let centres = Tensor::<B, 2>::random([clusters, d_model], Distribution::Normal(0.0, 1.0), device);
    let choice = Tensor::<B, 1>::random([len], Distribution::Uniform(0.0, clusters as f64), device).int();
    let noise = Tensor::<B, 2>::random([len, d_model], Distribution::Normal(0.0, 0.3), device);
    (centres.select(0, choice) + noise).unsqueeze_dim(0)
}

fn main() -> AttnResult<()> {
    type B = NdArray<f32>;
    let device = Default::default();
    let (d_model, query_heads, kv_heads, prompt, decode_steps) = (256, 8, 2, 2048, 16);
    let head_dim = d_model / query_heads;
    let methods = [
        AttentionConfig::Dense(DenseAttentionConfig::new()),
        AttentionConfig::Streaming(StreamingAttentionConfig::new().with_sink(16).with_window(240)),
        AttentionConfig::OracleTopK(OracleTopKConfig::new().with_sink(16).with_window(64).with_heavy(176.0)),
        AttentionConfig::Hash(
            HashAttentionConfig::new(HashMappingConfig::new(head_dim, query_heads, kv_heads))
                .with_sink(16)
                .with_window(64)
                .with_heavy(176.0),
        ),
    ];
    B::seed(&device, 0);
    let x = clustered_tokens::<B>(prompt + decode_steps, d_model, 64, &device);
    // One block; only its attention method changes between runs.
    let mut block = SelfAttentionBlock::<B>::new(d_model, query_heads, kv_heads, &methods[0], &device);
    // Trained models attend sharply; random projections do not. Give every head of a GQA
    // group the projection of the group's first head and tie the key projection to it, at a
    // higher temperature, so that a token attends mostly to tokens of its own cluster.
    let group_first = |w: Tensor<B, 2>| {
        let w = w.reshape([d_model, kv_heads, query_heads / kv_heads, head_dim]);
        w.narrow(2, 0, 1).reshape([d_model, kv_heads * head_dim])
    };
    let group_first_query = group_first(block.query.weight.val());
    let groups = query_heads / kv_heads;
    block.query.weight = block.query.weight.clone().map(|_| {
        group_first_query
            .clone()
            .reshape([d_model, kv_heads, 1, head_dim])
            .repeat_dim(2, groups)
            .reshape([d_model, d_model])
    });
    block.key.weight = block.key.weight.clone().map(|_| group_first_query.clone().mul_scalar(3.0));

    println!(
        "prompt {prompt} tokens, {decode_steps} decode steps, budget 256 keys per query (1/8 of the prompt)"
    );
    println!("note: the hash method uses untrained random mappings here; train them for real use\n");
    println!("{:<14} {:>12} {:>12} {:>22}", "method", "prefill ms", "decode ms", "rel. error vs dense");
    let mut reference: Option<Tensor<B, 3>> = None;
    for config in &methods {
        // Swap the attention in place: a clone of a module whose parameters were never read
        // would initialise them afresh (Burn initialises parameters lazily).
        block.attention = config.init(&device)?;
        let mut cache = KvCache::new();
        let start = Instant::now();
        let mut outputs = vec![block.forward(x.clone().narrow(1, 0, prompt), &mut cache)?];
        let prefill_ms = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        for step in 0..decode_steps {
            outputs.push(block.forward(x.clone().narrow(1, prompt + step, 1), &mut cache)?);
        }
        let decode_ms = start.elapsed().as_secs_f64() * 1e3 / decode_steps as f64;
        let y = Tensor::cat(outputs, 1);
        let error = match &reference {
            None => {
                reference = Some(y);
                0.0
            }
            Some(r) => {
                let diff = (y - r.clone()).powf_scalar(2.0).sum().into_scalar().elem::<f64>();
                let norm = r.clone().powf_scalar(2.0).sum().into_scalar().elem::<f64>();
                (diff / norm).sqrt()
            }
        };
        println!("{:<14} {:>12.1} {:>12.2} {:>22.4}", block.attention.name(), prefill_ms, decode_ms, error);
    }
    Ok(())
}

use burn::tensor::ElementConversion;
