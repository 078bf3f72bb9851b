//! Queries and keys of every layer, captured per token from a frozen model (or made
//! synthetically), from which training batches are cut on demand.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use burn_sparse_attn_core::rng::SplitMix64;
use burn_sparse_attn_model::{AttentionPlan, Llama, ModelResult};

/// One layer's post-RoPE queries `[heads, len, head_dim]` and keys `[kv_heads, len, head_dim]`,
/// row-major.
#[derive(Debug, Clone)]
pub struct LayerQk {
    /// Queries.
    pub q: Vec<f32>,
    /// Keys.
    pub k: Vec<f32>,
}

/// Queries and keys of every layer for one passage of `len` tokens.
#[derive(Debug, Clone)]
pub struct CapturedQk {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Dimension per head.
    pub head_dim: usize,
    /// Tokens.
    pub len: usize,
    /// Per layer.
    pub layers: Vec<LayerQk>,
}

impl CapturedQk {
    /// Queries `[1, heads, count, head_dim]` of `layer` at positions `start..start + count`.
    pub fn queries<B: Backend>(
        &self,
        layer: usize,
        start: usize,
        count: usize,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        self.rows(&self.layers[layer].q, self.heads, start, count, device)
    }

    /// Keys `[1, kv_heads, end, head_dim]` of `layer` at positions `0..end`.
    pub fn keys<B: Backend>(&self, layer: usize, end: usize, device: &B::Device) -> Tensor<B, 4> {
        self.rows(&self.layers[layer].k, self.kv_heads, 0, end, device)
    }

    fn rows<B: Backend>(
        &self,
        data: &[f32],
        heads: usize,
        start: usize,
        count: usize,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        assert!(start + count <= self.len, "rows {start}..{} of {} tokens", start + count, self.len);
        let d = self.head_dim;
        let mut out = Vec::with_capacity(heads * count * d);
        for h in 0..heads {
            let from = (h * self.len + start) * d;
            out.extend_from_slice(&data[from..from + count * d]);
        }
        Tensor::from_data(TensorData::new(out, [1, heads, count, d]), device)
    }
}

/// Runs `tokens` through `model` with dense attention in every layer (the model's own
/// attention is restored after) and keeps each layer's post-RoPE queries and keys.
pub fn capture_qk<B: Backend>(
    model: &mut Llama<B>,
    tokens: &[u32],
    device: &B::Device,
) -> ModelResult<CapturedQk> {
    let saved: Vec<_> = model.layers.iter().map(|l| l.attention.clone()).collect();
    model.set_attention(&AttentionPlan::dense(), device)?;
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), device);
    let mut layers = Vec::with_capacity(model.layers.len());
    let result = model.hidden_probed(input, &mut model.new_caches(), |_, inputs| {
        let host = |t: &Tensor<B, 4>| t.to_data().convert::<f32>().to_vec::<f32>().expect("f32 data");
        layers.push(LayerQk { q: host(&inputs.q), k: host(&inputs.k) });
        Ok(())
    });
    for (layer, attention) in model.layers.iter_mut().zip(saved) {
        layer.attention = attention;
    }
    result?;
    let config = &model.config;
    Ok(CapturedQk {
        heads: config.heads,
        kv_heads: config.kv_heads,
        head_dim: config.head_dim(),
        len: tokens.len(),
        layers,
    })
}

/// A synthetic problem with a known answer: every query and key belongs to one of
/// `clusters` random directions (plus Gaussian `noise`), so a query's top keys are keys of
/// its own cluster. One layer.
pub fn planted_clusters(
    clusters: usize,
    len: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    noise: f32,
    seed: u64,
) -> CapturedQk {
    let mut rng = SplitMix64::new(seed);
    let centers: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            let v: Vec<f32> = (0..head_dim).map(|_| rng.normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm * 3.0).collect()
        })
        .collect();
    let mut sample = |rows: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * head_dim);
        for _ in 0..rows {
            let c = &centers[rng.below(clusters)];
            out.extend(c.iter().map(|x| x + noise * rng.normal()));
        }
        out
    };
    let q = sample(heads * len);
    let k = sample(kv_heads * len);
    CapturedQk { heads, kv_heads, head_dim, len, layers: vec![LayerQk { q, k }] }
}
