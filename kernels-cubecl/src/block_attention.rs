//! Causal attention of tiles of queries over one shared key list each, with a log-sum-exp
//! output: dense prefill (the list is every earlier key) and block-sparse prefill (HiP: the
//! sink, the window and the key blocks its mask chose for the query block).
//!
//! One cube per tile of up to [`MAX_QUERIES`] consecutive queries of one head. The tile's
//! key list (its sink, the union of its queries' windows, then the chosen key blocks) is
//! walked in tiles of [`KEY_TILE`] keys: a unit per key computes the logits of every query
//! of the tile (each K row is read once per tile of queries), each query's own rule
//! (causal; window keys only inside its window; block keys only outside it, so no key
//! counts twice) masks them, running max and sum are kept per query, and a unit per value
//! dimension accumulates the weighted values in registers. Accumulation is in f32.
//!
//! Where the runtime has tensor cores and the sizes fit, the same lists and rules run on
//! them instead, with tiles of 64 queries: [`crate::tensor_core_attention`] (`cmma`: CUDA
//! f16/bf16, SPIR-V cooperative matrices), or the experimental [`crate::mma_attention`]
//! (register-level MMA, feature `mma-prefill`); this kernel stays the path of every other
//! runtime (wgpu's WGSL, lavapipe) and dtype.

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::prelude::*;

use crate::grid::cube_count;
use crate::key_lists::{entry_key, tile_keys, visible_logit};
use crate::softmax::{log_sum_exp, no_logit, normalized, rescale, weight, SparseAttentionOutput};
use crate::vectors::row_vector_width;
use crate::{mma_attention, tensor_core_attention};

/// Keys per tile, and units per cube.
pub const KEY_TILE: usize = 128;
/// Queries per cube, at most (fewer when the query block of the mask is not a multiple).
pub const MAX_QUERIES: usize = 16;

/// The keys of each tile of queries: sink, window, and optionally chosen key blocks.
#[derive(Debug, Clone)]
pub struct BlockKeys<R: CubeRuntime> {
    /// Keys at the start of the context every query sees.
    pub sink: usize,
    /// Most recent keys each query sees (its own included), never overlapping the sink;
    /// `usize::MAX` (or anything at least the context) makes the attention dense causal.
    pub window: usize,
    /// i32 first key of each chosen key block, `[batch, query_heads, query_blocks, n]`,
    /// `-1` for none; query block `i` holds queries `i * query_block ..`. Blocks of one
    /// query block must not overlap, nor start before `sink`.
    pub blocks: Option<CubeTensor<R>>,
    /// Keys per chosen block.
    pub block_size_k: usize,
    /// Queries per query block of `blocks`.
    pub query_block: usize,
}

