//! GPU benchmark of the kernels: HashAttention decode (score + top-k + attend, and the parts)
//! against our dense decode, and causal prefill of HiP and HyperAttention against our dense
//! attention (the tiled kernel). Times are medians over samples taken after warm-up, each sample a synchronised
//! batch of calls; bandwidth is against a measured device copy.
//!
//! `cargo build --release -p burn-sparse-attn-core --features cuda --example kernel_bench`,
//! then run the binary on the GPU machine (`--quick` for a small smoke run). Built with
//! `--features wgpu` instead it runs on wgpu (WGSL), with `--features vulkan` on wgpu compiled
//! to SPIR-V; both in f16, as on CUDA. `--no-burn-attention` leaves out burn's own attention
//! (timed beside ours, not a baseline). With `BSA_PROFILE=1` the prefill part times nothing
//! and prints where one call of HiP and of HyperAttention spends its time instead, part by
//! part. docs/benchmarks.md has the numbers.

use std::time::Instant;

use burn::tensor::{
    backend::Backend, module::attention, ops::AttentionModuleOptions, Distribution, ElementConversion, Tensor,
};
use burn_sparse_attn_core::kernels::{self, KernelWindow};
use burn_sparse_attn_core::profile;
use burn_sparse_attn_core::select::hip_mask;
use burn_sparse_attn_core::{
    dense_attention, AttentionMethod, AttnOptions, HashMappingConfig, HipAttentionConfig,
    HyperAttentionConfig, QueryPositions,
};

#[cfg(feature = "cuda")]
type B = burn::backend::Cuda<burn::tensor::f16>;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
type B = burn::backend::Wgpu<burn::tensor::f16>;
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
type B = burn::backend::NdArray;

const QUERY_HEADS: usize = 32;
const HEAD_DIM: usize = 128;
const SINK: usize = 16;
const WINDOW: usize = 64;

fn device() -> burn::tensor::Device<B> {
    Default::default()
}

/// Median seconds per call of `f`: warm-up, then `samples` synchronised batches of `reps`.
fn median_time<T>(mut f: impl FnMut() -> T, reps: usize, samples: usize) -> f64 {
    let device = device();
    for _ in 0..2 {
        drop(f());
    }
    B::sync(&device).unwrap();
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                drop(f());
            }
            B::sync(&device).unwrap();
            start.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn normal(shape: [usize; 4]) -> Tensor<B, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device())
}

struct Row {
    name: String,
    seconds: f64,
    bytes: f64,
    baseline: f64,
}

fn print_rows(title: &str, rows: &[Row], peak: f64) {
    println!("\n{title}");
    println!("{:<72} {:>10} {:>10} {:>8} {:>7} {:>8}", "case", "ms", "MB moved", "GB/s", "% peak", "speedup");
    for r in rows {
        let bandwidth = r.bytes / r.seconds / 1e9;
        println!(
            "{:<72} {:>10.3} {:>10.1} {:>8.0} {:>7.1} {:>8.2}",
            r.name,
            r.seconds * 1e3,
            r.bytes / 1e6,
            bandwidth,
            100.0 * bandwidth / peak,
            r.baseline / r.seconds
        );
    }
}

/// Device bandwidth: an elementwise pass over `2^log2_elements` elements (reads and writes them).
fn peak_bandwidth(log2_elements: usize) -> f64 {
    let elements = 1usize << log2_elements;
    let x = Tensor::<B, 1>::random([elements], Distribution::Default, &device());
    let bytes = 2.0 * (elements * x.dtype().size()) as f64;
    let seconds = median_time(|| x.clone().add_scalar(1.0), 5, 7);
    bytes / seconds / 1e9
}

