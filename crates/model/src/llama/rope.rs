//! Rotary position embedding in GGML's "normal" layout: adjacent pairs `(2i, 2i + 1)` rotate
//! together (GGUF conversion permutes Llama's query and key weights to this layout).

use burn::tensor::{backend::Backend, Tensor, TensorData};

/// Applies RoPE to `x: [batch, heads, len, head_dim]` at positions `offset..offset + len`.
pub fn apply_rope<B: Backend>(x: Tensor<B, 4>, offset: usize, theta: f64) -> Tensor<B, 4> {
    let [_, _, t, d] = x.dims();
    RopeTable::new(offset, t, d, theta, &x.device()).apply(x)
}

/// The cosines and sines of positions `offset..offset + len`, built once per forward pass
/// and shared by every layer's queries and keys (building them costs host work and an
/// upload per call).
#[derive(Debug, Clone)]
pub struct RopeTable<B: Backend> {
    /// First position.
    pub offset: usize,
    /// `[1, 1, len, head_dim / 2, 1]`.
    cos: Tensor<B, 5>,
    /// `[1, 1, len, head_dim / 2, 1]`.
    sin: Tensor<B, 5>,
}

impl<B: Backend> RopeTable<B> {
    /// The table of positions `offset..offset + len` for heads of `head_dim`.
    pub fn new(offset: usize, len: usize, head_dim: usize, theta: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in offset..offset + len {
            for i in 0..half {
                let angle = p as f64 * theta.powf(-2.0 * i as f64 / head_dim as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let table = |v: Vec<f32>| Tensor::<B, 5>::from_data(TensorData::new(v, [1, 1, len, half, 1]), device);
        Self { offset, cos: table(cos), sin: table(sin) }
    }

    /// Rotates `x: [batch, heads, len, head_dim]`, `len` and `head_dim` those of the table.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, t, d] = x.dims();
        let pairs = x.reshape([b, h, t, d / 2, 2]);
        let even = pairs.clone().narrow(4, 0, 1);
        let odd = pairs.narrow(4, 1, 1);
        let (cos, sin) = (self.cos.clone(), self.sin.clone());
        let rotated_even = even.clone() * cos.clone() - odd.clone() * sin.clone();
        let rotated_odd = even * sin + odd * cos;
        Tensor::cat(vec![rotated_even, rotated_odd], 4).reshape([b, h, t, d])
    }
}