/// Sizes the kernel reads.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct BlockGeometry {
    pub(crate) query_heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) query_len: usize,
    pub(crate) kv_len: usize,
    /// Position of query 0 in the context.
    pub(crate) first_position: usize,
    pub(crate) sink: usize,
    pub(crate) window: usize,
    /// Tiles of queries per (batch, head).
    pub(crate) tiles_per_head: usize,
    pub(crate) query_block: usize,
    pub(crate) query_blocks: usize,
    pub(crate) blocks_per_query_block: usize,
    pub(crate) block_size_k: usize,
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn block_attention_kernel<F: Float, N: Size>(
    q: &Tensor<F>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<F>,
    blocks: &Tensor<i32>,
    output: &mut Tensor<F>,
    lse: &mut Tensor<F>,
    geo: BlockGeometry,
    tile_count: usize,
    scale: f32,
    #[comptime] queries: usize,
    #[comptime] head_dim: usize,
    #[comptime] value_dim: usize,
    #[comptime] dims_per_unit: usize,
    #[define(F)] _dtype: StorageType,
) {
    let tile = CUBE_POS;
    if tile >= tile_count {
        terminate!();
    }
    let unit = UNIT_POS as usize;
    let query_tile = tile % geo.tiles_per_head;
    let head = (tile / geo.tiles_per_head) % geo.query_heads;
    let b = tile / (geo.tiles_per_head * geo.query_heads);
    let t0 = query_tile * queries;
    let real_queries = min(queries, geo.query_len - t0);
    let first_pos = geo.first_position + t0;
    let last_pos = first_pos + real_queries - 1;

    let list = tile_keys(geo, b, head, t0, first_pos, last_pos);
    let entries = list.entries;
    let kv_head = head / (geo.query_heads / geo.kv_heads);
    let kv_base = (b * geo.kv_heads + kv_head) * geo.kv_len;
    let q_row = (b * geo.query_heads + head) * geo.query_len + t0;

    let mut q_tile = SharedMemory::<f32>::new(queries * head_dim);
    let mut keys = SharedMemory::<i32>::new(KEY_TILE);
    let mut probs = SharedMemory::<f32>::new(queries * KEY_TILE);
    let mut row_max = SharedMemory::<f32>::new(queries);
    let mut row_sum = SharedMemory::<f32>::new(queries);
    let mut row_rescale = SharedMemory::<f32>::new(queries);
    let mut acc = Array::<f32>::new(queries * dims_per_unit);
    let mut dots = Array::<f32>::new(queries);

    for i in range_stepped(unit, queries * head_dim, KEY_TILE) {
        let g = i / head_dim;
        let mut x = 0.0f32;
        if g < real_queries {
            x = f32::cast_from(q[(q_row + g) * head_dim + i % head_dim]) * scale;
        }
        q_tile[i] = x;
    }
    if unit < queries {
        row_max[unit] = no_logit();
        row_sum[unit] = 0.0f32;
    }
    #[unroll]
    for i in 0..queries * dims_per_unit {
        acc[i] = 0.0f32;
    }
    sync_cube();

    let mut tile_start = 0usize;
    while tile_start < entries {
        // A unit per key: which key, and from which part of the list.
        let (key, part) = entry_key(tile_start + unit, list, blocks, geo);
        keys[unit] = key;

        #[unroll]
        for g in 0..queries {
            dots[g] = 0.0f32;
        }
        if key >= 0 {
            let width = k.vector_size();
            let k_base = (kv_base + usize::cast_from(key)) * (head_dim / width);
            for c in 0..head_dim / width {
                let chunk = k[k_base + c];
                #[unroll]
                for g in 0..queries {
                    let mut dot = dots[g];
                    #[unroll]
                    for i in 0..width {
                        dot += q_tile[g * head_dim + c * width + i] * f32::cast_from(chunk[i]);
                    }
                    dots[g] = dot;
                }
            }
        }
        #[unroll]
        for g in 0..queries {
            probs[g * KEY_TILE + unit] =
                visible_logit(dots[g], key, part, first_pos + g, g < real_queries, geo.window);
        }
        sync_cube();

        let count = min(KEY_TILE, entries - tile_start);
        if unit < queries {
            let mut best = row_max[unit];
            for j in 0..count {
                best = max(best, probs[unit * KEY_TILE + j]);
            }
            row_rescale[unit] = rescale(row_max[unit], best);
            row_max[unit] = best;
        }
        sync_cube();
        #[unroll]
        for g in 0..queries {
            probs[g * KEY_TILE + unit] = weight(probs[g * KEY_TILE + unit], row_max[g]);
        }
        sync_cube();
        if unit < queries {
            let mut sum = 0.0f32;
            for j in 0..count {
                sum += probs[unit * KEY_TILE + j];
            }
            row_sum[unit] = row_sum[unit] * row_rescale[unit] + sum;
        }

        // A unit per value dimension: weighted values of every query of the tile.
        #[unroll]
        for u in 0..dims_per_unit {
            let d = unit + u * KEY_TILE;
            if d < value_dim {
                #[unroll]
                for g in 0..queries {
                    acc[u * queries + g] = acc[u * queries + g] * row_rescale[g];
                }
                for j in 0..count {
                    let key_j = keys[j];
                    if key_j >= 0 {
                        let value = f32::cast_from(v[(kv_base + usize::cast_from(key_j)) * value_dim + d]);
                        #[unroll]
                        for g in 0..queries {
                            acc[u * queries + g] += probs[g * KEY_TILE + j] * value;
                        }
                    }
                }
            }
        }
        sync_cube();
        tile_start += KEY_TILE;
    }

    #[unroll]
    for u in 0..dims_per_unit {
        let d = unit + u * KEY_TILE;
        if d < value_dim {
            #[unroll]
            for g in 0..queries {
                if g < real_queries {
                    output[(q_row + g) * value_dim + d] =
                        F::cast_from(normalized(acc[u * queries + g], row_sum[g]));
                }
            }
        }
    }
    if unit < real_queries {
        lse[q_row + unit] = F::cast_from(log_sum_exp(row_max[unit], row_sum[unit]));
    }
}

