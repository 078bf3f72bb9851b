//! The prefill kernels against the reference path: the tiled attention kernel (dense causal;
//! sink + window + chosen key blocks; HiP end to end, and HiP decoding over a reused mask) and the counting sort (HyperAttention's
//! LSH order; HyperAttention end to end). Sizes are odd on purpose: query blocks that are
//! not multiples of the kernel's query tile, key blocks cut by the context's end, value dims
//! above one unit per dimension, GQA 1, 3, 4.

use std::collections::BTreeSet;

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use burn_sparse_attn::kernels::{self, BlockSizes, KernelWindow};
use burn_sparse_attn::methods::{hyper_attention_non_causal, CachedMask, HyperParams};
use burn_sparse_attn::rng::SplitMix64;
use burn_sparse_attn::select::{hip_mask, sink_selection, stable_order, window_selection};
use burn_sparse_attn::{
    dense_attention, gather_attention, AttentionMethod, AttnOptions, HipAttentionConfig,
    HyperAttentionConfig, KeySelection, KvCache, QueryPositions,
};

use crate::kernels::{assert_attention_close, assert_close, floats, pair, Ref};

/// Per query, the union of its sink, its window and the keys of its query block's chosen
/// blocks up to its position: HiP's definition, written with sets.
#[allow(clippy::too_many_arguments)]
fn host_key_lists(
    blocks: &[i64],
    [batch, heads, query_len, kv_len]: [usize; 4],
    first: usize,
    sink: usize,
    window: usize,
    query_block: usize,
    key_block: usize,
    per_block: usize,
) -> Vec<Vec<i64>> {
    let query_blocks = query_len.div_ceil(query_block);
    let mut lists = Vec::new();
    for b in 0..batch {
        for h in 0..heads {
            for t in 0..query_len {
                let pos = first + t;
                let mut keys: BTreeSet<usize> = (0..sink.min(pos + 1)).collect();
                keys.extend((pos + 1).saturating_sub(window).max(sink)..=pos);
                let row = ((b * heads + h) * query_blocks + t / query_block) * per_block;
                for &start in &blocks[row..row + per_block] {
                    if start >= 0 {
                        let start = start as usize;
                        keys.extend((start..start + key_block).filter(|&j| j < kv_len && j <= pos));
                    }
                }
                lists.push(keys.into_iter().map(|j| j as i64).collect());
            }
        }
    }
    lists
}

/// Key lists as a padded selection on the reference backend.
fn selection_of(lists: &[Vec<i64>], [b, h, t]: [usize; 3]) -> KeySelection<Ref> {
    let width = lists.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut indices = Vec::new();
    let mut valid = Vec::new();
    for list in lists {
        for i in 0..width {
            indices.push(list.get(i).copied().unwrap_or(0));
            valid.push(i < list.len());
        }
    }
    let shape = [b, h, t, width];
    let device = Default::default();
    KeySelection::new(
        Tensor::from_data(TensorData::new(indices, shape), &device),
        Tensor::from_data(TensorData::new(valid, shape), &device),
    )
    .unwrap()
}

