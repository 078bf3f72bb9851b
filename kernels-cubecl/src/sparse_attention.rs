//! Attention of each query over its own list of keys, with a log-sum-exp output.
//!
//! Flash-decoding layout: the key list of a row is cut into `splits` chunks, one cube per
//! (row, chunk), and a second kernel merges the chunks by log-sum-exp. Inside a cube the
//! keys go by tiles of [`TILE`]: a unit per key computes the logits (one K row read per
//! unit, in 16-byte vectors), the tile's max and sum of exponentials come from a tree of
//! pairwise merges in shared memory (no unit rescans the tile), and teams of units, each
//! team covering a value row in 16-byte vectors, take the tile's keys in turn and keep the
//! weighted sums in registers; the teams' sums are added once at the end. "Minus infinity"
//! is the finite [`no_logit`], as WGSL has no infinite literals. A row serves `group` query
//! heads of one KV head when they share the key list, so that each chosen K/V row is read
//! once for the whole group.

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use crate::grid::cube_count;
use crate::softmax::{self, is_real, log_sum_exp, no_logit, normalized, weight, SparseAttentionOutput};
use crate::vectors::row_vector_width;

/// Keys per tile, and units per cube.
pub const TILE: usize = 128;
/// Levels of the merge tree over a tile (`2^TILE_LEVELS == TILE`).
const TILE_LEVELS: usize = 7;
/// Cubes a launch aims at (about 16 per streaming multiprocessor of a large GPU).
const TARGET_CUBES: usize = 2048;
/// Most accumulator registers per unit (`group * value_width`).
const MAX_ACCUMULATORS: usize = 32;
/// Global loads a unit issues before using the first (K vectors of its key, V rows of its
/// team): one dependent load at a time leaves the memory system mostly idle.
const LOADS_IN_FLIGHT: usize = 4;

/// The keys of each query row: the first `sink` keys and the last `window` keys up to the
/// query's position (causal), then the `heavy` list.
#[derive(Debug, Clone)]
pub struct KeyList<R: CubeRuntime> {
    /// Keys at the start of the context.
    pub sink: usize,
    /// Most recent keys, the query's own included, never overlapping the sink.
    pub window: usize,
    /// i32 entries `[batch, query_heads / group, query_len, n]`, `-1` for none: key
    /// indices that must not repeat sink or window keys (`page_size` 1), or pages.
    pub heavy: Option<CubeTensor<R>>,
    /// Keys per heavy entry: 1 for key indices; more for pages, entry `p` standing for keys
    /// `p * page_size ..` of which those between the sink and the window are attended (no
    /// per-key list to build for page selectors).
    pub page_size: usize,
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
    /// Heavy keys per row (entries times `page_size`).
    heavy_len: usize,
    page_size: usize,
    splits: usize,
    chunk: usize,
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn partial_kernel<F: Float, N: Size, M: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, M>>,
    heavy: &Tensor<i32>,
    partial_acc: &mut Tensor<f32>,
    partial_stats: &mut Tensor<f32>,
    rows: AttnRows,
    row_count: usize,
    scale: f32,
    #[comptime] group: usize,
    #[comptime] head_dim: usize,
    #[comptime] key_width: usize,
    #[comptime] value_dim: usize,
    #[comptime] value_width: usize,
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
    // The value phase: `lanes` units cover a value row in vectors of `value_width`, and
    // `key_groups` such teams take a tile's keys in turn.
    let lanes = value_dim / value_width;
    let key_groups = TILE / lanes;
    let lane = unit % lanes;
    let key_group = unit / lanes;
    let in_value_phase = unit < key_groups * lanes;

    // The group's scaled queries as f32 vectors matching K's: vector `c * group + g` holds
    // elements `c * width..` of query `g` (one shared load per K vector and query).
    let row_vectors = comptime!(head_dim / key_width);
    let mut q_tile = SharedMemory::<Vector<f32, N>>::new(comptime!(group * row_vectors));
    let mut keys = SharedMemory::<i32>::new(TILE);
    let mut probs = SharedMemory::<f32>::new(group * TILE);
    let mut tree_max = SharedMemory::<f32>::new(group * TILE);
    let mut tree_sum = SharedMemory::<f32>::new(group * TILE);
    let mut team_acc = SharedMemory::<f32>::new(key_groups * group * value_dim);
    let mut running_max = Array::<f32>::new(group);
    let mut running_sum = Array::<f32>::new(group);
    let mut own_logit = Array::<f32>::new(group);
    let mut acc = Array::<f32>::new(group * value_width);