/// Causal attention of `q` over the sink, window and chosen key blocks of [`BlockKeys`].
///
/// - `q`: `[batch, query_heads, query_len, head_dim]` at positions `first_position..`
/// - `k`, `v`: `[batch, kv_heads, kv_len, head_dim | value_dim]`, same float dtype as `q`
/// - `scale`: logit scale
/// - returns output `[batch, query_heads, query_len, value_dim]` and lse
///   `[batch, query_heads, query_len]` (`-inf` where a query has no key), dtype of `q`
pub fn block_attention<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    keys: BlockKeys<R>,
    first_position: usize,
    scale: f32,
) -> SparseAttentionOutput<R> {
    let [batch, query_heads, query_len, head_dim] = q.shape().dims::<4>();
    let [_, kv_heads, kv_len, value_dim] = v.shape().dims::<4>();
    assert!(query_heads % kv_heads == 0, "query heads must be a multiple of KV heads");
    assert!(keys.query_block > 0 && keys.block_size_k > 0, "block sizes must be positive");
    let client = q.client.clone();
    let device = q.device.clone();
    let dtype = q.dtype;
    let SparseAttentionOutput { output, lse } = SparseAttentionOutput::empty_for(&q, value_dim);
    let (blocks, query_blocks, per_block) = match keys.blocks {
        Some(blocks) => {
            let [bb, bh, nq, n] = blocks.shape().dims::<4>();
            assert_eq!(
                [bb, bh, nq],
                [batch, query_heads, query_len.div_ceil(keys.query_block)],
                "blocks must be [batch, query_heads, query_blocks, n]"
            );
            (into_contiguous(blocks), nq, n)
        }
        None => {
            (empty_device_contiguous_dtype(client.clone(), device.clone(), Shape::new([1]), DType::I32), 1, 0)
        }
    };
    // Tensor cores where the runtime has them and the sizes fit.
    let query_block = (per_block > 0).then_some(keys.query_block);
    let fits = tensor_core_attention::supports(head_dim, value_dim, query_block);
    let mma = fits && mma_attention::selected(&client, dtype);
    let tensor_cores = fits && !mma && tensor_core_attention::available(&client, dtype);
    // A tile of queries must not straddle two query blocks.
    let queries = if mma || tensor_cores {
        tensor_core_attention::QUERIES
    } else if per_block == 0 {
        MAX_QUERIES
    } else {
        [MAX_QUERIES, 8, 4, 2, 1].into_iter().find(|n| keys.query_block.is_multiple_of(*n)).unwrap_or(1)
    };
    let tiles_per_head = query_len.div_ceil(queries);
    let tile_count = batch * query_heads * tiles_per_head;
    if tile_count == 0 || value_dim == 0 {
        return SparseAttentionOutput { output, lse };
    }
    let geometry = BlockGeometryLaunch::new(
        query_heads,
        kv_heads,
        query_len,
        kv_len,
        first_position,
        keys.sink,
        keys.window.min(kv_len + 1),
        tiles_per_head,
        keys.query_block,
        query_blocks,
        per_block,
        keys.block_size_k,
    );
    // Keys are read as vectors of up to 16 bytes (one unit reads a whole key row).
    let width = row_vector_width(head_dim, dtype);
    crate::launches::count();
    if mma {
        mma_attention::mma_attention_kernel::launch::<R>(
            &client,
            cube_count(tile_count),
            CubeDim::new_2d(tensor_core_attention::PLANE as u32, tensor_core_attention::PLANES as u32),
            into_contiguous(q).into_tensor_arg(),
            into_contiguous(k).into_tensor_arg(),
            into_contiguous(v).into_tensor_arg(),
            blocks.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            geometry,
            tile_count,
            scale,
            head_dim,
            dtype.into(),
        );
        return SparseAttentionOutput { output, lse };
    }
    if tensor_cores {
        tensor_core_attention::tensor_core_attention_kernel::launch::<R>(
            &client,
            cube_count(tile_count),
            CubeDim::new_2d(tensor_core_attention::PLANE as u32, tensor_core_attention::PLANES as u32),
            width,
            into_contiguous(q).into_tensor_arg(),
            into_contiguous(k).into_tensor_arg(),
            into_contiguous(v).into_tensor_arg(),
            blocks.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            geometry,
            tile_count,
            scale,
            head_dim,
            width,
            tensor_core_attention::KEYS,
            dtype.into(),
        );
        return SparseAttentionOutput { output, lse };
    }
    block_attention_kernel::launch::<R>(
        &client,
        cube_count(tile_count),
        CubeDim::new_1d(KEY_TILE as u32),
        width,
        into_contiguous(q).into_tensor_arg(),
        into_contiguous(k).into_tensor_arg(),
        into_contiguous(v).into_tensor_arg(),
        blocks.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        geometry,
        tile_count,
        scale,
        queries,
        head_dim,
        value_dim,
        value_dim.div_ceil(KEY_TILE),
        dtype.into(),
    );
    SparseAttentionOutput { output, lse }
}
