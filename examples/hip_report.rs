//! HiP report: keys scored against T, recall of the oracle's top key blocks, and relative
//! error against dense attention next to exact top-k with the same budget, on inputs
//! without locality (Gaussian) and with it (drifting queries and keys).
//!
//! Run: `cargo run --release --example hip_report` (ndarray, CPU; about a minute).

use std::time::Instant;

use burn::backend::NdArray;
use burn::tensor::Tensor;
use burn_sparse_attn::quality::oracle_block_recall;
use burn_sparse_attn::select::hip_mask;
use burn_sparse_attn::synthetic::{drifting, gaussian};
use burn_sparse_attn::{
    dense_attention, AttentionMethod, AttnOptions, AttnResult, AttnShape, HipAttentionConfig,
    OracleTopKConfig,
};

type B = NdArray<f32>;

fn rel_error(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f64 {
    let diff: f32 = (a - b.clone()).powf_scalar(2.0).sum().into_scalar();
    let norm: f32 = b.powf_scalar(2.0).sum().into_scalar();
    (diff / norm).sqrt() as f64
}

fn main() -> AttnResult<()> {
    let device = Default::default();
    let (heads, dim) = (4, 64);
    let hip = HipAttentionConfig::new().with_mask_k(256).with_block_size_q(32).with_sink(16).with_window(128);
    let method = hip.init::<B>(&device)?;
    let oracle =
        OracleTopKConfig::new().with_sink(16).with_window(128).with_heavy(256.0).init::<B>(&device)?;
    println!("HiP: mask_k 256, block_size_q 32, block_stride_q 2, block_size_k 2, sink 16, window 128");
    println!("oracle top-k: sink 16, window 128, heavy 256 (the same number of keys)");
    println!("{heads} heads, head_dim {dim}, causal prefill; queries scaled by 2 for sharper attention\n");
    println!(
        "{:<9} {:>6} {:>12} {:>13} {:>10} {:>12} {:>9} {:>9}",
        "input", "T", "keys scored", "scored/T", "recall", "HiP error", "top-k err", "HiP s"
    );
    for t in [2048usize, 4096, 8192] {
        for kind in ["gaussian", "drifting"] {
            let shape = [1, heads, t, dim];
            let (q, k) = match kind {
                "gaussian" => (gaussian::<B>(shape, 1, &device), gaussian::<B>(shape, 2, &device)),
                _ => (drifting::<B>(shape, 0.97, 1, &device), drifting::<B>(shape, 0.97, 2, &device)),
            };
            let q = q.mul_scalar(2.0);
            let v = gaussian::<B>(shape, 3, &device);
            let positions = AttnOptions::causal().positions(&AttnShape::of(&q, &k, &v)?)?;
            let mask = hip_mask(q.clone(), k.clone(), &positions, &method.params)?;
            let scored = mask.scored_keys();
            let recall = oracle_block_recall(q.clone(), k.clone(), &mask, &method.params)?;
            let exact = dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::causal())?.output;
            let start = Instant::now();
            let sparse = method.forward(q.clone(), k.clone(), v.clone())?.output;
            let seconds = start.elapsed().as_secs_f64();
            let top_k = oracle.forward(q, k, v)?.output;
            println!(
                "{kind:<9} {t:>6} {scored:>12} {:>13.1} {recall:>10.3} {:>12.4} {:>9.4} {seconds:>9.2}",
                scored as f64 / t as f64,
                rel_error(sparse, exact.clone()),
                rel_error(top_k, exact),
            );
        }
    }
    Ok(())
}
