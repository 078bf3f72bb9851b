//! HiP's mask round: the score of every child interval of every query block, the max of
//! `q . k` over the block's strided representative queries and the child's representative
//! keys, fused (no gathered key copies, no logits tensor).
//!
//! One cube per (batch, head, query block): the representative queries sit in shared
//! memory; a unit per child reads each representative key row once (16-byte vectors) and
//! keeps the dot products with every representative query in registers. Where the runtime
//! has tensor cores (CUDA, f16/bf16) and the sizes fit, [`crate::tensor_core_child_scores`]
//! runs instead.

use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::prelude::*;

use crate::grid::cube_count;
use crate::vectors::row_vector_width;
use crate::{tensor_core_attention, tensor_core_child_scores};

/// Units per cube.
const UNITS: usize = 128;

/// Sizes the kernel reads.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct ChildGeometry {
    pub(crate) query_heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) query_len: usize,
    pub(crate) kv_len: usize,
    pub(crate) query_blocks: usize,
    pub(crate) block_size_q: usize,
    pub(crate) stride_q: usize,
    pub(crate) children: usize,
    pub(crate) keys_per_child: usize,
}

#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
fn child_scores_kernel<F: Float, N: Size>(
    q: &Tensor<F>,
    k: &Tensor<Vector<F, N>>,
    key_positions: &Tensor<i32>,
    scores: &mut Tensor<F>,
    geo: ChildGeometry,
    row_count: usize,
    floor: f32,
    #[comptime] queries: usize,
    #[comptime] head_dim: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= row_count {
        terminate!();
    }
    let unit = UNIT_POS as usize;
    let block = row % geo.query_blocks;
    let head = (row / geo.query_blocks) % geo.query_heads;
    let b = row / (geo.query_blocks * geo.query_heads);
    let kv_head = head / (geo.query_heads / geo.kv_heads);
    let kv_base = (b * geo.kv_heads + kv_head) * geo.kv_len;
    let q_base = (b * geo.query_heads + head) * geo.query_len;
    let first_query = block * geo.block_size_q;

    let mut q_rep = SharedMemory::<f32>::new(queries * head_dim);
    for i in range_stepped(unit, queries * head_dim, UNITS) {
        let t = first_query + (i / head_dim) * geo.stride_q;
        let mut x = 0.0f32;
        if t < geo.query_len {
            x = f32::cast_from(q[(q_base + t) * head_dim + i % head_dim]);
        }
        q_rep[i] = x;
    }
    sync_cube();

    // Representative queries past the end of the queries take no part.
    let mut real_queries = 0usize;
    if first_query < geo.query_len {
        real_queries = (geo.query_len - first_query + geo.stride_q - 1) / geo.stride_q;
    }
    let mut dots = Array::<f32>::new(queries);
    for child in range_stepped(unit, geo.children, UNITS) {
        let mut best = floor;
        for r in 0..geo.keys_per_child {
            let key = key_positions[(row * geo.children + child) * geo.keys_per_child + r];
            if key >= 0 {
                #[unroll]
                for u in 0..queries {
                    dots[u] = 0.0f32;
                }
                let width = k.vector_size();
                let k_base = (kv_base + usize::cast_from(key)) * (head_dim / width);
                for c in 0..head_dim / width {
                    let chunk = k[k_base + c];
                    #[unroll]
                    for u in 0..queries {
                        let mut dot = dots[u];
                        #[unroll]
                        for i in 0..width {
                            dot += q_rep[u * head_dim + c * width + i] * f32::cast_from(chunk[i]);
                        }
                        dots[u] = dot;
                    }
                }
                #[unroll]
                for u in 0..queries {
                    if u < real_queries {
                        best = max(best, dots[u]);
                    }
                }
            }
        }
        scores[row * geo.children + child] = F::cast_from(best);
    }
}

/// f32 values of representative queries that fit the kernel's shared memory (16 KiB).
const MAX_SHARED_QUERY_VALUES: usize = 4096;

