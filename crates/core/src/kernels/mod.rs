//! Kernel dispatch: the CubeCL kernels of `burn-sparse-attn-kernels` when the tensors live on
//! a CubeCL runtime this crate was built for (feature `wgpu`: [`burn::backend::Wgpu`],
//! feature `cuda`: [`burn::backend::Cuda`]), the reference path otherwise.
//!
//! The choice is made from the backend type alone, so modules stay generic over
//! `B: Backend` and a user gets the kernels by picking the backend, with no trait bound to
//! add to their own models. Every function here returns `None` when no kernel applies; the
//! caller then runs its reference code. Autodiff backends take the reference path (it is
//! differentiable; the kernels have no backward).

/// Calls `$f::<B, R>(args)` with `R` the CubeCL runtime of `B`, or gives `None`.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
macro_rules! on_runtime {
    ($B:ty, $f:ident ( $($arg:expr),* )) => {
        match cube::runtime_of::<$B>() {
            #[cfg(feature = "wgpu")]
            Some(cube::Runtime::Wgpu) => cube::$f::<$B, cube::WgpuRuntime>($($arg),*),
            #[cfg(feature = "cuda")]
            Some(cube::Runtime::Cuda) => cube::$f::<$B, cube::CudaRuntime>($($arg),*),
            None => None,
        }
    };
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube;

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::attend::AttnOutput;

/// Whether `B` runs the CubeCL kernels: a non-fused, non-autodiff CubeCL backend whose
/// runtime this crate was built for (features `wgpu`, `cuda`).
pub fn kernels_active<B: Backend>() -> bool {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        cube::runtime_of::<B>().is_some()
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    {
        false
    }
}

/// Where the kernels' queries sit and which keys every query sees.
#[derive(Debug, Clone, Copy)]
pub struct KernelWindow {
    /// Position of query 0 in the context.
    pub first_position: usize,
    /// Keys at the start of the context every query sees.
    pub sink: usize,
    /// Most recent keys every query sees.
    pub window: usize,
}

/// Packs sign bits, see [`crate::hash::pack_signs`].
pub fn pack_signs<B: Backend>(_codes: &Tensor<B, 4>) -> Option<Tensor<B, 4, Int>> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        on_runtime!(B, pack_on(_codes))
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    None
}

/// Top `k` keys per query row outside the sink and window, i32 `[batch, heads, query_len,
/// k]` with `-1` padding, by float scores `[batch, heads, query_len, kv_len]`.
pub fn top_k_by_scores<B: Backend>(
    _scores: &Tensor<B, 4>,
    _at: KernelWindow,
    _k: usize,
) -> Option<Tensor<B, 4, Int>> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        on_runtime!(B, scores_on(_scores, _at, _k))
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    None
}

/// Top `k` keys per query by matching signature bits (query signatures
/// `[batch, query_heads, query_len, words]`, key signatures
/// `[batch, signature_heads, kv_len, words]`), summed over `group` query heads per row.
pub fn top_k_by_signatures<B: Backend>(
    _query: &Tensor<B, 4, Int>,
    _key: &Tensor<B, 4, Int>,
    _group: usize,
    _at: KernelWindow,
    _k: usize,
) -> Option<Tensor<B, 4, Int>> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        on_runtime!(B, signatures_on(_query, _key, _group, _at, _k))
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    None
}

/// Attention of each query over the sink, the window and its `heavy` keys (i32
/// `[batch, query_heads / group, query_len, n]`, `-1` for none).
pub fn sparse_attention<B: Backend>(
    _q: &Tensor<B, 4>,
    _k: &Tensor<B, 4>,
    _v: &Tensor<B, 4>,
    _heavy: Option<&Tensor<B, 4, Int>>,
    _group: usize,
    _at: KernelWindow,
    _scale: f64,
) -> Option<AttnOutput<B>> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        on_runtime!(B, attend_on(_q, _k, _v, _heavy, _group, _at, _scale))
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    None
}