fn block_attention_matches_key_lists<G: Backend>(device: &G::Device, tolerance: f32) {
    let mut rng = SplitMix64::new(17);
    // (heads, kv_heads, query_len, kv_len, head_dim, value_dim, query_block, key_block,
    //  blocks per query block, sink, window)
    for (
        heads,
        kv_heads,
        query_len,
        kv_len,
        head_dim,
        value_dim,
        query_block,
        key_block,
        per_block,
        sink,
        window,
    ) in [
        (3, 3, 23, 301, 24, 40, 6, 3, 7, 4, 10),
        (4, 1, 17, 130, 13, 200, 5, 2, 9, 0, 1),
        (8, 2, 40, 97, 64, 16, 64, 1, 30, 3, 200),
        // Tensor-core sizes on CUDA (head = value dim, query blocks of whole 64-query tiles).
        (8, 2, 150, 403, 64, 64, 64, 2, 40, 5, 33),
        (3, 1, 129, 300, 128, 128, 128, 3, 20, 0, 64),
    ] {
        let first = kv_len - query_len;
        let (q_ref, q) = pair::<G>([2, heads, query_len, head_dim], 31, device);
        let (k_ref, k) = pair::<G>([2, kv_heads, kv_len, head_dim], 32, device);
        let (v_ref, v) = pair::<G>([2, kv_heads, kv_len, value_dim], 33, device);
        // Distinct key blocks at or after the sink, some entries empty, the last slot cut
        // by the context's end.
        let slots = (kv_len - sink).div_ceil(key_block);
        let query_blocks = query_len.div_ceil(query_block);
        let mut blocks = Vec::new();
        for _ in 0..2 * heads * query_blocks {
            let mut order: Vec<usize> = (0..slots).collect();
            for i in 0..per_block.min(slots) {
                let j = i + rng.below(slots - i);
                order.swap(i, j);
            }
            for i in 0..per_block {
                let slot = order.get(i).filter(|_| rng.uniform() >= 0.2);
                blocks.push(slot.map_or(-1, |&slot| (sink + slot * key_block) as i64));
            }
        }
        let shape = [2, heads, query_len, kv_len];
        let lists = host_key_lists(&blocks, shape, first, sink, window, query_block, key_block, per_block);
        let expected =
            gather_attention(q_ref, k_ref, v_ref, &selection_of(&lists, [2, heads, query_len]), 0.3).unwrap();
        let blocks = Tensor::<G, 4, Int>::from_data(
            TensorData::new(
                blocks.iter().map(|&x| x as i32).collect::<Vec<_>>(),
                [2, heads, query_blocks, per_block],
            ),
            device,
        );
        let sizes = BlockSizes { query_block, key_block };
        let at = KernelWindow { first_position: first, sink, window };
        let got = kernels::block_sparse_attention(&q, &k, &v, Some((&blocks, sizes)), at, 0.3)
            .expect("kernel path");
        let case = format!("heads {heads}/{kv_heads}, query block {query_block}");
        assert_attention_close(&case, expected, got, tolerance);
    }
}

/// Causal dense attention: tiles of queries (many queries) and split keys (few queries).
fn dense_attention_matches_reference<G: Backend>(device: &G::Device, tolerance: f32) {
    for (batch, heads, kv_heads, query_len, kv_len, head_dim, value_dim) in [
        (2, 6, 2, 700, 700, 24, 40),
        (1, 4, 4, 133, 401, 13, 200),
        (1, 3, 3, 3, 300, 37, 16),
        // Tensor-core sizes on CUDA: GQA 4 and 3, tails of query and key tiles, offsets.
        (1, 8, 2, 333, 1000, 64, 64),
        (2, 3, 1, 131, 131, 128, 128),
        (1, 4, 4, 70, 201, 128, 128),
    ] {
        let (q_ref, q) = pair::<G>([batch, heads, query_len, head_dim], 41, device);
        let (k_ref, k) = pair::<G>([batch, kv_heads, kv_len, head_dim], 42, device);
        let (v_ref, v) = pair::<G>([batch, kv_heads, kv_len, value_dim], 43, device);
        let options = AttnOptions::causal();
        let expected = dense_attention(q_ref, k_ref, v_ref, &options).unwrap();
        let got = dense_attention(q, k, v, &options).unwrap();
        let case =
            format!("{query_len} queries, {kv_len} keys, head_dim {head_dim}, heads {heads}/{kv_heads}");
        assert_attention_close(&case, expected, got, tolerance);
    }
}

