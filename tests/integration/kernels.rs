//! The CubeCL kernels against the reference path (NdArray) on random inputs of odd sizes:
//! GQA ratios 1, 3 and 4, contexts below and above the budget. Always on wgpu (the
//! dev-dependencies turn core's `wgpu` feature on; in CI the device is Mesa's lavapipe), and on
//! CUDA with `--features cuda`: `cargo test -p burn-sparse-attn --features cuda --test
//! integration kernels::cuda` (one test per process there: see kernels-cubecl/NOTES.md).

use burn::backend::NdArray;
use burn::module::Module;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use burn_sparse_attn::kernels::{self, KernelWindow};
use burn_sparse_attn::rng::SplitMix64;
use burn_sparse_attn::select::{budget_selection, budget_union, exact_scores, page_selection, PageBounds};
use burn_sparse_attn::synthetic::normal_values;
use burn_sparse_attn::{
    gather_attention, AttentionMethod, AttnOutput, HashAttention, HashAttentionConfig, HashMappingConfig,
    KeySelection, KvCache, OracleTopKConfig, QueryPositions, QuestConfig, SparseBudget,
    StreamingAttentionConfig,
};

pub(crate) type Ref = NdArray<f32>;

pub(crate) fn floats(t: Tensor<impl Backend, 4>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

pub(crate) fn ints<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec().unwrap()
}

pub(crate) fn pair<G: Backend>(
    shape: [usize; 4],
    seed: u64,
    device: &G::Device,
) -> (Tensor<Ref, 4>, Tensor<G, 4>) {
    let data = TensorData::new(normal_values(shape.iter().product(), seed), shape);
    (Tensor::from_data(data.clone(), &Default::default()), Tensor::from_data(data, device))
}

pub(crate) fn assert_close(name: &str, expected: &[f32], got: &[f32], tolerance: f32) {
    assert_eq!(expected.len(), got.len(), "{name}: lengths");
    let differences: Vec<f32> = expected
        .iter()
        .zip(got)
        .map(|(e, g)| if e.is_infinite() && e == g { 0.0 } else { (e - g).abs() / (1.0 + e.abs()) })
        .collect();
    let (at, worst) = differences.iter().copied().enumerate().fold((0, 0.0f32), |best, (i, d)| {
        if d > best.1 || d.is_nan() {
            (i, d)
        } else {
            best
        }
    });
    let off = differences.iter().filter(|&&d| d > tolerance || d.is_nan()).count();
    assert!(
        worst <= tolerance,
        "{name}: worst relative difference {worst} > {tolerance} at element {at} of {} \
         (expected {}, got {}); {off} elements off",
        expected.len(),
        expected[at],
        got[at]
    );
}

/// [`assert_close`] on the output and on the lse of two attention results.
pub(crate) fn assert_attention_close<G: Backend>(
    name: &str,
    expected: AttnOutput<Ref>,
    got: AttnOutput<G>,
    tolerance: f32,
) {
    assert_close(&format!("{name}: output"), &floats(expected.output), &floats(got.output), tolerance);
    let (expected_lse, got_lse) = (floats(expected.lse.unsqueeze()), floats(got.lse.unsqueeze()));
    assert_close(&format!("{name}: lse"), &expected_lse, &got_lse, tolerance);
}

/// Per row, the selected keys sorted (padding dropped).
pub(crate) fn rows_of(indices: &[i64], valid: Option<&[bool]>, width: usize) -> Vec<Vec<i64>> {
    indices
        .chunks(width)
        .enumerate()
        .map(|(r, row)| {
            let mut keys: Vec<i64> = row
                .iter()
                .enumerate()
                .filter(|&(i, &key)| key >= 0 && valid.is_none_or(|v| v[r * width + i]))
                .map(|(_, &key)| key)
                .collect();
            keys.sort();
            keys
        })
        .collect()
}