fn decode(batches: &[usize], kv_heads_list: &[usize], contexts: &[usize], peak: f64) {
    let element = normal([1, 1, 1, 1]).dtype().size() as f64;
    let mut rows = Vec::new();
    for &batch in batches {
        for &kv_heads in kv_heads_list {
            for &context in contexts {
                let group = QUERY_HEADS / kv_heads;
                let heavy = context / 32;
                let q = normal([batch, QUERY_HEADS, 1, HEAD_DIM]);
                let k = normal([batch, kv_heads, context, HEAD_DIM]);
                let v = normal([batch, kv_heads, context, HEAD_DIM]);
                let mapping =
                    HashMappingConfig::new(HEAD_DIM, QUERY_HEADS, kv_heads).init::<B>(&device()).unwrap();
                let key_signatures = mapping.key_signatures(k.clone()).unwrap();
                let scale = 1.0 / (HEAD_DIM as f64).sqrt();
                let dense_at = KernelWindow { first_position: context - 1, sink: context, window: 0 };
                let at = KernelWindow { first_position: context - 1, sink: SINK, window: WINDOW };
                let tag = format!("b{batch} kv{kv_heads} T{}K", context / 1024);
                let reps = if context * batch * kv_heads > (1 << 24) { 3 } else { 20 };

                let kv_bytes = (batch * kv_heads * context * 2 * HEAD_DIM) as f64 * element;
                let dense = median_time(
                    || kernels::sparse_attention(&q, &k, &v, None, group, dense_at, scale).unwrap(),
                    reps,
                    9,
                );
                let signature_bytes = (batch * kv_heads * context * 4) as f64;
                let chosen = SINK + WINDOW + heavy;
                let per_head_rows = (batch * QUERY_HEADS * chosen * 2 * HEAD_DIM) as f64 * element;
                let shared_rows = (batch * kv_heads * chosen * 2 * HEAD_DIM) as f64 * element;

                let select = || {
                    let qs = mapping.query_signatures(q.clone()).unwrap();
                    kernels::top_k_by_signatures(&qs, &key_signatures, 1, at, heavy).unwrap()
                };
                let chosen_keys = select();
                let select_time = median_time(select, reps, 9);
                // The selection's two halves: the query MLP + sign packing, and the top-k alone.
                let query_hash_time = median_time(|| mapping.query_signatures(q.clone()).unwrap(), reps, 9);
                let query_signatures = mapping.query_signatures(q.clone()).unwrap();
                let top_k_time = median_time(
                    || {
                        kernels::top_k_by_signatures(&query_signatures, &key_signatures, 1, at, heavy)
                            .unwrap()
                    },
                    reps,
                    9,
                );
                let attend_time = median_time(
                    || kernels::sparse_attention(&q, &k, &v, Some(&chosen_keys), 1, at, scale).unwrap(),
                    reps,
                    9,
                );
                // Query hash + fused score/top-k + attention; `rows_group` query heads share a
                // selection (1: one per query head).
                let hash_decode = |rows_group: usize| {
                    let qs = mapping.query_signatures(q.clone()).unwrap();
                    let keys =
                        kernels::top_k_by_signatures(&qs, &key_signatures, rows_group, at, heavy).unwrap();
                    kernels::sparse_attention(&q, &k, &v, Some(&keys), rows_group, at, scale).unwrap()
                };
                let end_to_end = median_time(|| hash_decode(1), reps, 9);
                let shared = median_time(|| hash_decode(group), reps, 9);
                // Launches of one step (every kernel of the step is ours: no Burn op runs).
                let before = kernels::kernel_launches();
                drop(hash_decode(1));
                let step_launches = kernels::kernel_launches() - before;
                let end_to_end_label =
                    format!("hash end-to-end (per-query-head top-k, {step_launches} launches)");
                for (label, seconds, bytes) in [
                    ("dense decode (kernel, K/V read once per KV head)", dense, kv_bytes),
                    (end_to_end_label.as_str(), end_to_end, signature_bytes + per_head_rows),
                    ("  part: query hash + score + top-k", select_time, signature_bytes),
                    ("    of which query MLP + sign packing (one kernel)", query_hash_time, 0.0),
                    ("    of which score + top-k (histogram + select kernels)", top_k_time, signature_bytes),
                    ("  part: attend over chosen keys", attend_time, per_head_rows),
                    ("hash end-to-end (top-k shared per KV head)", shared, signature_bytes + shared_rows),
                ] {
                    rows.push(Row { name: format!("{tag} {label}"), seconds, bytes, baseline: dense });
                }
                eprintln!("done decode {tag}");
            }
        }
    }
    print_rows(
        "Decode, one token, 32 query heads, head_dim 128, heavy = context / 32, sink 16, window 64",
        &rows,
        peak,
    );
}