/// HiP's child scores against the host rule: the max of `q . k` over a query block's real
/// representative queries and a child's real keys (the lowest finite value where it has
/// none). Inputs are rounded to the device's dtype first, so only the sums' rounding differs.
fn child_scores_match_host<G: Backend>(device: &G::Device, tolerance: f32) {
    let mut rng = SplitMix64::new(29);
    // (heads, kv_heads, query_len, kv_len, head_dim, block_size_q, stride_q, children, keys per child)
    for (heads, kv_heads, query_len, kv_len, head_dim, block_q, stride_q, children, per_child) in [
        (4, 2, 150, 300, 64, 64, 2, 40, 2),
        (3, 3, 70, 90, 128, 32, 1, 33, 1),
        (2, 1, 40, 77, 32, 16, 1, 21, 4),
        (2, 2, 20, 50, 24, 6, 2, 9, 3),
    ] {
        let (_, q) = pair::<G>([1, heads, query_len, head_dim], 61, device);
        let (_, k) = pair::<G>([1, kv_heads, kv_len, head_dim], 62, device);
        let (q_host, k_host) = (floats(q.clone()), floats(k.clone()));
        let blocks = query_len.div_ceil(block_q);
        let positions: Vec<i64> = (0..heads * blocks * children * per_child)
            .map(|_| if rng.uniform() < 0.15 { -1 } else { rng.below(kv_len) as i64 })
            .collect();
        let key_positions = Tensor::<G, 5, Int>::from_data(
            TensorData::new(
                positions.iter().map(|&x| x as i32).collect::<Vec<_>>(),
                [1, heads, blocks, children, per_child],
            ),
            device,
        );
        let got = kernels::hip_child_scores(&q, &k, &key_positions, block_q, stride_q).expect("kernel path");
        let floor = kernels::lowest_finite(q.dtype());
        let mut expected = Vec::new();
        for h in 0..heads {
            let kh = h / (heads / kv_heads);
            for blk in 0..blocks {
                for c in 0..children {
                    let mut best = floor;
                    for r in 0..per_child {
                        let key = positions[((h * blocks + blk) * children + c) * per_child + r];
                        if key < 0 {
                            continue;
                        }
                        for t in (blk * block_q..((blk + 1) * block_q).min(query_len)).step_by(stride_q) {
                            let dot: f32 = (0..head_dim)
                                .map(|d| {
                                    q_host[(h * query_len + t) * head_dim + d]
                                        * k_host[(kh * kv_len + key as usize) * head_dim + d]
                                })
                                .sum();
                            best = best.max(dot);
                        }
                    }
                    expected.push(best);
                }
            }
        }
        let got: Vec<f32> = got.into_data().convert::<f32>().to_vec().unwrap();
        // Scores are sums of `head_dim` products: compare relative to their scale.
        let scale = (head_dim as f32).sqrt();
        let expected: Vec<f32> = expected.iter().map(|x| x / scale).collect();
        let got: Vec<f32> = got.iter().map(|x| x / scale).collect();
        assert_close(
            &format!("child scores, {block_q}/{stride_q} queries, head dim {head_dim}"),
            &expected,
            &got,
            tolerance,
        );
    }
}

/// HiP prefill: the block kernel equals the per-query gather over the same device's mask,
/// and (where matmuls round alike) the reference backend end to end.
fn hip_matches_reference<G: Backend>(device: &G::Device, tolerance: f32, exact_matmuls: bool) {
    for (heads, kv_heads, len, query_block) in [(4, 4, 301, 6), (3, 1, 203, 16)] {
        let (q_ref, q) = pair::<G>([1, heads, len, 32], 51, device);
        let (k_ref, k) = pair::<G>([1, kv_heads, len, 32], 52, device);
        let (v_ref, v) = pair::<G>([1, kv_heads, len, 24], 53, device);
        let config = HipAttentionConfig::new()
            .with_mask_k(8)
            .with_block_size_q(query_block)
            .with_block_size_k(2)
            .with_sink(3)
            .with_window(10);
        let hip = config.init::<G>(device).unwrap();
        let got = hip.forward(q.clone(), k.clone(), v.clone()).unwrap();

        let positions =
            AttnOptions::causal().positions(&burn_sparse_attn::AttnShape::of(&q, &k, &v).unwrap()).unwrap();
        let mask = hip_mask(q.clone(), k.clone(), &positions, &hip.params).unwrap();
        let selection = hip.selection(&mask, &positions, len).unwrap();
        let scale = 1.0 / (32f64).sqrt();
        let same_device = gather_attention(q, k, v, &selection, scale).unwrap();
        let case = format!("heads {heads}/{kv_heads}");
        assert_close(
            &format!("{case}: vs gather"),
            &floats(same_device.output),
            &floats(got.output.clone()),
            tolerance,
        );
        if exact_matmuls {
            let expected =
                config.init::<Ref>(&Default::default()).unwrap().forward(q_ref, k_ref, v_ref).unwrap();
            assert_close(
                &format!("{case}: vs ndarray"),
                &floats(expected.output),
                &floats(got.output),
                tolerance,
            );
        }
    }
}

