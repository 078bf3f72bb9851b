//! The CubeCL side of the dispatch: moving Burn tensors to and from `CubeTensor`s, and
//! each kernel's fit check (`supports`, next to the kernel) before it is launched.

use std::any::{Any, TypeId};

use burn::tensor::{backend::Backend, DType, Int, Tensor, TensorPrimitive};
use burn_sparse_attn_kernels::{self as kernels, burn_cubecl::tensor::CubeTensor, burn_cubecl::CubeRuntime};

use super::{BlockSizes, KernelWindow};
use crate::attend::AttnOutput;
use crate::hash::{HashActivation, HeadwiseMlp};

/// The CubeCL runtimes this crate was built for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Runtime {
    #[cfg(feature = "wgpu")]
    Wgpu,
    #[cfg(feature = "cuda")]
    Cuda,
}

#[cfg(feature = "wgpu")]
pub(super) type WgpuRuntime = kernels::cubecl::wgpu::WgpuRuntime;
#[cfg(feature = "cuda")]
pub(super) type CudaRuntime = kernels::cubecl::cuda::CudaRuntime;

fn is<B: Backend, R: CubeRuntime>() -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<CubeTensor<R>>()
        && TypeId::of::<B::IntTensorPrimitive>() == TypeId::of::<CubeTensor<R>>()
}

/// The runtime whose `CubeTensor`s are `B`'s primitives, if any.
pub(super) fn runtime_of<B: Backend>() -> Option<Runtime> {
    #[cfg(feature = "wgpu")]
    if is::<B, WgpuRuntime>() {
        return Some(Runtime::Wgpu);
    }
    #[cfg(feature = "cuda")]
    if is::<B, CudaRuntime>() {
        return Some(Runtime::Cuda);
    }
    None
}

fn cast<From: 'static, To: 'static>(value: From) -> To {
    *(Box::new(value) as Box<dyn Any>).downcast::<To>().expect("the runtime was checked")
}

fn float_in<B: Backend, R: CubeRuntime, const D: usize>(t: &Tensor<B, D>) -> Option<CubeTensor<R>> {
    super::takes_float(t.dtype()).then(|| cast(t.clone().into_primitive().tensor()))
}

fn int_in<B: Backend, R: CubeRuntime, const D: usize>(t: &Tensor<B, D, Int>) -> Option<CubeTensor<R>> {
    super::takes_int(t.dtype()).then(|| cast(t.clone().into_primitive()))
}

fn float_out<B: Backend, R: CubeRuntime, const D: usize>(t: CubeTensor<R>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(t)))
}

fn int_out<B: Backend, R: CubeRuntime, const D: usize>(t: CubeTensor<R>) -> Tensor<B, D, Int> {
    Tensor::from_primitive(cast(t))
}

/// Q, K and V as `CubeTensor`s, if their float dtypes are supported and equal.
fn qkv_in<B: Backend, R: CubeRuntime>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
) -> Option<(CubeTensor<R>, CubeTensor<R>, CubeTensor<R>)> {
    if q.dtype() != k.dtype() || q.dtype() != v.dtype() {
        return None;
    }
    Some((float_in::<B, R, 4>(q)?, float_in::<B, R, 4>(k)?, float_in::<B, R, 4>(v)?))
}

fn attention_out<B: Backend, R: CubeRuntime>(out: kernels::SparseAttentionOutput<R>) -> AttnOutput<B> {
    AttnOutput { output: float_out::<B, R, 4>(out.output), lse: float_out::<B, R, 3>(out.lse) }
}

/// The path of a backend on runtime `R` (the dispatch macro calls every operation with `B`
/// and `R`, this one needs neither).
#[allow(clippy::extra_unused_type_parameters)]
pub(super) fn path_on<B: Backend, R: CubeRuntime>() -> Option<super::KernelPath> {
    Some(super::KernelPath::CubeCl)
}

pub(super) fn pack_on<B: Backend, R: CubeRuntime>(codes: &Tensor<B, 4>) -> Option<Tensor<B, 4, Int>> {
    Some(int_out::<B, R, 4>(kernels::pack_signs(float_in::<B, R, 4>(codes)?)))
}

pub(super) fn scores_on<B: Backend, R: CubeRuntime>(
    scores: &Tensor<B, 4>,
    at: KernelWindow,
    k: usize,
) -> Option<Tensor<B, 4, Int>> {
    let scores = float_in::<B, R, 4>(scores)?;
    Some(int_out::<B, R, 4>(kernels::top_k(scores, at.first_position, at.sink, at.window, k)))
}

pub(super) fn signatures_on<B: Backend, R: CubeRuntime>(
    query: &Tensor<B, 4, Int>,
    key: &Tensor<B, 4, Int>,
    group: usize,
    at: KernelWindow,
    k: usize,
) -> Option<Tensor<B, 4, Int>> {
    if !kernels::match_top_k::supports(group, query.dims()[3]) {
        return None;
    }
    let (query, key) = (int_in::<B, R, 4>(query)?, int_in::<B, R, 4>(key)?);
    Some(int_out::<B, R, 4>(kernels::match_top_k(
        query,
        key,
        group,
        at.first_position,
        at.sink,
        at.window,
        k,
    )))
}

