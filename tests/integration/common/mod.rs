//! Shared helpers of the integration tests: seeded inputs built on the host (independent of
//! the backend's global RNG), comparisons, and a naive attention written with loops.
#![allow(dead_code)]

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};

pub type B = NdArray<f32>;

pub fn device() -> <B as burn::tensor::backend::BackendTypes>::Device {
    Default::default()
}

#[allow(unused_imports)]
pub use burn_sparse_attn::rng::SplitMix64 as Rng;

pub fn randn_vec(len: usize, seed: u64) -> Vec<f32> {
    burn_sparse_attn::synthetic::normal_values(len, seed)
}

/// A `[d0, d1, d2, d3]` tensor of standard normal values.
pub fn randn(shape: [usize; 4], seed: u64) -> Tensor<B, 4> {
    tensor(randn_vec(shape.iter().product(), seed), shape)
}

pub fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(values, shape), &device())
}

pub fn int_tensor(values: Vec<i64>, shape: [usize; 4]) -> Tensor<B, 4, Int> {
    Tensor::from_data(TensorData::new(values, shape), &device())
}

pub fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

pub fn to_ints<const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec().unwrap()
}

pub fn to_bools<const D: usize>(t: Tensor<B, D, burn::tensor::Bool>) -> Vec<bool> {
    t.into_data().to_vec().unwrap()
}

pub fn max_abs_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    let (a, b) = (to_vec(a), to_vec(b));
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// ||a - b|| / ||b||.
pub fn rel_error<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    let (a, b) = (to_vec(a), to_vec(b));
    let num: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f32 = b.iter().map(|y| y.powi(2)).sum();
    (num / den).sqrt()
}

/// Sizes of an attention call.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub batch: usize,
    pub query_heads: usize,
    pub kv_heads: usize,
    pub query_len: usize,
    pub kv_len: usize,
    pub head_dim: usize,
    pub value_dim: usize,
}

impl Dims {
    pub fn q(&self) -> [usize; 4] {
        [self.batch, self.query_heads, self.query_len, self.head_dim]
    }
    pub fn k(&self) -> [usize; 4] {
        [self.batch, self.kv_heads, self.kv_len, self.head_dim]
    }
    pub fn v(&self) -> [usize; 4] {
        [self.batch, self.kv_heads, self.kv_len, self.value_dim]
    }
    /// Random q, k, v.
    pub fn qkv(&self, seed: u64) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        (randn(self.q(), seed), randn(self.k(), seed + 1), randn(self.v(), seed + 2))
    }
}

/// Attention written with loops over host vectors: output `[b, hq, tq, dv]`, lse `[b, hq, tq]`.
/// `visible(i, j)` says whether query `i` sees key `j`.
pub fn naive_attention(
    dims: &Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scale: f32,
    visible: impl Fn(usize, usize) -> bool,
) -> (Vec<f32>, Vec<f32>) {
    let Dims { batch, query_heads, kv_heads, query_len, kv_len, head_dim, value_dim } = *dims;
    let groups = query_heads / kv_heads;
    let mut out = vec![0.0f32; batch * query_heads * query_len * value_dim];
    let mut lse = vec![f32::NEG_INFINITY; batch * query_heads * query_len];
    for b in 0..batch {
        for h in 0..query_heads {
            let kh = h / groups;
            for i in 0..query_len {
                let qi = &q[((b * query_heads + h) * query_len + i) * head_dim..][..head_dim];
                let logits: Vec<Option<f64>> = (0..kv_len)
                    .map(|j| {
                        visible(i, j).then(|| {
                            let kj = &k[((b * kv_heads + kh) * kv_len + j) * head_dim..][..head_dim];
                            qi.iter().zip(kj).map(|(x, y)| (*x as f64) * (*y as f64)).sum::<f64>()
                                * scale as f64
                        })
                    })
                    .collect();
                let max = logits.iter().flatten().cloned().fold(f64::NEG_INFINITY, f64::max);
                if max == f64::NEG_INFINITY {
                    continue;
                }
                let sum: f64 = logits.iter().flatten().map(|l| (l - max).exp()).sum();
                let row = (b * query_heads + h) * query_len + i;
                lse[row] = (max + sum.ln()) as f32;
                for (j, l) in logits.iter().enumerate() {
                    if let Some(l) = l {
                        let p = (l - max).exp() / sum;
                        let vj = &v[((b * kv_heads + kh) * kv_len + j) * value_dim..][..value_dim];
                        for (o, x) in out[row * value_dim..][..value_dim].iter_mut().zip(vj) {
                            *o += (p * *x as f64) as f32;
                        }
                    }
                }
            }
        }
    }
    (out, lse)
}

/// The sizes the tests sweep: odd lengths, GQA ratios 1, 3 and 4, decode and prefill.
pub fn odd_dims() -> Vec<Dims> {
    vec![
        Dims { batch: 1, query_heads: 2, kv_heads: 2, query_len: 13, kv_len: 13, head_dim: 8, value_dim: 8 },
        Dims { batch: 2, query_heads: 3, kv_heads: 1, query_len: 7, kv_len: 19, head_dim: 5, value_dim: 6 },
        Dims { batch: 1, query_heads: 4, kv_heads: 1, query_len: 1, kv_len: 37, head_dim: 16, value_dim: 16 },
        Dims {
            batch: 2,
            query_heads: 8,
            kv_heads: 2,
            query_len: 29,
            kv_len: 29,
            head_dim: 32,
            value_dim: 24,
        },
    ]
}