fn prefill(contexts: &[usize], peak: f64, with_burn_attention: bool) {
    let mut rows = Vec::new();
    let kv_heads = 8;
    for &context in contexts {
        let q = normal([1, QUERY_HEADS, context, HEAD_DIM]);
        let k = normal([1, kv_heads, context, HEAD_DIM]);
        let v = normal([1, kv_heads, context, HEAD_DIM]);
        let tag = format!("T{}K", context / 1024);
        if profile::enabled() {
            profile_prefill(&tag, &q, &k, &v);
            continue;
        }
        let element = q.dtype().size() as f64;
        let bytes = (context * (QUERY_HEADS * 2 + kv_heads * 2) * HEAD_DIM) as f64 * element;
        let samples = if context > 32 * 1024 { 1 } else { 3 };
        // The baseline: our dense causal attention with LSE (the tiled kernel on CubeCL).
        let dense = median_time(
            || dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::causal()).unwrap(),
            1,
            samples,
        );
        let flops = 2.0 * (context * context) as f64 * (QUERY_HEADS * HEAD_DIM) as f64;
        rows.push(Row {
            name: format!("{tag} dense: ours, tiled kernel with LSE ({:.1} TFLOP/s)", flops / dense / 1e12),
            seconds: dense,
            bytes,
            baseline: dense,
        });
        let group = QUERY_HEADS / kv_heads;
        if with_burn_attention {
            let flash = median_time(
                || {
                    let k = k.clone().repeat_dim(1, group);
                    let v = v.clone().repeat_dim(1, group);
                    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
                    attention(q.clone(), k, v, None, None, options)
                },
                1,
                samples,
            );
            rows.push(Row {
                name: format!("{tag} dense: burn attention (no LSE)"),
                seconds: flash,
                bytes,
                baseline: dense,
            });
            // Whether burn's attention computes what ours does (its times look too fast at some
            // sizes): the largest absolute difference of the outputs.
            let ours =
                dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::causal()).unwrap().output;
            let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
            let (k_all, v_all) = (k.clone().repeat_dim(1, group), v.clone().repeat_dim(1, group));
            let theirs = attention(q.clone(), k_all, v_all, None, None, options);
            let gap: f32 = (ours - theirs).abs().max().into_scalar().elem();
            println!("{tag}: max |burn attention - ours| = {gap:.4}");
        }
        let hip = HipAttentionConfig::new().init::<B>(&device()).unwrap();
        let hip_time = median_time(|| hip.forward(q.clone(), k.clone(), v.clone()).unwrap(), 1, samples);
        rows.push(Row {
            name: format!("{tag} HiP: mask + block kernel"),
            seconds: hip_time,
            bytes,
            baseline: dense,
        });
        let positions = QueryPositions { offset: 0, causal: true, kv_len: context };
        let mask_time =
            median_time(|| hip_mask(q.clone(), k.clone(), &positions, &hip.params).unwrap(), 1, samples);
        rows.push(Row { name: format!("{tag} HiP: mask alone"), seconds: mask_time, bytes, baseline: dense });
        let hyper = HyperAttentionConfig::new(HEAD_DIM).init::<B>(&device()).unwrap();
        let hyper_time = median_time(|| hyper.forward(q.clone(), k.clone(), v.clone()).unwrap(), 1, samples);
        rows.push(Row {
            name: format!("{tag} HyperAttention (sort kernel + tensor ops)"),
            seconds: hyper_time,
            bytes,
            baseline: dense,
        });
        eprintln!("done prefill {tag}");
    }
    print_rows("Prefill, causal, batch 1, 32 query heads, 8 KV heads, head_dim 128", &rows, peak);
}

