//! Attention of each query over its own list of keys, with a log-sum-exp output.
//!
//! Flash-decoding layout: the key list of a row is cut into `splits` chunks, one cube per
//! (row, chunk) keeps a running max, sum and weighted value sum over its chunk (tiles of
//! [`TILE`] keys; "minus infinity" is the finite -1e30, as WGSL has no infinite literals: a unit per key for the logits, a unit per value dimension for the
//! weighted sum), and a second kernel merges the chunks by log-sum-exp. A row serves
//! `group` query heads of one KV head when they share the key list, so that each chosen
//! K/V row is read once for the whole group.

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use crate::grid::cube_count;
use crate::softmax::{self, log_sum_exp, no_logit, normalized, weight, SparseAttentionOutput};
use crate::vectors::row_vector_width;

/// Keys per tile, and units per cube.
pub const TILE: usize = 128;
/// Cubes a launch aims at (a few per streaming multiprocessor of a large GPU).
const TARGET_CUBES: usize = 1024;

/// The keys of each query row: the first `sink` keys and the last `window` keys up to the
/// query's position (causal), then the `heavy` list.
#[derive(Debug, Clone)]
pub struct KeyList<R: CubeRuntime> {
    /// Keys at the start of the context.
    pub sink: usize,
    /// Most recent keys, the query's own included, never overlapping the sink.
    pub window: usize,
    /// i32 key indices `[batch, query_heads / group, query_len, n]`, `-1` for none; they
    /// must not repeat sink or window keys.
    pub heavy: Option<CubeTensor<R>>,
    /// Query heads per row sharing the list: 1, or `query_heads / kv_heads`.
    pub group: usize,
}

