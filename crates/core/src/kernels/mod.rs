//! Kernel dispatch: the CubeCL kernels of `burn-sparse-attn-kernels` when the tensors live on
//! a CubeCL runtime this crate was built for (feature `wgpu`: [`burn::backend::Wgpu`],
//! feature `cuda`: [`burn::backend::Cuda`]), the reference path otherwise.
//!
//! The choice is made from the backend type alone, so modules stay generic over
//! `B: Backend` and a user gets the kernels by picking the backend, with no trait bound to
//! add to their own models. Every function here returns `None` when no kernel applies; the
//! caller then runs its reference code. Autodiff backends take the reference path (it is
//! differentiable; the kernels have no backward).

/// Calls `cube::$f::<B, R>(args)` with `R` the CubeCL runtime of `B`, or gives `None`: the
/// one place that knows which runtimes this build has.
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

/// Without a CubeCL runtime in the build every operation takes the reference path.
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
macro_rules! on_runtime {
    ($B:ty, $f:ident ( $($arg:expr),* )) => {{
        let _ = ($($arg,)*);
        None
    }};
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube;

use burn::tensor::{backend::Backend, DType, Element, Int, Tensor};

use crate::attend::AttnOutput;
use crate::hash::HeadwiseMlp;

/// The path a backend takes through every operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    /// Plain Burn tensor ops: every backend, autodiff included (the kernels have no
    /// backward), and the ground truth of the tests.
    Reference,
    /// The CubeCL kernels of `burn-sparse-attn-kernels`, on a non-fused, non-autodiff
    /// CubeCL backend whose runtime this crate was built for (features `wgpu`, `cuda`).
    CubeCl,
}

/// The path `B` takes, from its type alone.
pub fn kernel_path<B: Backend>() -> KernelPath {
    on_runtime!(B, path_on()).unwrap_or(KernelPath::Reference)
}

/// Whether `B` runs the CubeCL kernels (see [`KernelPath`]).
pub fn kernels_active<B: Backend>() -> bool {
    kernel_path::<B>() == KernelPath::CubeCl
}

/// Kernels launched so far by this crate's CubeCL kernels (Burn's own ops not counted):
/// read it around a step to count its launches.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub fn kernel_launches() -> u64 {
    burn_sparse_attn_kernels::launches()
}

/// Kernels launched so far: none without a CubeCL runtime in the build.
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
pub fn kernel_launches() -> u64 {
    0
}

/// Whether prefill attention (dense and block-sparse) of `dtype` runs on tensor cores on
/// `device` (CUDA f16 or bf16, wgpu's SPIR-V with cooperative matrices; see
/// `burn_sparse_attn_kernels::tensor_core_attention`).
pub fn prefill_on_tensor_cores<B: Backend>(device: &B::Device, dtype: DType) -> bool {
    on_runtime!(B, tensor_cores_on(device, dtype)).unwrap_or(false)
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
pub fn pack_signs<B: Backend>(codes: &Tensor<B, 4>) -> Option<Tensor<B, 4, Int>> {
    on_runtime!(B, pack_on(codes))
}

/// Packed signatures `[batch, heads, len, bits / 32]` of `mlp` (its `heads` heads) applied
/// to `x: [batch, input_heads, len, d_input]`, the MLP and the packing in one launch; head
/// `h` reads input head `h / (heads / input_heads)`. Only for a few rows per head (decode):
/// longer inputs take the batched matmuls of the reference path.
pub fn hash_signatures<B: Backend>(x: &Tensor<B, 4>, mlp: &HeadwiseMlp<B>) -> Option<Tensor<B, 4, Int>> {
    /// Rows (batch x length) per head up to which one launch beats the matmuls.
    const MOST_ROWS: usize = 256;
    let [batch, _, len, _] = x.dims();
    if batch * len > MOST_ROWS {
        return None;
    }
    on_runtime!(B, hash_signatures_on(x, mlp))
}

/// Top `k` keys per query row outside the sink and window, i32 `[batch, heads, query_len,
/// k]` with `-1` padding, by float scores `[batch, heads, query_len, kv_len]`.
pub fn top_k_by_scores<B: Backend>(
    scores: &Tensor<B, 4>,
    at: KernelWindow,
    k: usize,
) -> Option<Tensor<B, 4, Int>> {
    on_runtime!(B, scores_on(scores, at, k))
}

/// Top `k` keys per query by matching signature bits (query signatures
/// `[batch, query_heads, query_len, words]`, key signatures
/// `[batch, signature_heads, kv_len, words]`), summed over `group` query heads per row.
pub fn top_k_by_signatures<B: Backend>(
    query: &Tensor<B, 4, Int>,
    key: &Tensor<B, 4, Int>,
    group: usize,
    at: KernelWindow,
    k: usize,
) -> Option<Tensor<B, 4, Int>> {
    on_runtime!(B, signatures_on(query, key, group, at, k))
}

/// Attention of each query over the sink, the window and its `heavy` keys (i32
/// `[batch, query_heads / group, query_len, n]`, `-1` for none).
pub fn sparse_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    heavy: Option<&Tensor<B, 4, Int>>,
    group: usize,
    at: KernelWindow,
    scale: f64,
) -> Option<AttnOutput<B>> {
    on_runtime!(B, attend_on(q, k, v, heavy.map(|h| (h, 1)), group, at, scale))
}

