//! Criterion benchmarks of the reference path (ndarray, CPU) on small shapes: every method
//! of the registry at 1/8 of the keys, prefill and one decode step. They track the
//! reference implementation's cost between commits; GPU speed is measured by
//! benches/gpu.rs against PyTorch (benches/README.md).
//!
//! `cargo bench --bench reference` (add `-- decode` to run one group).

use std::hint::black_box;

use burn::backend::NdArray;
use burn::tensor::{Distribution, Tensor};
use burn_sparse_attn::{AttentionMethod, HeadLayout, KeyBudget, KvCache, MethodKind};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

type B = NdArray<f32>;

/// SmolLM2-135M's heads: 9 query heads over 3 KV heads of 64 dimensions.
const LAYOUT: HeadLayout = HeadLayout { head_dim: 64, query_heads: 9, kv_heads: 3 };
const SPARSITY: f64 = 8.0;

fn random(shape: [usize; 4]) -> Tensor<B, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

/// Queries, keys and values of `len` tokens.
fn qkv(len: usize) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    let (h, kv, d) = (LAYOUT.query_heads, LAYOUT.kv_heads, LAYOUT.head_dim);
    (random([1, h, len, d]), random([1, kv, len, d]), random([1, kv, len, d]))
}

fn prefill(c: &mut Criterion) {
    let len = 1024;
    let budget = KeyBudget::new(len, SPARSITY).unwrap();
    let (q, k, v) = qkv(len);
    let mut group = c.benchmark_group(format!("prefill_{len}"));
    group.sample_size(10);
    for method in MethodKind::ALL {
        let attention = method.config_for_budget(&LAYOUT, &budget).init::<B>(&Default::default()).unwrap();
        group.bench_function(method.name(), |b| {
            b.iter(|| black_box(attention.forward(q.clone(), k.clone(), v.clone()).unwrap()))
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let context = 4096;
    let budget = KeyBudget::new(context, SPARSITY).unwrap();
    let (q, k, v) = qkv(context);
    let (q1, k1, v1) = qkv(1);
    let mut group = c.benchmark_group(format!("decode_{context}"));
    group.sample_size(20);
    for method in MethodKind::ALL {
        let attention = method.config_for_budget(&LAYOUT, &budget).init::<B>(&Default::default()).unwrap();
        let mut filled = KvCache::new();
        attention.prefill(q.clone(), k.clone(), v.clone(), &mut filled).unwrap();
        group.bench_function(method.name(), |b| {
            b.iter_batched(
                || filled.clone(),
                |mut cache| {
                    black_box(attention.decode(q1.clone(), k1.clone(), v1.clone(), &mut cache).unwrap())
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, prefill, decode);
criterion_main!(benches);
