//! HiP's child scores ([`crate::child_scores`]) on tensor cores: the representative queries
//! of a query block against its children's representative keys as 16x16x16 `cmma` products
//! (f16 or bf16 in, f32 accumulation), then the max over queries and over each child's keys.
//!
//! One cube per (batch, head, query block), a plane per 16 representative queries. The
//! children's keys are walked [`KEYS`] at a time: the cube gathers their K rows into shared
//! memory, each plane stores its 16 x [`KEYS`] products there, then a unit per key takes
//! the max over the real queries and a unit per child the max over its keys.

use cubecl::{cmma, prelude::*};

use crate::child_scores::ChildGeometry;
use crate::tensor_core_attention::{operand, zero_accumulator, PLANE};

/// Keys per step.
pub const KEYS: usize = 64;
/// Most representative queries per query block (4 planes).
const MAX_QUERIES: usize = 64;
/// Padding of shared rows (elements), against bank conflicts.
const PAD: usize = 8;
/// Row stride of the products (f32).
const SCORE_STRIDE: usize = KEYS + 4;

/// Whether the kernel takes these sizes: 16 to 64 representative queries in whole planes, a
/// head dimension that is a multiple of 16 up to 128, and children whose keys fit a step.
pub fn supports(queries: usize, head_dim: usize, keys_per_child: usize) -> bool {
    queries.is_multiple_of(16)
        && (16..=MAX_QUERIES).contains(&queries)
        && head_dim.is_multiple_of(16)
        && (16..=128).contains(&head_dim)
        && keys_per_child > 0
        && KEYS.is_multiple_of(keys_per_child)
}

#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
pub(crate) fn tensor_core_child_scores_kernel<F: Float, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    key_positions: &Tensor<i32>,
    scores: &mut Tensor<F>,
    geo: ChildGeometry,
    row_count: usize,
    floor: f32,
    #[comptime] queries: usize,
    #[comptime] head_dim: usize,
    #[comptime] width: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= row_count {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let plane = UNIT_POS_Y as usize;
    let units = comptime!(queries / 16 * PLANE);
    let unit = plane * PLANE + lane;
    let row_vectors = comptime!(head_dim / width);
    let vstride = comptime!((head_dim + PAD) / width);
    let block = row % geo.query_blocks;
    let head = (row / geo.query_blocks) % geo.query_heads;
    let b = row / (geo.query_blocks * geo.query_heads);
    let kv_head = head / (geo.query_heads / geo.kv_heads);
    let kv_base = (b * geo.kv_heads + kv_head) * geo.kv_len;
    let q_base = (b * geo.query_heads + head) * geo.query_len;
    let first_query = block * geo.block_size_q;

    let tile_rows = comptime!(if queries > KEYS { queries } else { KEYS });
    let tiles_len = comptime!(tile_rows * vstride);
    let mut tiles = SharedMemory::<Vector<F, N>>::new_aligned(tiles_len, 32usize);
    let mut products = SharedMemory::<f32>::new_aligned(queries * SCORE_STRIDE, 32usize);
    let mut key_best = SharedMemory::<f32>::new(KEYS);

    // The representative queries (zero past the last query), then their fragments.
    for i in range_stepped(unit, queries * row_vectors, units) {
        let r = i / row_vectors;
        let t = first_query + r * geo.stride_q;
        let mut x = Vector::new(F::new(0.0));
        if t < geo.query_len {
            x = q[(q_base + t) * row_vectors + i % row_vectors];
        }
        tiles[r * vstride + i % row_vectors] = x;
    }
    sync_cube();
    let mut q_frags = Sequence::<cmma::Matrix<F>>::new();
    #[unroll]
    for d in 0..head_dim / 16 {
        let fragment = operand::<F, Vector<F, N>>(
            &tiles.slice(plane * 16 * vstride + d * 16 / width, tiles_len),
            comptime!((head_dim + PAD) as u32),
            cmma::MatrixIdent::A,
            cmma::MatrixLayout::RowMajor,
        );
        q_frags.push(fragment);
    }
    sync_cube();

    // Representative queries past the end of the queries take no part.
    let mut real_queries = 0usize;
    if first_query < geo.query_len {
        real_queries = min(queries, (geo.query_len - first_query + geo.stride_q - 1) / geo.stride_q);
    }
    let entries = geo.children * geo.keys_per_child;
    let entry_base = row * entries;
    let mut step = 0usize;
    while step < entries {
        // The step's K rows (zeros for a key that takes no part).
        for i in range_stepped(unit, KEYS * row_vectors, units) {
            let r = i / row_vectors;
            let mut x = Vector::new(F::new(0.0));
            if step + r < entries {
                let key = key_positions[entry_base + step + r];
                if key >= 0 {
                    x = k[(kv_base + usize::cast_from(key)) * row_vectors + i % row_vectors];
                }
            }
            tiles[r * vstride + i % row_vectors] = x;
        }
        sync_cube();
        #[unroll]
        for n in 0..KEYS / 16 {
            let s = zero_accumulator();
            #[unroll]
            for d in 0..head_dim / 16 {
                let key_frag = operand::<F, Vector<F, N>>(
                    &tiles.slice(n * 16 * vstride + d * 16 / width, tiles_len),
                    comptime!((head_dim + PAD) as u32),
                    cmma::MatrixIdent::B,
                    cmma::MatrixLayout::ColMajor,
                );
                cmma::execute::<F, F, f32, f32>(q_frags.index(d), &key_frag, &s, &s);
            }
            cmma::store(
                &mut products.slice_mut(plane * 16 * SCORE_STRIDE + n * 16, queries * SCORE_STRIDE),
                &s,
                comptime!(SCORE_STRIDE as u32),
                cmma::MatrixLayout::RowMajor,
            );
        }
        sync_cube();
        // A unit per key: the max over real queries; a unit per child: the max over its keys.
        for j in range_stepped(unit, KEYS, units) {
            let mut best = floor;
            let e = step + j;
            if e < entries && key_positions[entry_base + e] >= 0 {
                for r in 0..real_queries {
                    best = max(best, products[r * SCORE_STRIDE + j]);
                }
            }
            key_best[j] = best;
        }
        sync_cube();
        let per_step = KEYS / geo.keys_per_child;
        for c in range_stepped(unit, per_step, units) {
            let child = step / geo.keys_per_child + c;
            if child < geo.children {
                let mut best = floor;
                for r in 0..geo.keys_per_child {
                    best = max(best, key_best[c * geo.keys_per_child + r]);
                }
                scores[row * geo.children + child] = F::cast_from(best);
            }
        }
        sync_cube();
        step += KEYS;
    }
}
