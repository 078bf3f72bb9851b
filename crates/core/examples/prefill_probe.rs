//! Diagnostic probe of CUDA's f16 prefill kernel (`dense_attention`, whichever tensor-core
//! kernel is selected) on structured inputs, for finding what a failing kernel gets wrong:
//! zero queries (uniform weights: the V path and the sums), one-hot values (the output is the
//! probability matrix: the score path), random inputs; one head, then GQA. Prints, per case,
//! the max error against the host reference and, where it is off, a grid of max errors per
//! 8 x 8 block of the first 64 rows and columns.
//!
//! `cargo build --release -p burn-sparse-attn-core --features cuda --example prefill_probe`
//! (add `mma-prefill` for the register-MMA kernel), then run the binary on the GPU machine.

use burn::tensor::{backend::Backend, Distribution, Tensor, TensorData};
use burn_sparse_attn_core::{dense_attention, AttnOptions};

type B = burn::backend::Cuda<burn::tensor::f16>;
type H = burn::backend::NdArray;

fn host(t: &Tensor<B, 4>) -> Tensor<H, 4> {
    Tensor::from_data(t.to_data().convert::<f32>(), &Default::default())
}

fn probe(name: &str, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, options: &AttnOptions) {
    let expected = dense_attention(host(&q), host(&k), host(&v), options).unwrap();
    let got = dense_attention(q, k, v, options).unwrap();
    let [_, _, t, d] = expected.output.dims();
    let e: Vec<f32> = expected.output.to_data().convert::<f32>().to_vec().unwrap();
    let g: Vec<f32> = got.output.to_data().convert::<f32>().to_vec().unwrap();
    let el: Vec<f32> = expected.lse.to_data().convert::<f32>().to_vec().unwrap();
    let gl: Vec<f32> = got.lse.to_data().convert::<f32>().to_vec().unwrap();
    let err: Vec<f32> = e.iter().zip(&g).map(|(a, b)| (a - b).abs()).collect();
    let (at, worst) =
        err.iter()
            .copied()
            .enumerate()
            .fold((0, 0.0f32), |m, (i, x)| if x > m.1 || x.is_nan() { (i, x) } else { m });
    let lse_worst =
        el.iter()
            .zip(&gl)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, |m, x| if x > m || x.is_nan() { x } else { m });
    println!(
        "{name}: max |err| {worst:.4} at row {} col {} (expected {:.4}, got {:.4}); lse max |err| {lse_worst:.4} (row 0: {:.4} vs {:.4}); off>0.02: {}",
        at / d,
        at % d,
        e[at],
        g[at],
        el[0],
        gl[0],
        err.iter().filter(|&&x| x > 0.02 || x.is_nan()).count()
    );
    if worst > 0.02 || worst.is_nan() {
        for rb in 0..t.min(64).div_ceil(8) {
            let line: Vec<String> = (0..d.min(64).div_ceil(8))
                .map(|cb| {
                    let mut m = 0.0f32;
                    for r in rb * 8..(rb * 8 + 8).min(t) {
                        for c in cb * 8..(cb * 8 + 8).min(d) {
                            m = m.max(err[r * d + c]);
                        }
                    }
                    format!("{m:5.2}")
                })
                .collect();
            println!("  rows {:3}: {}", rb * 8, line.join(" "));
        }
        let row = at / d;
        println!("  row {row} expected {:?}", &e[row * d..row * d + 8.min(d)]);
        println!("  row {row} got      {:?}", &g[row * d..row * d + 8.min(d)]);
    }
}

fn main() {
    let device: burn::tensor::Device<B> = Default::default();
    B::seed(&device, 7);
    for (t, d) in [(64usize, 64usize), (64, 128), (128, 128), (300, 128), (64, 64)] {
        for causal in [false, true] {
            let options = if causal { AttnOptions::causal() } else { AttnOptions::non_causal() };
            let tag = format!("T{t} d{d} {}", if causal { "causal" } else { "full" });
            let rand = |s| {
                Tensor::<B, 4>::random([1, 1, t, d], Distribution::Normal(0.0, 1.0), &device).mul_scalar(s)
            };
            let (q, k, v) = (rand(1.0), rand(1.0), rand(1.0));
            probe(&format!("{tag} zero q"), q.zeros_like(), k.clone(), v.clone(), &options);
            let one_hot: Vec<f32> = (0..t * d).map(|i| if i / d == i % d { 1.0 } else { 0.0 }).collect();
            let v_hot = Tensor::<B, 4>::from_data(TensorData::new(one_hot, [1, 1, t, d]), &device);
            probe(&format!("{tag} one-hot v"), q.clone(), k.clone(), v_hot, &options);
            probe(&format!("{tag} random"), q, k, v, &options);
        }
    }
    // GQA and two heads: a KV head's query heads side by side.
    let rand = |h, t| Tensor::<B, 4>::random([1, h, t, 128], Distribution::Normal(0.0, 1.0), &device);
    probe("GQA 4/1 T200", rand(4, 200), rand(1, 200), rand(1, 200), &AttnOptions::causal());
    probe("GQA 4/2 T1000 q333", rand(4, 333), rand(2, 1000), rand(2, 1000), &AttnOptions::causal());
}