/// The same random HashAttention on both backends (Burn initialises parameters lazily, so
/// the weights travel through a record, never a clone).
fn same_weights<G: Backend>(
    config: &HashAttentionConfig,
    device: &G::Device,
) -> (HashAttention<Ref>, HashAttention<G>) {
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let method = config.init::<Ref>(&Default::default()).unwrap();
    let bytes = recorder.record(method.into_record(), ()).unwrap();
    let reload = recorder.load(bytes.clone(), &Default::default()).unwrap();
    let on_ref = config.init::<Ref>(&Default::default()).unwrap().load_record(reload);
    let on_gpu = config.init::<G>(device).unwrap().load_record(recorder.load(bytes, device).unwrap());
    (on_ref, on_gpu)
}

fn pack_signs_match<G: Backend>(device: &G::Device) {
    let (codes_ref, _) = pair::<G>([2, 3, 7, 64], 1, device);
    let codes_ref = codes_ref.clone().mask_fill(codes_ref.abs().lower_elem(0.05), 0.0);
    let codes = Tensor::<G, 4>::from_data(codes_ref.to_data(), device);
    let expected = ints(burn_sparse_attn::hash::pack_signs(codes_ref).unwrap());
    let got = ints(burn_sparse_attn::hash::pack_signs(codes).unwrap());
    let bits = |v: Vec<i64>| v.into_iter().map(|x| x as u32).collect::<Vec<_>>();
    assert_eq!(bits(expected), bits(got));
}

/// Host top-k by scores, the rule the kernel documents: per row, the `k` highest scores
/// among keys `sink..=last - window` (NaN and `-inf` never), ties to the lower key.
fn host_score_top_k(
    scores: &[f32],
    rows: usize,
    query_len: usize,
    kv_len: usize,
    at: KernelWindow,
    k: usize,
) -> Vec<Vec<i64>> {
    (0..rows)
        .map(|r| {
            let last = at.first_position + r % query_len;
            let end = (last + 1).saturating_sub(at.window).max(at.sink);
            let row = &scores[r * kv_len..(r + 1) * kv_len];
            let mut keys: Vec<usize> = (at.sink..end).filter(|&key| row[key] > f32::NEG_INFINITY).collect();
            keys.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let mut chosen: Vec<i64> = keys.into_iter().take(k).map(|key| key as i64).collect();
            chosen.sort();
            chosen
        })
        .collect()
}

fn top_k_by_scores_matches_reference<G: Backend>(device: &G::Device) {
    // Rows shorter and longer than the kernel's tiles of 2048 keys; coarse scores tie often,
    // and the ties must go to the lower keys across units and tiles.
    for (query_len, kv_len, sink, window, k, coarse) in [
        (5, 301, 3, 7, 17, false),
        (4, 40, 2, 5, 50, false),
        (1, 1000, 16, 64, 31, false),
        (3, 5000, 16, 64, 700, true),
        (2, 4500, 0, 1, 3000, true),
        (2, 2100, 5, 9, 1, true),
    ] {
        let (_, scores) = pair::<G>([2, 3, query_len, kv_len], 7, device);
        let scores = if coarse { scores.mul_scalar(4.0).round().div_scalar(4.0) } else { scores };
        let at = KernelWindow { first_position: kv_len - query_len, sink, window };
        let k = k.min(kv_len);
        let got = kernels::top_k_by_scores(&scores, at, k).expect("kernel path");
        // The host reads the values the kernel reads (in G's float type).
        let values: Vec<f32> = scores.into_data().convert::<f32>().to_vec().unwrap();
        let expected = host_score_top_k(&values, 2 * 3 * query_len, query_len, kv_len, at, k);
        assert_eq!(expected, rows_of(&ints(got), None, k), "context {kv_len}, k {k}, coarse {coarse}");
    }
}