/// Whether [`child_scores`] runs these sizes: its representative queries
/// (`block_size_q / stride_q` of `head_dim` values) must fit its shared memory.
pub fn supports(block_size_q: usize, stride_q: usize, head_dim: usize) -> bool {
    stride_q > 0
        && block_size_q.is_multiple_of(stride_q)
        && (block_size_q / stride_q) * head_dim <= MAX_SHARED_QUERY_VALUES
}

/// HiP child scores ([`supports`] says which sizes it runs).
///
/// - `q`: `[batch, query_heads, query_len, head_dim]`; query block `i` holds queries
///   `i * block_size_q ..`, of which every `stride_q`-th represents it
/// - `k`: `[batch, kv_heads, kv_len, head_dim]`, same float dtype as `q`
/// - `key_positions`: i32 `[batch, query_heads, query_blocks, children, keys_per_child]`, the
///   representative keys of each child, `-1` where a key takes no part
/// - `floor`: the score of a child without any real key (the lowest finite value of the
///   dtype, so that top-k can still take it)
/// - returns `[batch, query_heads, query_blocks, children]` in the dtype of `q`: the max of
///   `q . k` (unscaled) over real representative queries and keys
pub fn child_scores<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    key_positions: CubeTensor<R>,
    block_size_q: usize,
    stride_q: usize,
    floor: f32,
) -> CubeTensor<R> {
    let [batch, query_heads, query_len, head_dim] = q.shape().dims::<4>();
    let [_, kv_heads, kv_len, _] = k.shape().dims::<4>();
    let [_, _, query_blocks, children, keys_per_child] = key_positions.shape().dims::<5>();
    assert!(query_heads % kv_heads == 0, "query heads must be a multiple of KV heads");
    assert!(stride_q > 0 && block_size_q.is_multiple_of(stride_q), "the stride must divide the block");
    let queries = block_size_q / stride_q;
    let dtype = q.dtype;
    let scores = empty_device_contiguous_dtype(
        q.client.clone(),
        q.device.clone(),
        Shape::new([batch, query_heads, query_blocks, children]),
        dtype,
    );
    let row_count = batch * query_heads * query_blocks;
    if row_count == 0 || children == 0 {
        return scores;
    }
    let client = q.client.clone();
    // Keys are read as vectors of up to 16 bytes (one unit reads a whole key row).
    let width = row_vector_width(head_dim, dtype);
    let geometry = ChildGeometryLaunch::new(
        query_heads,
        kv_heads,
        query_len,
        kv_len,
        query_blocks,
        block_size_q,
        stride_q,
        children,
        keys_per_child,
    );
    crate::launches::count();
    if tensor_core_attention::available(&client, dtype)
        && tensor_core_child_scores::supports(queries, head_dim, keys_per_child)
    {
        tensor_core_child_scores::tensor_core_child_scores_kernel::launch::<R>(
            &client,
            cube_count(row_count),
            CubeDim::new_2d(tensor_core_attention::PLANE as u32, (queries / 16) as u32),
            width,
            into_contiguous(q).into_tensor_arg(),
            into_contiguous(k).into_tensor_arg(),
            into_contiguous(key_positions).into_tensor_arg(),
            scores.clone().into_tensor_arg(),
            geometry,
            row_count,
            floor,
            queries,
            head_dim,
            width,
            dtype.into(),
        );
        return scores;
    }
    child_scores_kernel::launch::<R>(
        &client,
        cube_count(row_count),
        CubeDim::new_1d(UNITS as u32),
        width,
        into_contiguous(q).into_tensor_arg(),
        into_contiguous(k).into_tensor_arg(),
        into_contiguous(key_positions).into_tensor_arg(),
        scores.clone().into_tensor_arg(),
        geometry,
        row_count,
        floor,
        queries,
        head_dim,
        dtype.into(),
    );
    scores
}
