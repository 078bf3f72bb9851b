//! HyperAttention report: relative error against dense causal attention at 4K and 16K
//! tokens on Gaussian and planted-pair inputs, for a few settings, and CPU time against
//! dense (ndarray).
//!
//! Run: `cargo run --release --example hyper_report` (a few minutes on 2 cores).

use std::time::Instant;

use burn::backend::NdArray;
use burn::tensor::Tensor;
use burn_sparse_attn::synthetic::{gaussian, planted_pairs};
use burn_sparse_attn::{dense_attention, AttentionMethod, AttnOptions, AttnResult, HyperAttentionConfig};

type B = NdArray<f32>;

fn rel_error(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f64 {
    let diff: f32 = (a - b.clone()).powf_scalar(2.0).sum().into_scalar();
    let norm: f32 = b.powf_scalar(2.0).sum().into_scalar();
    (diff / norm).sqrt() as f64
}

/// One decode step after a prefill of all but the last token: HyperAttention attends
/// exactly over the cache, so the step costs what a dense decode step costs.
fn decode_timing(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    dim: usize,
    min_seq_len: usize,
) -> AttnResult<()> {
    let t = q.dims()[2];
    let method =
        HyperAttentionConfig::new(dim).with_min_seq_len(min_seq_len).init::<B>(&Default::default())?;
    let mut cache = burn_sparse_attn::KvCache::new();
    let part = |x: &Tensor<B, 4>, s: usize, l: usize| x.clone().narrow(2, s, l);
    method.prefill(part(q, 0, t - 1), part(k, 0, t - 1), part(v, 0, t - 1), &mut cache)?;
    let mut dense_cache = cache.clone();
    let start = Instant::now();
    let out = method.decode(part(q, t - 1, 1), part(k, t - 1, 1), part(v, t - 1, 1), &mut cache)?.output;
    let hyper_ms = start.elapsed().as_secs_f64() * 1e3;
    let dense = burn_sparse_attn::DenseAttentionConfig::new().init::<B>(&Default::default());
    let start = Instant::now();
    let reference =
        dense.decode(part(q, t - 1, 1), part(k, t - 1, 1), part(v, t - 1, 1), &mut dense_cache)?.output;
    let dense_ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "decode step at T={t}: HyperAttention {hyper_ms:.2} ms, dense {dense_ms:.2} ms, max difference {:.1e}",
        (out - reference).abs().max().into_scalar()
    );
    Ok(())
}

fn main() -> AttnResult<()> {
    let device = Default::default();
    let (heads, dim, min_seq_len) = (2, 64, 1024);
    println!("causal prefill, {heads} heads, head_dim {dim}, lsh_num_projs 7, min_seq_len {min_seq_len}");
    println!("gaussian: independent N(0,1) queries and keys, scale 1/sqrt(d)");
    println!("planted: each query has a noisy copy (0.05) among the keys, scale 0.25 (sharp)\n");
    println!(
        "{:<9} {:>6} {:>7} {:>7} {:>10} {:>10} {:>10} {:>8}",
        "input", "T", "block", "sample", "rel.error", "hyper s", "dense s", "speedup"
    );
    for t in [4096usize, 16384] {
        for input in ["gaussian", "planted"] {
            let shape = [1, heads, t, dim];
            let (q, k, scale) = match input {
                "gaussian" => (gaussian::<B>(shape, 1, &device), gaussian::<B>(shape, 2, &device), None),
                _ => {
                    let (q, k) = planted_pairs::<B>(shape, 0.05, 1, &device);
                    (q, k, Some(0.25))
                }
            };
            let v = gaussian::<B>(shape, 3, &device);
            let options = AttnOptions { scale, ..AttnOptions::causal() };
            let start = Instant::now();
            let exact = dense_attention(q.clone(), k.clone(), v.clone(), &options)?.output;
            let dense_s = start.elapsed().as_secs_f64();
            for (block, sample) in [(256, 256), (512, 512)] {
                let config = HyperAttentionConfig::new(dim)
                    .with_block_size(block)
                    .with_sample_size(sample)
                    .with_min_seq_len(min_seq_len)
                    .with_scale(scale);
                let method = config.init::<B>(&device)?;
                let start = Instant::now();
                let out = method.forward(q.clone(), k.clone(), v.clone())?.output;
                let hyper_s = start.elapsed().as_secs_f64();
                println!(
                    "{input:<9} {t:>6} {block:>7} {sample:>7} {:>10.4} {hyper_s:>10.2} {dense_s:>10.2} {:>8.2}",
                    rel_error(out, exact.clone()),
                    dense_s / hyper_s
                );
            }
            if input == "gaussian" {
                decode_timing(&q, &k, &v, dim, min_seq_len)?;
            }
        }
    }
    Ok(())
}