/// Host top-k by matching bits, ties to the lower key.
pub(crate) fn host_signature_top_k(
    q: &[i64],
    keys: &[i64],
    [b, h, t, kv_len, words]: [usize; 5],
    kh: usize,
    at: KernelWindow,
    k: usize,
    group: usize,
) -> Vec<Vec<i64>> {
    let mut rows = Vec::new();
    for bi in 0..b {
        for head in 0..h / group {
            for ti in 0..t {
                let last = at.first_position + ti;
                let end = if last + 1 > at.sink + at.window { last + 1 - at.window } else { at.sink };
                let mut scored: Vec<(u32, i64)> = (at.sink..end)
                    .map(|j| {
                        let mut same = 0;
                        for g in 0..group {
                            let qh = head * group + g;
                            for w in 0..words {
                                let a = q[((bi * h + qh) * t + ti) * words + w] as u32;
                                let c = keys[((bi * kh + qh / (h / kh)) * kv_len + j) * words + w] as u32;
                                same += (!(a ^ c)).count_ones();
                            }
                        }
                        (same, j as i64)
                    })
                    .collect();
                scored.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
                let mut chosen: Vec<i64> = scored.into_iter().take(k).map(|(_, j)| j).collect();
                chosen.sort();
                rows.push(chosen);
            }
        }
    }
    rows
}

fn top_k_by_signatures_breaks_ties_to_lower_keys<G: Backend>(device: &G::Device) {
    let mut rng = SplitMix64::new(3);
    for (heads, key_heads, group, words, query_len, kv_len, k) in
        [(3, 3, 1, 1, 3, 517, 40), (4, 1, 1, 2, 2, 300, 9), (6, 2, 3, 1, 4, 211, 23), (2, 2, 1, 1, 2, 30, 64)]
    {
        let q: Vec<i64> =
            (0..2 * heads * query_len * words).map(|_| rng.next_u64() as u32 as i32 as i64).collect();
        let keys: Vec<i64> =
            (0..2 * key_heads * kv_len * words).map(|_| rng.next_u64() as u32 as i32 as i64).collect();
        let to = |v: &Vec<i64>, shape: [usize; 4]| {
            Tensor::<G, 4, Int>::from_data(
                TensorData::new(v.iter().map(|&x| x as i32).collect::<Vec<_>>(), shape),
                device,
            )
        };
        let at = KernelWindow { first_position: kv_len - query_len, sink: 5, window: 9 };
        let got = kernels::top_k_by_signatures(
            &to(&q, [2, heads, query_len, words]),
            &to(&keys, [2, key_heads, kv_len, words]),
            group,
            at,
            k,
        )
        .expect("kernel path");
        let expected =
            host_signature_top_k(&q, &keys, [2, heads, query_len, kv_len, words], key_heads, at, k, group);
        assert_eq!(expected, rows_of(&ints(got), None, k), "heads {heads}/{key_heads}, group {group}");
    }
}

