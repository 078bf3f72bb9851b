//! Rotary position embedding in GGML's "normal" layout: adjacent pairs `(2i, 2i + 1)` rotate
//! together (GGUF conversion permutes Llama's query and key weights to this layout).

use burn::tensor::{backend::Backend, Tensor, TensorData};

/// Applies RoPE to `x: [batch, heads, len, head_dim]` at positions `offset..offset + len`.
pub fn apply_rope<B: Backend>(x: Tensor<B, 4>, offset: usize, theta: f64) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    let half = d / 2;
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for p in offset..offset + t {
        for i in 0..half {
            let angle = p as f64 * theta.powf(-2.0 * i as f64 / d as f64);
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let device = x.device();
    let table = |v: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(v, [1, 1, t, half]), &device);
    let (cos, sin) = (table(cos).reshape([1, 1, t, half, 1]), table(sin).reshape([1, 1, t, half, 1]));
    let pairs = x.reshape([b, h, t, half, 2]);
    let even = pairs.clone().narrow(4, 0, 1);
    let odd = pairs.narrow(4, 1, 1);
    let rotated_even = even.clone() * cos.clone() - odd.clone() * sin.clone();
    let rotated_odd = even * sin + odd * cos;
    Tensor::cat(vec![rotated_even, rotated_odd], 4).reshape([b, h, t, d])
}