/// Attention of each query over the sink, the window and the keys of its chosen pages
/// (i32 `[batch, query_heads, query_len, n]`, `-1` for none; page `p` holds keys
/// `p * page_size ..`, of which those between the sink and the window are attended).
pub fn sparse_attention_in_pages<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    pages: &Tensor<B, 4, Int>,
    page_size: usize,
    at: KernelWindow,
    scale: f64,
) -> Option<AttnOutput<B>> {
    on_runtime!(B, attend_on(q, k, v, Some((pages, page_size)), 1, at, scale))
}

/// Causal attention of tiles of queries over the sink, each query's window and, optionally,
/// the key blocks chosen per query block (prefill; see
/// [`burn_sparse_attn_kernels::block_attention`] on the CubeCL side).
///
/// - `q`: `[batch, query_heads, query_len, head_dim]` at positions `at.first_position..`
/// - `k`, `v`: `[batch, kv_heads, kv_len, head_dim | value_dim]`
/// - `blocks`: first key of each chosen key block, `[batch, query_heads, query_blocks, n]`
///   with `-1` for none; query block `i` holds queries `i * query_block ..`; blocks of a
///   query block must not overlap each other nor the sink. `at.window >= kv_len` and no
///   blocks is dense causal attention.
pub fn block_sparse_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    blocks: Option<(&Tensor<B, 4, Int>, BlockSizes)>,
    at: KernelWindow,
    scale: f64,
) -> Option<AttnOutput<B>> {
    on_runtime!(B, blocks_on(q, k, v, blocks, at, scale))
}

/// Whether [`block_sparse_attention`] runs for `q`, `k` and `v` on `B` rather than answering
/// `None`: the kernels are active, the three share a float dtype the kernels take, and `B`'s
/// integers (the blocks) are the kernels' i32. Callers size their chunks by it: the
/// reference path they fall back to needs per-query key lists, the kernel does not.
pub fn block_sparse_applies<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>) -> bool {
    kernels_active::<B>()
        && q.dtype() == k.dtype()
        && q.dtype() == v.dtype()
        && takes_float(q.dtype())
        && takes_int(<B::IntElem as Element>::dtype())
}

/// Float dtypes the kernels read and write.
fn takes_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

/// The kernels' integer dtype (indices, blocks, signatures).
fn takes_int(dtype: DType) -> bool {
    dtype == DType::I32
}

/// The unit sizes of a block mask.
#[derive(Debug, Clone, Copy)]
pub struct BlockSizes {
    /// Queries that share one row of the mask.
    pub query_block: usize,
    /// Keys per chosen block.
    pub key_block: usize,
}

/// The stable ascending order of each row of `keys: [batch, heads, len]`, whose values lie in
/// `0..buckets`, by a counting sort on the device (no host sort).
pub fn counting_order<B: Backend>(keys: &Tensor<B, 3, Int>, buckets: usize) -> Option<Tensor<B, 3, Int>> {
    on_runtime!(B, order_on(keys, buckets))
}

/// HiP's child scores of one mask round, fused: for each query block, the max of `q . k`
/// over its representative queries (every `stride_q`-th of `block_size_q`) and each child's
/// representative keys.
///
/// - `q`: `[batch, query_heads, query_len, head_dim]`, `k`: `[batch, kv_heads, kv_len,
///   head_dim]`
/// - `key_positions`: `[batch, query_heads, query_blocks, children, keys_per_child]`, `-1`
///   where a key takes no part
/// - returns `[batch, query_heads, query_blocks, children]`, [`lowest_finite`] for a child
///   without real keys
pub fn hip_child_scores<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    key_positions: &Tensor<B, 5, Int>,
    block_size_q: usize,
    stride_q: usize,
) -> Option<Tensor<B, 4>> {
    on_runtime!(B, child_scores_on(q, k, key_positions, block_size_q, stride_q))
}

/// Whether [`hip_child_scores`] runs on `B` for these sizes (then HiP's mask rounds gather no
/// key rows of their own).
pub fn hip_child_scores_apply<B: Backend>(block_size_q: usize, stride_q: usize, head_dim: usize) -> bool {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    let fits = burn_sparse_attn_kernels::child_scores::supports(block_size_q, stride_q, head_dim);
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    let fits = {
        let _ = (block_size_q, stride_q, head_dim);
        false
    };
    kernels_active::<B>() && fits
}

/// The lowest finite value of a float dtype (f32's for anything else).
pub fn lowest_finite(dtype: DType) -> f32 {
    match dtype {
        DType::F16 => f32::from(burn::tensor::f16::MIN),
        DType::BF16 => f32::from(burn::tensor::bf16::MIN),
        _ => f32::MIN,
    }
}