/// Sizes shared by the two kernels.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct AttnRows {
    /// Rows per batch element (`query_heads / group`).
    heads: usize,
    query_len: usize,
    kv_len: usize,
    /// Position of query 0 in the context.
    first_position: usize,
    query_heads: usize,
    kv_heads: usize,
    sink: usize,
    window: usize,
    heavy_len: usize,
    splits: usize,
    chunk: usize,
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn partial_kernel<F: Float, N: Size>(
    q: &Tensor<F>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<F>,
    heavy: &Tensor<i32>,
    partial_acc: &mut Tensor<f32>,
    partial_stats: &mut Tensor<f32>,
    rows: AttnRows,
    row_count: usize,
    scale: f32,
    #[comptime] group: usize,
    #[comptime] head_dim: usize,
    #[comptime] value_dim: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS / rows.splits;
    let split = CUBE_POS % rows.splits;
    if row >= row_count {
        terminate!();
    }
    let unit = UNIT_POS as usize;
    let t = row % rows.query_len;
    let head = (row / rows.query_len) % rows.heads;
    let b = row / (rows.query_len * rows.heads);
    let last = rows.first_position + t;
    let sink_n = min(rows.sink, last + 1);
    let mut window_start = 0usize;
    if last + 1 > rows.window {
        window_start = last + 1 - rows.window;
    }
    window_start = max(window_start, rows.sink);
    let mut window_n = 0usize;
    if last + 1 > window_start {
        window_n = last + 1 - window_start;
    }
    let entries = sink_n + window_n + rows.heavy_len;
    let first = min(split * rows.chunk, entries);
    let end = min(first + rows.chunk, entries);
    let kv_head = head * group / (rows.query_heads / rows.kv_heads);
    let kv_base = (b * rows.kv_heads + kv_head) * rows.kv_len;

    let mut q_tile = SharedMemory::<f32>::new(group * head_dim);
    let mut keys = SharedMemory::<i32>::new(TILE);
    let mut logits = SharedMemory::<f32>::new(group * TILE);
    let mut probs = SharedMemory::<f32>::new(group * TILE);
    let mut acc = SharedMemory::<f32>::new(group * value_dim);
    let mut running_max = Array::<f32>::new(group);
    let mut running_sum = Array::<f32>::new(group);
    let mut rescale = Array::<f32>::new(group);

    #[unroll]
    for g in 0..group {
        let q_base = ((b * rows.query_heads + head * group + g) * rows.query_len + t) * head_dim;
        for d in range_stepped(unit, head_dim, TILE) {
            q_tile[g * head_dim + d] = f32::cast_from(q[q_base + d]) * scale;
        }
        for d in range_stepped(unit, value_dim, TILE) {
            acc[g * value_dim + d] = 0.0f32;
        }
        running_max[g] = no_logit();
        running_sum[g] = 0.0f32;
    }
    sync_cube();

    let mut tile_start = first;
    while tile_start < end {
        let e = tile_start + unit;
        let mut key = i32::new(-1);
        if e < end {
            if e < sink_n {
                key = i32::cast_from(e);
            } else if e < sink_n + window_n {
                key = i32::cast_from(window_start + e - sink_n);
            } else {
                key = heavy[row * rows.heavy_len + e - sink_n - window_n];
            }
        }
        keys[unit] = key;
        #[unroll]
        for g in 0..group {
            let mut logit = no_logit();
            if key >= 0 {
                let width = k.vector_size();
                let k_base = (kv_base + usize::cast_from(key)) * (head_dim / width);
                let mut dot = 0.0f32;
                for c in 0..head_dim / width {
                    let chunk = k[k_base + c];
                    #[unroll]
                    for i in 0..width {
                        dot += q_tile[g * head_dim + c * width + i] * f32::cast_from(chunk[i]);
                    }
                }
                logit = dot;
            }
            logits[g * TILE + unit] = logit;
        }
        sync_cube();
        let count = min(TILE, end - tile_start);
        #[unroll]
        for g in 0..group {
            let mut tile_max = no_logit();
            for j in 0..count {
                tile_max = max(tile_max, logits[g * TILE + j]);
            }
            let new_max = max(running_max[g], tile_max);
            rescale[g] = softmax::rescale(running_max[g], new_max);
            running_max[g] = new_max;
            probs[g * TILE + unit] = weight(logits[g * TILE + unit], new_max);
        }
        sync_cube();
        #[unroll]
        for g in 0..group {
            let mut tile_sum = 0.0f32;
            for j in 0..count {
                tile_sum += probs[g * TILE + j];
            }
            running_sum[g] = running_sum[g] * rescale[g] + tile_sum;
            for d in range_stepped(unit, value_dim, TILE) {
                let mut a = acc[g * value_dim + d] * rescale[g];
                for j in 0..count {
                    let key_j = keys[j];
                    if key_j >= 0 {
                        a += probs[g * TILE + j]
                            * f32::cast_from(v[(kv_base + usize::cast_from(key_j)) * value_dim + d]);
                    }
                }
                acc[g * value_dim + d] = a;
            }
        }
        sync_cube();
        tile_start += TILE;
    }

    let slot = (row * rows.splits + split) * group;
    #[unroll]
    for g in 0..group {
        for d in range_stepped(unit, value_dim, TILE) {
            partial_acc[(slot + g) * value_dim + d] = acc[g * value_dim + d];
        }
        if unit == 0 {
            partial_stats[(slot + g) * 2] = running_max[g];
            partial_stats[(slot + g) * 2 + 1] = running_sum[g];
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn combine_kernel<F: Float>(
    partial_acc: &Tensor<f32>,
    partial_stats: &Tensor<f32>,
    output: &mut Tensor<F>,
    lse: &mut Tensor<F>,
    rows: AttnRows,
    row_count: usize,
    #[comptime] group: usize,
    #[comptime] value_dim: usize,
    #[define(F)] _dtype: StorageType,
) {
    if ABSOLUTE_POS >= row_count * group * value_dim {
        terminate!();
    }
    let d = ABSOLUTE_POS % value_dim;
    let g = (ABSOLUTE_POS / value_dim) % group;
    let row = ABSOLUTE_POS / (value_dim * group);
    let t = row % rows.query_len;
    let head = (row / rows.query_len) % rows.heads;
    let b = row / (rows.query_len * rows.heads);

    let mut best = no_logit();
    for s in 0..rows.splits {
        best = max(best, partial_stats[((row * rows.splits + s) * group + g) * 2]);
    }
    let mut sum = 0.0f32;
    let mut weighted = 0.0f32;
    for s in 0..rows.splits {
        let slot = (row * rows.splits + s) * group + g;
        let w = softmax::rescale(partial_stats[slot * 2], best);
        sum += partial_stats[slot * 2 + 1] * w;
        weighted += partial_acc[slot * value_dim + d] * w;
    }
    let query_row = (b * rows.query_heads + head * group + g) * rows.query_len + t;
    output[query_row * value_dim + d] = F::cast_from(normalized(weighted, sum));
    if d == 0 {
        lse[query_row] = F::cast_from(log_sum_exp(best, sum));
    }
}

/// Causal attention of `q` over each row's [`KeyList`].
///
/// - `q`: `[batch, query_heads, query_len, head_dim]` at positions `first_position..`
///   (only the sink and the window depend on positions)
/// - `k`, `v`: `[batch, kv_heads, kv_len, head_dim | value_dim]`, same float dtype as `q`
/// - `scale`: logit scale
pub fn sparse_attention<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    keys: KeyList<R>,
    first_position: usize,
    scale: f32,
) -> SparseAttentionOutput<R> {
    let [batch, query_heads, query_len, head_dim] = q.shape().dims::<4>();
    let [_, kv_heads, kv_len, value_dim] = v.shape().dims::<4>();
    assert!(query_heads % kv_heads == 0 && query_heads % keys.group == 0, "bad head counts");
    let client = q.client.clone();
    let device = q.device.clone();
    let dtype = q.dtype;
    let SparseAttentionOutput { output, lse } = SparseAttentionOutput::empty_for(&q, value_dim);
    let heads = query_heads / keys.group;
    let row_count = batch * heads * query_len;
    if row_count == 0 || value_dim == 0 {
        return SparseAttentionOutput { output, lse };
    }
    let (heavy, heavy_len) = match keys.heavy {
        Some(h) => {
            let n = h.shape().dims::<4>()[3];
            (into_contiguous(h), n)
        }
        None => {
            (empty_device_contiguous_dtype(client.clone(), device.clone(), Shape::new([1]), DType::I32), 0)
        }
    };
    let most = keys.sink.min(kv_len) + keys.window.min(kv_len) + heavy_len;
    let splits = TARGET_CUBES.div_ceil(row_count).clamp(1, most.div_ceil(TILE).max(1));
    let chunk = most.div_ceil(splits).div_ceil(TILE).max(1) * TILE;
    let splits = most.div_ceil(chunk).max(1);
    let rows = || {
        AttnRowsLaunch::new(
            heads,
            query_len,
            kv_len,
            first_position,
            query_heads,
            kv_heads,
            keys.sink,
            keys.window,
            heavy_len,
            splits,
            chunk,
        )
    };
    let partial_acc = empty_device_contiguous_dtype(
        client.clone(),
        device.clone(),
        Shape::new([row_count, splits, keys.group, value_dim]),
        DType::F32,
    );
    let partial_stats = empty_device_contiguous_dtype(
        client.clone(),
        device.clone(),
        Shape::new([row_count, splits, keys.group, 2]),
        DType::F32,
    );
    // Keys are read as vectors of up to 16 bytes (one unit reads a whole key row).
    let width = row_vector_width(head_dim, dtype);
    partial_kernel::launch::<R>(
        &client,
        cube_count(row_count * splits),
        CubeDim::new_1d(TILE as u32),
        width,
        into_contiguous(q).into_tensor_arg(),
        into_contiguous(k).into_tensor_arg(),
        into_contiguous(v).into_tensor_arg(),
        heavy.into_tensor_arg(),
        partial_acc.clone().into_tensor_arg(),
        partial_stats.clone().into_tensor_arg(),
        rows(),
        row_count,
        scale,
        keys.group,
        head_dim,
        value_dim,
        dtype.into(),
    );
    let units = row_count * keys.group * value_dim;
    let cube_dim = CubeDim::new(&client, units);
    combine_kernel::launch::<R>(
        &client,
        calculate_cube_count_elemwise(&client, units, cube_dim),
        cube_dim,
        partial_acc.into_tensor_arg(),
        partial_stats.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        rows(),
        row_count,
        keys.group,
        value_dim,
        dtype.into(),
    );
    SparseAttentionOutput { output, lse }
}