/// HiP decoding: steps that reuse the cached mask (the block kernel on a CubeCL backend)
/// equal attention over the union of sink, the cached mask's keys and the widened window
/// on the same device; and (where matmuls round alike) every step, refreshes included,
/// equals the reference backend.
fn hip_decode_matches_reference<G: Backend>(device: &G::Device, tolerance: f32, exact_matmuls: bool) {
    for (heads, kv_heads, query_block) in [(4, 4, 6), (3, 1, 16)] {
        let (len, prefilled) = (230, 181);
        let (q_ref, q) = pair::<G>([2, heads, len, 32], 71, device);
        let (k_ref, k) = pair::<G>([2, kv_heads, len, 32], 72, device);
        let (v_ref, v) = pair::<G>([2, kv_heads, len, 24], 73, device);
        let config = HipAttentionConfig::new()
            .with_mask_k(16)
            .with_block_size_q(query_block)
            .with_block_size_k(2)
            .with_sink(3)
            .with_window(10)
            .with_refresh_interval(4);
        let (hip, reference) =
            (config.init::<G>(device).unwrap(), config.init::<Ref>(&Default::default()).unwrap());
        let (mut cache, mut ref_cache) = (KvCache::new(), KvCache::new());
        let first = |x: &Tensor<G, 4>| x.clone().narrow(2, 0, prefilled);
        hip.prefill(first(&q), first(&k), first(&v), &mut cache).unwrap();
        let first = |x: &Tensor<Ref, 4>| x.clone().narrow(2, 0, prefilled);
        reference.prefill(first(&q_ref), first(&k_ref), first(&v_ref), &mut ref_cache).unwrap();
        let mut reused = 0;
        for i in prefilled..len {
            let mask = cache.state::<CachedMask<G>>().unwrap().clone();
            let step = |x: &Tensor<G, 4>| x.clone().narrow(2, i, 1);
            let got = hip.decode(step(&q), step(&k), step(&v), &mut cache).unwrap().output;
            let case = format!("heads {heads}/{kv_heads}, step {i}");
            if cache.state::<CachedMask<G>>().unwrap().made_at == mask.made_at {
                reused += 1;
                let window = config.window.max(i + 1 - mask.range_end);
                let positions = QueryPositions { offset: i, causal: true, kv_len: i + 1 };
                let dims = [2, heads, 1];
                let mut sets = vec![KeySelection { indices: mask.keys.clone(), valid: mask.valid.clone() }];
                sets.extend(sink_selection(&positions, dims, config.sink, device));
                sets.extend(window_selection(&positions, dims, config.sink, window, device));
                let selection = KeySelection::union(sets, i + 1).unwrap();
                let upto = |x: &Tensor<G, 4>| x.clone().narrow(2, 0, i + 1);
                let expected =
                    gather_attention(step(&q), upto(&k), upto(&v), &selection, 1.0 / 32f64.sqrt()).unwrap();
                assert_close(
                    &format!("{case}: vs union"),
                    &floats(expected.output),
                    &floats(got.clone()),
                    tolerance,
                );
            }
            if exact_matmuls {
                let step = |x: &Tensor<Ref, 4>| x.clone().narrow(2, i, 1);
                let expected =
                    reference.decode(step(&q_ref), step(&k_ref), step(&v_ref), &mut ref_cache).unwrap();
                assert_close(
                    &format!("{case}: vs ndarray"),
                    &floats(expected.output),
                    &floats(got),
                    tolerance,
                );
            }
        }
        assert!(reused > (len - prefilled) / 2, "{reused} steps reused the mask");
    }
}

