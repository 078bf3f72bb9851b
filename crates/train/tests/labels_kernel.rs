//! The labels' CubeCL path (the oracle's top-k kernel and a scatter, under wgpu) picks the
//! same keys as the reference (burn's `topk`) on ndarray, on random logits of odd sizes whose
//! first queries have fewer eligible keys than `top_k`, or none.

use burn::backend::{NdArray, Wgpu};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use burn_sparse_attn_core::kernels::{kernel_path, KernelPath};
use burn_sparse_attn_core::rng::SplitMix64;
use burn_sparse_attn_train::labels::{labels_at, LabelConfig};

fn labels<B: Backend>(config: &LabelConfig, logits: &[f32], dims: [usize; 4], start: usize) -> Vec<bool> {
    let device = Default::default();
    let logits = Tensor::<B, 4>::from_data(TensorData::new(logits.to_vec(), dims), &device);
    let marks = labels_at(config, logits, start).0.int().into_data().convert::<i32>();
    marks.to_vec::<i32>().unwrap().into_iter().map(|m| m != 0).collect()
}

#[test]
fn kernel_labels_equal_the_reference() {
    assert_eq!(kernel_path::<Wgpu>(), KernelPath::CubeCl, "wgpu must take the kernel path");
    assert_eq!(kernel_path::<NdArray>(), KernelPath::Reference);
    let mut rng = SplitMix64::new(17);
    for (heads, count, start, top_k) in [(3, 37, 10, 11), (1, 5, 290, 32), (2, 64, 0, 7)] {
        let end = start + count;
        let dims = [1, heads, count, end];
        let logits: Vec<f32> = (0..heads * count * end).map(|_| rng.normal() * 3.0).collect();
        let config = LabelConfig::new().with_sink(5).with_window(9).with_top_k(top_k);
        let want = labels::<NdArray>(&config, &logits, dims, start);
        let got = labels::<Wgpu>(&config, &logits, dims, start);
        assert!(want.iter().any(|&x| x), "no label at all: a vacuous case");
        for (row, (w, g)) in want.chunks(end).zip(got.chunks(end)).enumerate() {
            assert_eq!(w, g, "heads {heads} start {start} top_k {top_k}: row {row} differs");
        }
    }
}
