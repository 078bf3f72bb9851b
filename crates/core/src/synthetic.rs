//! Seeded synthetic inputs for tests, examples and reports: plain Gaussian noise, and
//! sequences with locality (nearby tokens alike, as in trained models' queries and keys).

use burn::tensor::{backend::Backend, Tensor, TensorData};

/// SplitMix64 normal samples: deterministic for a seed, whatever the backend.
pub fn normal_values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..len)
        .map(|_| {
            let (u1, u2) = (uniform().max(1e-7), uniform());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
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
    let mut state = seed.wrapping_add(1);
    let mut below = |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % n as u64) as usize
    };
    let mut k = vec![0.0f32; q.len()];
    for row in 0..rows * heads {
        let mut partner: Vec<usize> = (0..len).collect();
        for i in (1..len).rev() {
            partner.swap(i, below(i + 1));
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