/// Our dense kernel and burn's attention against the reference path on the host (NdArray,
/// f32) at a small size: the largest absolute output differences.
fn check_dense(context: usize, with_burn_attention: bool) {
    type Host = burn::backend::NdArray<f32>;
    let kv_heads = 8;
    let q = normal([1, QUERY_HEADS, context, HEAD_DIM]);
    let k = normal([1, kv_heads, context, HEAD_DIM]);
    let v = normal([1, kv_heads, context, HEAD_DIM]);
    let host =
        |t: &Tensor<B, 4>| Tensor::<Host, 4>::from_data(t.to_data().convert::<f32>(), &Default::default());
    let reference = dense_attention(host(&q), host(&k), host(&v), &AttnOptions::causal()).unwrap().output;
    let ours = dense_attention(q.clone(), k.clone(), v.clone(), &AttnOptions::causal()).unwrap().output;
    let gap = |t: Tensor<B, 4>| -> f32 { (host(&t) - reference.clone()).abs().max().into_scalar() };
    println!("T{context}: max |ours - host reference| = {:.4}", gap(ours));
    if with_burn_attention {
        let group = QUERY_HEADS / kv_heads;
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
        let theirs = attention(q, k.repeat_dim(1, group), v.repeat_dim(1, group), None, None, options);
        println!("T{context}: max |burn attention - host reference| = {:.4}", gap(theirs));
    }
}

fn list(args: &[String], flag: &str, default: &[usize]) -> Vec<usize> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(|x| x.parse().expect("a number")).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// With `BSA_PROFILE=1`: where one call of HiP and of HyperAttention spends its time, by
/// the profile spans of their parts (each span synchronises the device, so nothing is timed
/// as a whole; a first call of each warms up).
fn profile_prefill(tag: &str, q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>) {
    let hip = HipAttentionConfig::new().init::<B>(&device()).unwrap();
    let hyper = HyperAttentionConfig::new(HEAD_DIM).init::<B>(&device()).unwrap();
    let hip_call = || hip.forward(q.clone(), k.clone(), v.clone()).unwrap();
    let hyper_call = || hyper.forward(q.clone(), k.clone(), v.clone()).unwrap();
    for (name, call) in [("HiP", &hip_call as &dyn Fn() -> _), ("HyperAttention", &hyper_call)] {
        call();
        profile::take();
        let start = Instant::now();
        call();
        let _ = B::sync(&device());
        let seconds = start.elapsed().as_secs_f64();
        println!("\n{tag} {name}, one call with synchronised spans: {:.1} ms", seconds * 1e3);
        print!("{}", profile::table(&profile::take()));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !B::supports_dtype(&device(), burn::tensor::DType::F16) {
        eprintln!("{} has no f16 on this device: the bench runs in f16 only", B::name(&device()));
        std::process::exit(2);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (contexts, prefills) =
        if quick { (vec![2048], vec![1024]) } else { (vec![8192, 32768, 131072], vec![32768, 131072]) };
    let contexts = list(&args, "--contexts", &contexts);
    let prefills = list(&args, "--prefill", &prefills);
    let batches = list(&args, "--batches", &[1, 8]);
    let kv_heads = list(&args, "--kv-heads", &[8, 32]);
    let peak = peak_bandwidth(if quick { 22 } else { 29 });
    println!("backend {}, measured bandwidth {peak:.0} GB/s (elementwise pass)", B::name(&device()));
    let dtype = normal([1, 1, 1, 1]).dtype();
    println!(
        "prefill on tensor cores ({dtype:?}): {}",
        kernels::prefill_on_tensor_cores::<B>(&device(), dtype)
    );
    if !args.iter().any(|a| a == "--no-decode") {
        decode(&batches, &kv_heads, &contexts, peak);
    }
    if !args.iter().any(|a| a == "--no-prefill") {
        // burn's own attention is timed beside ours (not a baseline: its outputs are wrong here)
        // unless `--no-burn-attention`.
        let with_burn_attention = !args.iter().any(|a| a == "--no-burn-attention");
        check_dense(if quick { 256 } else { 2048 }, with_burn_attention);
        prefill(&prefills, peak, with_burn_attention);
    }
}