fn sparse_attention_matches_gather<G: Backend>(device: &G::Device, tolerance: f32) {
    let mut rng = SplitMix64::new(11);
    for (heads, kv_heads, query_len, kv_len, width, head_dim) in
        [(3, 3, 5, 301, 37, 24), (6, 2, 3, 129, 100, 13), (8, 2, 2, 1000, 300, 64)]
    {
        let (q_ref, q) = pair::<G>([2, heads, query_len, head_dim], 1, device);
        let (k_ref, k) = pair::<G>([2, kv_heads, kv_len, head_dim], 2, device);
        let (v_ref, v) = pair::<G>([2, kv_heads, kv_len, 40], 3, device);
        let rows = 2 * heads * query_len;
        let mut indices = Vec::new();
        let mut valid = Vec::new();
        for _ in 0..rows {
            let mut keys: Vec<i64> = (0..kv_len as i64).collect();
            for i in 0..width {
                let j = i + rng.below(kv_len - i);
                keys.swap(i, j);
            }
            for &key in keys.iter().take(width) {
                indices.push(key);
                valid.push(rng.uniform() > 0.2);
            }
        }
        let shape = [2, heads, query_len, width];
        let sel_ref = KeySelection::new(
            Tensor::<Ref, 4, Int>::from_data(TensorData::new(indices.clone(), shape), &Default::default()),
            Tensor::from_data(TensorData::new(valid.clone(), shape), &Default::default()),
        )
        .unwrap();
        let sel = KeySelection::new(
            Tensor::<G, 4, Int>::from_data(
                TensorData::new(indices.iter().map(|&x| x as i32).collect::<Vec<_>>(), shape),
                device,
            ),
            Tensor::from_data(TensorData::new(valid, shape), device),
        )
        .unwrap();
        let expected = gather_attention(q_ref.clone(), k_ref.clone(), v_ref.clone(), &sel_ref, 0.2).unwrap();
        let got = gather_attention(q.clone(), k.clone(), v.clone(), &sel, 0.2).unwrap();
        assert_attention_close("sparse attention", expected, got, tolerance);

        // Pages (Quest's selection): each entry stands for `page_size` keys, of which those
        // between the sink and the window are attended; against the key list they expand to.
        for (page_size, sink, window) in [(5, 3, 7), (8, 0, 1), (3, 4, 40)] {
            let first_position = kv_len - query_len;
            let pages_total = kv_len.div_ceil(page_size);
            let n = pages_total.min(7);
            let (mut entries, mut keys, mut valid) = (Vec::new(), Vec::new(), Vec::new());
            for row in 0..rows {
                let last = first_position + row % query_len;
                let window_start = (last + 1).saturating_sub(window).max(sink);
                let mut pages: Vec<i64> = (0..pages_total as i64).collect();
                for i in 0..n {
                    let j = i + rng.below(pages_total - i);
                    pages.swap(i, j);
                }
                // Sink and window first, then the pages' keys (`-1`: no page).
                for key in 0..sink.min(last + 1) {
                    keys.push(key as i64);
                    valid.push(true);
                }
                for key in window_start..=last {
                    keys.push(key as i64);
                    valid.push(true);
                }
                let listed = sink.min(last + 1) + (last + 1 - window_start.min(last + 1));
                for _ in listed..sink + window {
                    keys.push(0);
                    valid.push(false);
                }
                for &page in pages.iter().take(n) {
                    let page = if rng.uniform() < 0.2 { -1 } else { page };
                    entries.push(page as i32);
                    for offset in 0..page_size as i64 {
                        let key = page * page_size as i64 + offset;
                        keys.push(key.clamp(0, kv_len as i64 - 1));
                        valid.push(page >= 0 && key >= sink as i64 && key < window_start as i64);
                    }
                }
            }
            let width = sink + window + n * page_size;
            let shape = [2, heads, query_len, width];
            let selection = KeySelection::new(
                Tensor::<Ref, 4, Int>::from_data(TensorData::new(keys, shape), &Default::default()),
                Tensor::from_data(TensorData::new(valid, shape), &Default::default()),
            )
            .unwrap();
            let expected =
                gather_attention(q_ref.clone(), k_ref.clone(), v_ref.clone(), &selection, 0.2).unwrap();
            let pages =
                Tensor::<G, 4, Int>::from_data(TensorData::new(entries, [2, heads, query_len, n]), device);
            let at = KernelWindow { first_position, sink, window };
            let got = kernels::sparse_attention_in_pages(&q, &k, &v, &pages, page_size, at, 0.2).unwrap();
            assert_attention_close(&format!("pages of {page_size}"), expected, got, tolerance);
        }
    }
}