/// The counting sort gives the stable order of the reference sort, ties included.
fn counting_order_matches_stable_sort<G: Backend>(device: &G::Device) {
    let mut rng = SplitMix64::new(23);
    for (heads, len, buckets) in [(3, 1037, 128), (2, 50, 5), (1, 4099, 1), (2, 7, 4096)] {
        let keys: Vec<i32> = (0..2 * heads * len).map(|_| rng.below(buckets) as i32).collect();
        let shape = [2, heads, len];
        let expected = stable_order(Tensor::<Ref, 3, Int>::from_data(
            TensorData::new(keys.clone(), shape),
            &Default::default(),
        ));
        let got = kernels::counting_order(
            &Tensor::<G, 3, Int>::from_data(TensorData::new(keys, shape), device),
            buckets,
        )
        .expect("kernel path");
        let expected: Vec<i64> = expected.into_data().convert::<i64>().to_vec().unwrap();
        let got: Vec<i64> = got.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(expected, got, "{heads} heads, {len} keys, {buckets} buckets");
    }
}

/// HyperAttention (causal: recursion, sorted blocks, samples) with the device sort equals
/// the reference backend.
fn hyper_matches_reference<G: Backend>(device: &G::Device, tolerance: f32) {
    for (heads, kv_heads, len) in [(4, 4, 301), (3, 1, 257)] {
        let (q_ref, q) = pair::<G>([1, heads, len, 32], 61, device);
        let (k_ref, k) = pair::<G>([1, kv_heads, len, 32], 62, device);
        let (v_ref, v) = pair::<G>([1, kv_heads, len, 24], 63, device);
        let config =
            HyperAttentionConfig::new(32).with_block_size(16).with_sample_size(8).with_min_seq_len(64);
        let expected = config.init::<Ref>(&Default::default()).unwrap().forward(q_ref, k_ref, v_ref).unwrap();
        let got = config.init::<G>(device).unwrap().forward(q, k, v).unwrap();
        assert_close(
            &format!("heads {heads}/{kv_heads}"),
            &floats(expected.output),
            &floats(got.output),
            tolerance,
        );
    }
    // The non-causal estimator alone: fewer queries than keys, GQA, a short last key block,
    // query blocks of 64 (the tensor-core kernels' tile on CUDA), and without samples.
    for (heads, kv_heads, query_len, kv_len, block_size, sample_size) in
        [(4, 2, 150, 333, 16, 8), (2, 2, 640, 700, 64, 0), (4, 1, 512, 512, 64, 24)]
    {
        let (q_ref, q) = pair::<G>([1, heads, query_len, 32], 71, device);
        let (k_ref, k) = pair::<G>([1, kv_heads, kv_len, 32], 72, device);
        let (v_ref, v) = pair::<G>([1, kv_heads, kv_len, 32], 73, device);
        let (p_ref, p) = pair::<G>([1, 1, 32, 5], 74, device);
        let params = HyperParams { block_size, sample_size, min_seq_len: 0, seed: 5, scale: 0.2 };
        let expected =
            hyper_attention_non_causal(q_ref, k_ref, v_ref, p_ref.reshape([32, 5]), &params).unwrap();
        let got = hyper_attention_non_causal(q, k, v, p.reshape([32, 5]), &params).unwrap();
        let case = format!("non-causal, heads {heads}/{kv_heads}, {query_len} queries, {kv_len} keys");
        assert_attention_close(&case, expected, got, tolerance);
    }
}

macro_rules! prefill_kernel_tests {
    ($name:ident, $backend:ty, $device:expr, $tolerance:expr, $exact_matmuls:expr) => {
        mod $name {
            use super::*;
            type G = $backend;
            fn device() -> burn::tensor::Device<G> {
                $device
            }
            #[test]
            fn block_attention_matches_host_key_lists() {
                block_attention_matches_key_lists::<G>(&device(), $tolerance);
            }
            #[test]
            fn dense_attention_matches_reference() {
                super::dense_attention_matches_reference::<G>(&device(), $tolerance);
            }
            #[test]
            fn hip_matches_reference() {
                super::hip_matches_reference::<G>(&device(), $tolerance, $exact_matmuls);
            }
            #[test]
            fn hip_decode_matches_reference() {
                super::hip_decode_matches_reference::<G>(&device(), $tolerance, $exact_matmuls);
            }
            #[test]
            fn child_scores_match_host_rule() {
                super::child_scores_match_host::<G>(&device(), $tolerance);
            }
            #[test]
            fn counting_order_matches_stable_sort() {
                super::counting_order_matches_stable_sort::<G>(&device());
            }
        }
    };
}

