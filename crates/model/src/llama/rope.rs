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
/// upload per call), laid out per element so that a rotation is four operations.
#[derive(Debug, Clone)]
pub struct RopeTable<B: Backend> {
    /// First position.
    pub offset: usize,
    /// `[1, 1, len, head_dim]`: `cos` of each pair's angle, on both of its elements.
    cos: Tensor<B, 4>,
    /// `[1, 1, len, head_dim]`: `-sin` on a pair's even element, `sin` on its odd one.
    sin: Tensor<B, 4>,
}

impl<B: Backend> RopeTable<B> {
    /// The table of positions `offset..offset + len` for heads of `head_dim`.
    pub fn new(offset: usize, len: usize, head_dim: usize, theta: f64, device: &B::Device) -> Self {
        let mut cos = Vec::with_capacity(len * head_dim);
        let mut sin = Vec::with_capacity(len * head_dim);
        for p in offset..offset + len {
            for i in 0..head_dim / 2 {
                let angle = p as f64 * theta.powf(-2.0 * i as f64 / head_dim as f64);
                let (c, s) = (angle.cos() as f32, angle.sin() as f32);
                cos.extend([c, c]);
                sin.extend([-s, s]);
            }
        }
        let table =
            |v: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(v, [1, 1, len, head_dim]), device);
        Self { offset, cos: table(cos), sin: table(sin) }
    }

    /// Rotates `x: [batch, heads, len, head_dim]`, `len` and `head_dim` those of the table:
    /// `(even, odd)` becomes `(even cos - odd sin, odd cos + even sin)`, as `x cos + swap(x)
    /// sin` with each pair's elements swapped.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, t, d] = x.dims();
        let swapped = x.clone().reshape([b, h, t, d / 2, 2]).flip([4]).reshape([b, h, t, d]);
        x * self.cos.clone() + swapped * self.sin.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    /// The rotation of each pair, element by element on the host.
    fn rotated_on_host(x: &[f32], [b, h, t, d]: [usize; 4], offset: usize, theta: f64) -> Vec<f32> {
        let mut out = x.to_vec();
        for row in 0..b * h * t {
            let p = (offset + row % t) as f64;
            for i in 0..d / 2 {
                let angle = p * theta.powf(-2.0 * i as f64 / d as f64);
                let (c, s) = (angle.cos() as f32, angle.sin() as f32);
                let (even, odd) = (x[row * d + 2 * i], x[row * d + 2 * i + 1]);
                out[row * d + 2 * i] = even * c - odd * s;
                out[row * d + 2 * i + 1] = even * s + odd * c;
            }
        }
        out
    }

    #[test]
    fn rotates_each_pair_by_its_positions_angle() {
        let shape = [2, 3, 5, 6];
        let x: Vec<f32> = (0..shape.iter().product()).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let device = Default::default();
        for offset in [0, 3, 1000] {
            let input = Tensor::<NdArray<f32>, 4>::from_data(TensorData::new(x.clone(), shape), &device);
            let got = apply_rope(input, offset, 10_000.0).into_data().to_vec::<f32>().unwrap();
            assert_eq!(got, rotated_on_host(&x, shape, offset, 10_000.0), "offset {offset}");
        }
    }
}