/// Streaming, oracle top-k and HashAttention (prefill, then decode steps) give the same
/// outputs as the reference, with contexts below and above the budget.
fn methods_match_reference<G: Backend>(device: &G::Device, tolerance: f32, exact_matmuls: bool) {
    for (heads, kv_heads, prefill) in [(4, 4, 150), (3, 1, 301), (8, 2, 40)] {
        let (q_ref, q) = pair::<G>([1, heads, prefill + 3, 32], 21, device);
        let (k_ref, k) = pair::<G>([1, kv_heads, prefill + 3, 32], 22, device);
        let (v_ref, v) = pair::<G>([1, kv_heads, prefill + 3, 16], 23, device);
        let streaming = StreamingAttentionConfig::new()
            .with_sink(3)
            .with_window(37)
            .init::<Ref>(&Default::default())
            .unwrap();
        let expected = streaming.forward(q_ref.clone(), k_ref.clone(), v_ref.clone()).unwrap();
        let got = streaming.forward(q.clone(), k.clone(), v.clone()).unwrap();
        assert_close("streaming", &floats(expected.output), &floats(got.output), tolerance);
        // The oracle's scores come from a matmul whose rounding differs between backends
        // (TF32 on CUDA), which can swap keys at the cut: the reference selection is
        // therefore made from the same device's scores.
        let oracle = OracleTopKConfig::new()
            .with_sink(2)
            .with_window(11)
            .with_heavy(29.0)
            .init::<Ref>(&Default::default())
            .unwrap();
        let got = oracle.forward(q.clone(), k.clone(), v.clone()).unwrap();
        let scale = 1.0 / (32f64).sqrt();
        let len = prefill + 3;
        let positions = QueryPositions { offset: 0, causal: true, kv_len: len };
        let budget = SparseBudget { sink: 2, window: 11, heavy: 29.0 };
        let scores = exact_scores(q.clone(), k.clone(), scale);
        let selection = budget_selection(Some(scores), &positions, [1, heads, len], &budget, device).unwrap();
        let expected = gather_attention(q.clone(), k.clone(), v.clone(), &selection, scale).unwrap();
        assert_close("oracle", &floats(expected.output), &floats(got.output), tolerance);

        // Quest: the kernels' page top-k and attention against the reference page selection
        // of the same device's page bounds, in prefill and decode.
        let (page_size, sink, window, heavy) = (8, 3, 13, 40.0);
        let quest = QuestConfig::new()
            .with_page_size(page_size)
            .with_sink(sink)
            .with_window(window)
            .with_heavy(heavy)
            .init::<Ref>(&Default::default())
            .unwrap();
        let budget = SparseBudget { sink, window, heavy };
        let mut cache = KvCache::new();
        for (start, len) in [(0, prefill), (prefill, 1), (prefill + 1, 2)] {
            let part = |t: &Tensor<G, 4>| t.clone().narrow(2, start, len);
            let got = floats(quest.forward_cached(part(&q), part(&k), part(&v), &mut cache).unwrap().output);
            let kv_len = start + len;
            let positions = QueryPositions { offset: start, causal: true, kv_len };
            let scores = cache.state::<PageBounds<G>>().unwrap().scores(part(&q));
            let pages = (heavy as usize).div_ceil(page_size);
            let chosen = page_selection(scores, &positions, page_size, sink, window, pages).unwrap();
            let selection = budget_union(Some(chosen), &positions, [1, heads, len], &budget, device).unwrap();
            let (keys, values) = (cache.keys().unwrap().clone(), cache.values().unwrap().clone());
            let expected = gather_attention(part(&q), keys, values, &selection, scale).unwrap();
            assert_close(&format!("quest at {start}"), &floats(expected.output), &got, tolerance);
        }

        // Per query head and shared per KV head (the kernels' `group`).
        for shared in [false, true] {
            let mapping = HashMappingConfig::new(32, heads, kv_heads).with_hidden(16).with_layers(2);
            let config = HashAttentionConfig::new(mapping)
                .with_sink(4)
                .with_window(16)
                .with_heavy(0.125)
                .with_shared_selection(shared);
            let (hash_ref, hash) = same_weights::<G>(&config, device);
            let (mut cache_ref, mut cache) = (KvCache::new(), KvCache::new());
            for (start, len) in [(0, prefill), (prefill, 1), (prefill + 1, 1), (prefill + 2, 1)] {
                let part_ref = |t: &Tensor<Ref, 4>| t.clone().narrow(2, start, len);
                let part = |t: &Tensor<G, 4>| t.clone().narrow(2, start, len);
                let expected = hash_ref
                    .forward_cached(part_ref(&q_ref), part_ref(&k_ref), part_ref(&v_ref), &mut cache_ref)
                    .unwrap();
                let got =
                    floats(hash.forward_cached(part(&q), part(&k), part(&v), &mut cache).unwrap().output);
                // Same device: the reference selection (signature ranking + sort) of the same
                // signatures, attended by the gather path.
                let selection = hash.selection(part(&q), &cache).unwrap();
                let (keys, values) = (cache.keys().unwrap().clone(), cache.values().unwrap().clone());
                let same_device = gather_attention(part(&q), keys, values, &selection, scale).unwrap();
                assert_close(
                    &format!("hash (shared {shared}) at {start}"),
                    &floats(same_device.output),
                    &got,
                    tolerance,
                );
                // Across backends only where matmuls round alike (not CUDA's TF32, which flips
                // the signs of codes near zero and so changes signatures).
                if exact_matmuls {
                    assert_close(
                        &format!("hash at {start} vs ndarray"),
                        &floats(expected.output),
                        &got,
                        tolerance,
                    );
                }
            }
        }
    }
}