prefill_kernel_tests!(wgpu, burn::backend::Wgpu, Default::default(), 1e-4, true);
#[cfg(feature = "cuda")]
prefill_kernel_tests!(cuda, burn::backend::Cuda, Default::default(), 1e-4, false);

/// Across backends only where matmuls round alike (not CUDA's TF32, which moves LSH
/// buckets of near-zero projections).
#[test]
fn wgpu_hyper_matches_reference() {
    hyper_matches_reference::<burn::backend::Wgpu>(&Default::default(), 1e-4);
}

/// Half precision (CUDA only: lavapipe has no f16): the prefill kernel reads f16 and
/// accumulates in f32.
#[cfg(feature = "cuda")]
#[test]
fn cuda_f16_block_attention_matches_host_key_lists() {
    block_attention_matches_key_lists::<burn::backend::Cuda<burn::tensor::f16>>(&Default::default(), 2e-2);
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_f16_dense_attention_matches_reference() {
    dense_attention_matches_reference::<burn::backend::Cuda<burn::tensor::f16>>(&Default::default(), 2e-2);
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_f16_child_scores_match_host_rule() {
    child_scores_match_host::<burn::backend::Cuda<burn::tensor::f16>>(&Default::default(), 2e-2);
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_bf16_child_scores_match_host_rule() {
    child_scores_match_host::<burn::backend::Cuda<burn::tensor::bf16>>(&Default::default(), 5e-2);
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_bf16_dense_attention_matches_reference() {
    dense_attention_matches_reference::<burn::backend::Cuda<burn::tensor::bf16>>(&Default::default(), 5e-2);
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_bf16_block_attention_matches_host_key_lists() {
    block_attention_matches_key_lists::<burn::backend::Cuda<burn::tensor::bf16>>(&Default::default(), 5e-2);
}

/// The half-precision tests above run on tensor cores (CUDA only: lavapipe has none).
#[cfg(feature = "cuda")]
#[test]
fn cuda_half_precision_prefill_uses_tensor_cores() {
    use burn::tensor::DType;
    let device = Default::default();
    assert!(kernels::prefill_on_tensor_cores::<burn::backend::Cuda>(&device, DType::F16));
    assert!(kernels::prefill_on_tensor_cores::<burn::backend::Cuda>(&device, DType::BF16));
    assert!(!kernels::prefill_on_tensor_cores::<burn::backend::Cuda>(&device, DType::F32));
}

/// Half precision under wgpu compiled to SPIR-V (feature `vulkan`: a GPU with f16 shaders
/// and cooperative matrices, such as NVIDIA's Vulkan driver): the prefill kernels take the
/// tensor-core path there, as on CUDA.
#[cfg(feature = "vulkan")]
mod vulkan_f16 {
    use super::*;
    type G = burn::backend::Wgpu<burn::tensor::f16>;

    #[test]
    fn block_attention_matches_host_key_lists() {
        block_attention_matches_key_lists::<G>(&Default::default(), 2e-2);
    }

    #[test]
    fn dense_attention_matches_reference() {
        super::dense_attention_matches_reference::<G>(&Default::default(), 2e-2);
    }

    #[test]
    fn child_scores_match_host_rule() {
        child_scores_match_host::<G>(&Default::default(), 2e-2);
    }

    #[test]
    fn half_precision_prefill_uses_tensor_cores() {
        use burn::tensor::DType;
        let device = Default::default();
        assert!(kernels::prefill_on_tensor_cores::<G>(&device, DType::F16));
        assert!(!kernels::prefill_on_tensor_cores::<G>(&device, DType::F32));
    }
}
