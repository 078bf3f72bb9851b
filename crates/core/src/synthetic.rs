//! Seeded synthetic inputs for tests, examples and reports: plain Gaussian noise, and
//! sequences with locality (nearby tokens alike, as in trained models' queries and keys).

use burn::tensor::{backend::Backend, Tensor, TensorData};

pub use crate::rng::SplitMix64;

/// `len` standard normal samples, deterministic for a seed.
pub fn normal_values(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| rng.normal()).collect()
}

/// Standard normal `[d0, d1, seq, dim]`.
pub fn gaussian<B: Backend>(shape: [usize; 4], seed: u64, device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(normal_values(shape.iter().product(), seed), shape), device)
}

/// A sequence along axis 2 where each token is `rho` times the previous plus fresh noise,
/// scaled to unit variance: neighbours correlate by `rho^distance`.
pub fn drifting<B: Backend>(shape: [usize; 4], rho: f32, seed: u64, device: &B::Device) -> Tensor<B, 4> {
    let [_, _, len, dim] = shape;
    let noise = normal_values(shape.iter().product(), seed);
    let fresh = (1.0 - rho * rho).sqrt();
    let mut values = vec![0.0f32; noise.len()];
    for (i, n) in noise.iter().enumerate() {
        let first = (i / dim) % len == 0;
        values[i] = if first { *n } else { rho * values[i - dim] + fresh * n };
    }
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Queries `[d0, d1, len, dim]` (standard normal) and keys that are noisy copies of them at
/// shuffled positions: each query has one partner key, `noise` away, and attends mostly to
/// it when the scale is large. Returns `(queries, keys)`.
pub fn planted_pairs<B: Backend>(
    shape: [usize; 4],
    noise: f32,
    seed: u64,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let [rows, heads, len, dim] = shape;
    let q = normal_values(shape.iter().product(), seed);
    let jitter = normal_values(q.len(), seed ^ 0x5EED);
    let mut rng = SplitMix64::new(seed.wrapping_add(1));
    let mut k = vec![0.0f32; q.len()];
    for row in 0..rows * heads {
        let mut partner: Vec<usize> = (0..len).collect();
        for i in (1..len).rev() {
            partner.swap(i, rng.below(i + 1));
        }
        for (j, &p) in partner.iter().enumerate() {
            for e in 0..dim {
                let (kj, qp) = ((row * len + j) * dim + e, (row * len + p) * dim + e);
                k[kj] = q[qp] + noise * jitter[kj];
            }
        }
    }
    let tensor = |values| Tensor::from_data(TensorData::new(values, shape), device);
    (tensor(q), tensor(k))
}