macro_rules! kernel_tests {
    ($name:ident, $backend:ty, $device:expr, $tolerance:expr, $exact_matmuls:expr) => {
        mod $name {
            use super::*;
            type G = $backend;
            fn device() -> burn::tensor::Device<G> {
                $device
            }
            #[test]
            fn pack_signs_matches_reference() {
                pack_signs_match::<G>(&device());
            }
            #[test]
            fn top_k_by_scores_matches_reference_selection() {
                top_k_by_scores_matches_reference::<G>(&device());
            }
            #[test]
            fn top_k_by_signatures_matches_host_rule() {
                top_k_by_signatures_breaks_ties_to_lower_keys::<G>(&device());
            }
            #[test]
            fn sparse_attention_matches_reference_gather() {
                sparse_attention_matches_gather::<G>(&device(), $tolerance);
            }
            #[test]
            fn methods_match_reference_in_prefill_and_decode() {
                methods_match_reference::<G>(&device(), $tolerance, $exact_matmuls);
            }
            #[test]
            fn kernels_are_active() {
                assert!(kernels::kernels_active::<G>());
                assert!(!kernels::kernels_active::<Ref>());
            }
        }
    };
}

kernel_tests!(wgpu, burn::backend::Wgpu, Default::default(), 1e-4, true);
#[cfg(feature = "cuda")]
kernel_tests!(cuda, burn::backend::Cuda, Default::default(), 1e-4, false);

/// Half precision (CUDA only: lavapipe has no f16): the attention kernel reads f16 and
/// accumulates in f32.
#[cfg(feature = "cuda")]
#[test]
fn cuda_f16_sparse_attention_matches_reference_gather() {
    sparse_attention_matches_gather::<burn::backend::Cuda<burn::tensor::f16>>(&Default::default(), 2e-2);
}

/// Half precision (CUDA only): the top-k kernel's order keys are 19 bits wide in f16, 16 in
/// bf16 (two radix rounds instead of three).
#[cfg(feature = "cuda")]
#[test]
fn cuda_f16_top_k_by_scores_matches_host_rule() {
    top_k_by_scores_matches_reference::<burn::backend::Cuda<burn::tensor::f16>>(&Default::default());
}

/// See [`cuda_f16_top_k_by_scores_matches_host_rule`].
#[cfg(feature = "cuda")]
#[test]
fn cuda_bf16_top_k_by_scores_matches_host_rule() {
    top_k_by_scores_matches_reference::<burn::backend::Cuda<burn::tensor::bf16>>(&Default::default());
}

/// Half precision under wgpu compiled to SPIR-V (feature `vulkan`, a GPU with f16 shaders).
#[cfg(feature = "vulkan")]
#[test]
fn vulkan_f16_sparse_attention_matches_reference_gather() {
    sparse_attention_matches_gather::<burn::backend::Wgpu<burn::tensor::f16>>(&Default::default(), 2e-2);
}