    for at in range_stepped(unit, group * row_vectors, TILE) {
        let (c, g) = (at / group, at % group);
        let q_row = (b * rows.query_heads + head * group + g) * rows.query_len + t;
        q_tile[at] = Vector::<f32, N>::cast_from(q[q_row * row_vectors + c]) * Vector::new(scale);
    }
    #[unroll]
    for g in 0..group {
        running_max[g] = no_logit();
        running_sum[g] = 0.0f32;
        #[unroll]
        for i in 0..value_width {
            acc[g * value_width + i] = 0.0f32;
        }
    }
    sync_cube();

    let mut tile_start = first;
    while tile_start < end {
        // A unit per key: its logits for every query of the group.
        let e = tile_start + unit;
        let mut key = i32::new(-1);
        if e < end {
            if e < sink_n {
                key = i32::cast_from(e);
            } else if e < sink_n + window_n {
                key = i32::cast_from(window_start + e - sink_n);
            } else {
                let h = e - sink_n - window_n;
                let entry = heavy[row * (rows.heavy_len / rows.page_size) + h / rows.page_size];
                if rows.page_size == 1 {
                    key = entry;
                } else if entry >= 0 {
                    let candidate = usize::cast_from(entry) * rows.page_size + h % rows.page_size;
                    if candidate >= rows.sink && candidate < window_start {
                        key = i32::cast_from(candidate);
                    }
                }
            }
        }
        keys[unit] = key;
        // The K row is read once for the whole group (each vector serves every query).
        #[unroll]
        for g in 0..group {
            own_logit[g] = 0.0f32;
        }
        if key >= 0 {
            let k_base = (kv_base + usize::cast_from(key)) * row_vectors;
            // Loads issued in batches before their products, not one dependent chain.
            #[unroll]
            for batch in 0..row_vectors.div_ceil(LOADS_IN_FLIGHT) {
                let mut chunks = Array::<Vector<F, N>>::new(LOADS_IN_FLIGHT);
                #[unroll]
                for l in 0..LOADS_IN_FLIGHT {
                    let c = batch * LOADS_IN_FLIGHT + l;
                    if c < row_vectors {
                        chunks[l] = k[k_base + c];
                    }
                }
                #[unroll]
                for l in 0..LOADS_IN_FLIGHT {
                    let c = batch * LOADS_IN_FLIGHT + l;
                    if c < row_vectors {
                        let chunk = Vector::<f32, N>::cast_from(chunks[l]);
                        #[unroll]
                        for g in 0..group {
                            let products = q_tile[c * group + g] * chunk;
                            let mut dot = own_logit[g];
                            #[unroll]
                            for i in 0..key_width {
                                dot += products[i];
                            }
                            own_logit[g] = dot;
                        }
                    }
                }
            }
        }
        #[unroll]
        for g in 0..group {
            let logit = select(key >= 0, own_logit[g], no_logit());
            own_logit[g] = logit;
            tree_max[g * TILE + unit] = logit;
            tree_sum[g * TILE + unit] = select(is_real(logit), 1.0f32, 0.0f32);
        }
        sync_cube();
        // The tile's max and sum of exp(logit - max), by pairwise merges in shared memory.
        #[unroll]
        for level in 0..TILE_LEVELS {
            let stride = TILE >> (level + 1);
            if unit < stride {
                #[unroll]
                for g in 0..group {
                    let a = g * TILE + unit;
                    let (max_a, max_b) = (tree_max[a], tree_max[a + stride]);
                    let merged = max(max_a, max_b);
                    tree_sum[a] = tree_sum[a] * softmax::rescale(max_a, merged)
                        + tree_sum[a + stride] * softmax::rescale(max_b, merged);
                    tree_max[a] = merged;
                }
            }
            sync_cube();
        }
        #[unroll]
        for g in 0..group {
            let tile_max = tree_max[g * TILE];
            let new_max = max(running_max[g], tile_max);
            let factor = softmax::rescale(running_max[g], new_max);
            running_sum[g] =
                running_sum[g] * factor + tree_sum[g * TILE] * softmax::rescale(tile_max, new_max);
            running_max[g] = new_max;
            #[unroll]
            for i in 0..value_width {
                acc[g * value_width + i] *= factor;
            }
            probs[g * TILE + unit] = weight(own_logit[g], new_max);
        }
        sync_cube();
        // A team of `lanes` units per key: the weighted values, in registers.
        if in_value_phase {
            let count = min(TILE, end - tile_start);
            let mut values = Array::<Vector<F, M>>::new(LOADS_IN_FLIGHT);
            // The team's next rows are all requested before the first is used.
            for j in range_stepped(key_group, count, key_groups * LOADS_IN_FLIGHT) {
                #[unroll]
                for l in 0..LOADS_IN_FLIGHT {
                    let jj = j + l * key_groups;
                    let mut row_values = Vector::new(F::new(0.0));
                    if jj < count {
                        let key_j = keys[jj];
                        if key_j >= 0 {
                            row_values = v[(kv_base + usize::cast_from(key_j)) * lanes + lane];
                        }
                    }
                    values[l] = row_values;
                }
                #[unroll]
                for l in 0..LOADS_IN_FLIGHT {
                    let jj = j + l * key_groups;
                    if jj < count {
                        #[unroll]
                        for g in 0..group {
                            let p = probs[g * TILE + jj];
                            #[unroll]
                            for i in 0..value_width {
                                acc[g * value_width + i] += p * f32::cast_from(values[l][i]);
                            }
                        }
                    }
                }
            }
        }
        sync_cube();
        tile_start += TILE;
    }