pub(super) fn hash_signatures_on<B: Backend, R: CubeRuntime>(
    x: &Tensor<B, 4>,
    mlp: &HeadwiseMlp<B>,
) -> Option<Tensor<B, 4, Int>> {
    use kernels::hash_signatures::{supports, Activation, Linear};
    let layers = &mlp.layers;
    let [heads, d_input, first_out] = layers.first()?.weight.dims();
    let bits = layers.last()?.weight.dims()[2];
    let hidden = if layers.len() == 1 { bits } else { first_out };
    let input_heads = x.dims()[1];
    if !supports(layers.len(), d_input, hidden, bits)
        || x.dims()[3] != d_input
        || input_heads == 0
        || !heads.is_multiple_of(input_heads)
        || layers.iter().any(|l| l.weight.val().dtype() != x.dtype())
    {
        return None;
    }
    let linears = layers
        .iter()
        .map(|l| {
            Some(Linear {
                weight: float_in::<B, R, 3>(&l.weight.val())?,
                bias: float_in::<B, R, 2>(&l.bias.val())?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let activation = match mlp.activation {
        HashActivation::Silu => Activation::Silu,
        HashActivation::Relu => Activation::Relu,
        HashActivation::Gelu => Activation::Gelu,
        HashActivation::Tanh => Activation::Tanh,
    };
    Some(int_out::<B, R, 4>(kernels::hash_signatures(float_in::<B, R, 4>(x)?, &linears, activation)))
}

pub(super) fn attend_on<B: Backend, R: CubeRuntime>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    heavy: Option<(&Tensor<B, 4, Int>, usize)>,
    group: usize,
    at: KernelWindow,
    scale: f64,
) -> Option<AttnOutput<B>> {
    let (heavy, page_size) = match heavy {
        Some((h, page_size)) => (Some(int_in::<B, R, 4>(h)?), page_size),
        None => (None, 1),
    };
    if !kernels::sparse_attention::supports(q.dims()[3], v.dims()[3], group, v.dtype()) {
        return None;
    }
    let keys = kernels::KeyList { sink: at.sink, window: at.window, heavy, page_size, group };
    let (q, k, v) = qkv_in::<B, R>(q, k, v)?;
    Some(attention_out(kernels::sparse_attention(q, k, v, keys, at.first_position, scale as f32)))
}

pub(super) fn blocks_on<B: Backend, R: CubeRuntime>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    blocks: Option<(&Tensor<B, 4, Int>, BlockSizes)>,
    at: KernelWindow,
    scale: f64,
) -> Option<AttnOutput<B>> {
    let (blocks, sizes) = match blocks {
        Some((b, sizes)) => (Some(int_in::<B, R, 4>(b)?), sizes),
        None => (None, BlockSizes { query_block: 1, key_block: 1 }),
    };
    let keys = kernels::BlockKeys {
        sink: at.sink,
        window: at.window,
        blocks,
        block_size_k: sizes.key_block,
        query_block: sizes.query_block,
    };
    let (q, k, v) = qkv_in::<B, R>(q, k, v)?;
    Some(attention_out(kernels::block_attention(q, k, v, keys, at.first_position, scale as f32)))
}

pub(super) fn order_on<B: Backend, R: CubeRuntime>(
    keys: &Tensor<B, 3, Int>,
    buckets: usize,
) -> Option<Tensor<B, 3, Int>> {
    if !kernels::counting_sort::supports(buckets) {
        return None;
    }
    Some(int_out::<B, R, 3>(kernels::counting_sort_order(int_in::<B, R, 3>(keys)?, buckets)))
}

pub(super) fn child_scores_on<B: Backend, R: CubeRuntime>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    key_positions: &Tensor<B, 5, Int>,
    block_size_q: usize,
    stride_q: usize,
) -> Option<Tensor<B, 4>> {
    if q.dtype() != k.dtype() || !kernels::child_scores::supports(block_size_q, stride_q, q.dims()[3]) {
        return None;
    }
    let floor = super::lowest_finite(q.dtype());
    let scores = kernels::child_scores(
        float_in::<B, R, 4>(q)?,
        float_in::<B, R, 4>(k)?,
        int_in::<B, R, 5>(key_positions)?,
        block_size_q,
        stride_q,
        floor,
    );
    Some(float_out::<B, R, 4>(scores))
}

pub(super) fn tensor_cores_on<B: Backend, R: CubeRuntime>(device: &B::Device, dtype: DType) -> Option<bool> {
    let device: &R::Device = (device as &dyn Any).downcast_ref()?;
    let client = R::client(device);
    Some(
        kernels::mma_attention::selected(&client, dtype)
            || kernels::tensor_core_attention::available(&client, dtype),
    )
}