    // The teams' accumulators summed.
    if in_value_phase {
        #[unroll]
        for g in 0..group {
            #[unroll]
            for i in 0..value_width {
                team_acc[(key_group * group + g) * value_dim + lane * value_width + i] =
                    acc[g * value_width + i];
            }
        }
    }
    sync_cube();
    let slot = (row * rows.splits + split) * group;
    for idx in range_stepped(unit, group * value_dim, TILE) {
        let mut total = 0.0f32;
        for team in 0..key_groups {
            total += team_acc[team * group * value_dim + idx];
        }
        partial_acc[slot * value_dim + idx] = total;
    }
    if unit == 0 {
        #[unroll]
        for g in 0..group {
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

/// Shared memory a cube may take: what every runtime offers (Mesa's lavapipe has 32 KiB, and
/// runs nothing when a kernel asks for more).
const SHARED_BYTES: usize = 32 * 1024;

/// Elements per value vector: the widest of 8, 4, 2, 1 that divides the value row, fits
/// 16 bytes, keeps `group * width` accumulators per unit within [`MAX_ACCUMULATORS`], a
/// team of `value_dim / width` units within a cube, and the cube's shared memory (queries,
/// keys, probabilities, merge trees, the teams' sums) within [`SHARED_BYTES`]; `None` when
/// none does.
fn value_vector_width(head_dim: usize, value_dim: usize, group: usize, dtype: DType) -> Option<usize> {
    [8usize, 4, 2, 1].into_iter().find(|&w| {
        let fits = value_dim.is_multiple_of(w)
            && w * dtype.size() <= 16
            && group * w <= MAX_ACCUMULATORS
            && value_dim / w <= TILE;
        let teams = if fits { TILE / (value_dim / w) } else { 0 };
        let shared = 4 * (group * head_dim + TILE + 3 * group * TILE + teams * group * value_dim);
        fits && shared <= SHARED_BYTES
    })
}

/// Whether [`sparse_attention`] runs rows of `group` query heads over keys of `head_dim`
/// and values of `value_dim` elements of `dtype` (see [`value_vector_width`]).
pub fn supports(head_dim: usize, value_dim: usize, group: usize, dtype: DType) -> bool {
    value_vector_width(head_dim, value_dim, group, dtype).is_some()
}

/// Causal attention of `q` over each row's [`KeyList`] (check [`supports`] first).
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
    assert!(keys.page_size > 0, "pages of no keys");
    let (heavy, heavy_len) = match keys.heavy {
        Some(h) => {
            let n = h.shape().dims::<4>()[3];
            (into_contiguous(h), n * keys.page_size)
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
            keys.page_size,
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
    let value_width = value_vector_width(head_dim, value_dim, keys.group, dtype)
        .expect("sparse_attention::supports was checked");
    crate::launches::count();
    partial_kernel::launch::<R>(
        &client,
        cube_count(row_count * splits),
        CubeDim::new_1d(TILE as u32),
        width,
        value_width,
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
        width,
        value_dim,
        value_width,
        dtype.into(),
    );
    let units = row_count * keys.group * value_dim;
    let cube_dim = CubeDim::new(&client, units);
    crate::launches::count();
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
