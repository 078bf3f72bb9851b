//! The tiled prefill attention of [`crate::block_attention`] on tensor cores through the
//! register-level MMA (`m16n8k16`, f16 or bf16 in, f32 accumulation), for runtimes that
//! expose it with `ldmatrix` and asynchronous copies (CUDA from sm_80). Experimental: used
//! only with the feature `mma-prefill` ([`selected`]); written without a GPU at hand and not
//! yet run on one.
//!
//! Unlike [`crate::tensor_core_attention`] (`cmma`, whose fragment layout is opaque), every
//! unit knows which scores it holds: the online softmax runs on the accumulator registers
//! and the probabilities become the `A` operand of `P V` in registers, with no round trip
//! through shared memory. One cube of `PLANES` planes per tile of `QUERIES` queries of one
//! head (the tiles of [`crate::tensor_core_attention`], whose fit check it shares), 16 queries
//! per plane, the tile's key list (the same list and per-query rules as the
//! other prefill kernels) walked [`KEYS`] keys at a time:
//! - the step's entries are resolved to keys once, then its K and V rows are copied
//!   asynchronously from global to shared memory (16 bytes per copy, zeros for a missing key),
//!   into one of two stages: the next step's copies are in flight while this one computes;
//! - each plane computes its 16 x [`KEYS`] scores, `ldmatrix` feeding the K operand;
//! - masks are skipped for steps every query of the tile sees whole (all but the diagonal of
//!   dense causal attention);
//! - the row max takes two shuffles within each quad of units sharing a row, and `P V`
//!   accumulates in registers (`ldmatrix` with transposition feeding V).
//!
//! Tiles are launched heaviest first (causal tiles late in the sequence see more keys) and
//! the query heads of one KV head side by side, so that they read its K and V rows from L2.

use burn::tensor::DType;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::barrier::{copy_async_checked, Barrier};
use cubecl::{cmma, prelude::*};

use crate::block_attention::BlockGeometry;
use crate::key_lists::{entry_key, tile_keys, visible_logit, TileKeys};
use crate::softmax::{log_sum_exp, no_logit, normalized, rescale, weight};
use crate::tensor_core_attention::{half_config, planes_of_32, PLANE, PLANES, QUERIES};

/// Keys per step of the key list.
pub const KEYS: usize = 64;
/// Padding of shared rows (elements): with rows 272 bytes apart the eight rows an
/// `ldmatrix` reads fall on distinct banks.
const PAD: usize = 8;
/// Elements per asynchronous copy (16 bytes).
const COPY: usize = 8;

/// Whether the runtime of `client` has the register-level `m16n8k16` MMA for `dtype` (f16 or
/// bf16) with f32 accumulation, `ldmatrix` and asynchronous copies, on 32-unit planes.
pub fn available<R: CubeRuntime>(client: &ComputeClient<R>, dtype: DType) -> bool {
    let Some(config) = half_config(dtype, 8) else {
        return false;
    };
    let features = &client.properties().features;
    features.matmul.mma.contains(&config)
        && features.matmul.ldmatrix.contains(&config.a_type)
        && features.copy_async
        && planes_of_32(client)
}

/// Whether prefill runs on this kernel: the feature `mma-prefill` is on (the kernel has not
/// yet been run on a GPU; until its CUDA tests pass there, `cmma` is the default) and the
/// runtime has what it needs ([`available`]).
pub fn selected<R: CubeRuntime>(client: &ComputeClient<R>, dtype: DType) -> bool {
    cfg!(feature = "mma-prefill") && available(client, dtype)
}

/// Whether every real query of the tile (positions `first_pos..=last_pos`) sees every entry
/// of `start..start + keys` without a mask: all sink keys or all window keys, none in any
/// query's future, window keys inside every query's window. Block entries are masked always.
#[cube]
fn unmasked_step(
    start: usize,
    list: TileKeys,
    first_pos: usize,
    last_pos: usize,
    window: usize,
    #[comptime] keys: usize,
) -> bool {
    let end = start + keys;
    let mut unmasked = false;
    if end <= list.sink_n {
        unmasked = end - 1 <= first_pos;
    } else if start >= list.sink_n && end <= list.sink_n + list.window_n {
        let first_key = list.window_start + start - list.sink_n;
        unmasked = first_key + keys - 1 <= first_pos && first_key + window > last_pos;
    }
    unmasked
}

/// The keys of entries `step..step + KEYS` into `entry_keys[at..]` and their parts into
/// `entry_parts[at..]`, a unit per entry.
#[cube]
fn resolve_keys(
    step: usize,
    at: usize,
    list: TileKeys,
    blocks: &Tensor<i32>,
    geo: BlockGeometry,
    entry_keys: &mut SharedMemory<i32>,
    entry_parts: &mut SharedMemory<u32>,
    unit: usize,
) {
    if unit < KEYS {
        let (key, part) = entry_key(step + unit, list, blocks, geo);
        entry_keys[at + unit] = key;
        entry_parts[at + unit] = part;
    }
}

/// Asynchronous copies of the K and V rows of the keys `entry_keys[at..at + KEYS]` into the
/// stage of `tiles` at `stage_start` (K rows, then V rows, `head_dim + PAD` apart), 16 bytes
/// each; zeros for a missing key.
#[cube]
#[allow(clippy::too_many_arguments)]
fn copy_rows<F: Float>(
    k: &Tensor<F>,
    v: &Tensor<F>,
    tiles: &mut SharedMemory<F>,
    stage_start: usize,
    entry_keys: &SharedMemory<i32>,
    at: usize,
    kv_base: usize,
    unit: usize,
    #[comptime] head_dim: usize,
) {
    let stride = comptime!(head_dim + PAD);
    let row_copies = comptime!(head_dim / COPY);
    let copies = comptime!((KEYS * head_dim / COPY).div_ceil(PLANES * PLANE));
    let v_start = stage_start + KEYS * stride;
    #[unroll]
    for l in 0..copies {
        let i = unit + l * PLANES * PLANE;
        if i < KEYS * row_copies {
            let r = i / row_copies;
            let c = (i % row_copies) * COPY;
            let key = entry_keys[at + r];
            let mut len = 0usize;
            if key >= 0 {
                len = COPY;
            }
            let src = (kv_base + usize::cast_from(max(key, 0i32))) * head_dim + c;
            let dst = r * stride + c;
            copy_async_checked(
                &k.slice(src, src + len),
                &mut tiles.slice_mut(stage_start + dst, stage_start + dst + COPY),
                COPY as u32,
            );
            copy_async_checked(
                &v.slice(src, src + len),
                &mut tiles.slice_mut(v_start + dst, v_start + dst + COPY),
                COPY as u32,
            );
        }
    }
}

/// Where a plane's queries stand: what the masks and the softmax need.
#[derive(CubeType, Clone, Copy)]
struct PlaneRows {
    /// Position of the tile's first query.
    first_pos: usize,
    /// Real queries in the tile.
    real_queries: usize,
    /// This unit's first row in the tile (its second is 8 further).
    row_in_tile: usize,
    /// This unit's first column in each 8-key tile of scores (its second is the next).
    quad_col: usize,
    lane: usize,
}

/// One step of the key list for a plane's 16 queries: scores on tensor cores from the K
/// rows of the stage at `stage_start`, masks where needed, the online softmax on the
/// registers, and `P V` into `out`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn attend_step<F: Float, NA: Size, NC: Size>(
    q_regs: &Array<Vector<F, NA>>,
    out: &mut Array<Vector<f32, NC>>,
    running_max: &mut Array<f32>,
    running_sum: &mut Array<f32>,
    tiles: &SharedMemory<F>,
    stage_start: usize,
    entry_keys: &SharedMemory<i32>,
    entry_parts: &SharedMemory<u32>,
    at: usize,
    masked: bool,
    rows: PlaneRows,
    window: usize,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let def = cmma::MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);
    let size!(NB) = def.vector_size(cmma::MatrixIdent::B);
    let a_vectors = def.vectors_per_lane(cmma::MatrixIdent::A);
    let b_vectors = def.vectors_per_lane(cmma::MatrixIdent::B);
    let c_vectors = def.vectors_per_lane(cmma::MatrixIdent::Accumulator);
    let stride = comptime!(head_dim + PAD);
    let d_steps = comptime!(head_dim / 16);
    let d_tiles = comptime!(head_dim / 8);
    let key_tiles = comptime!(KEYS / 8);
    let lane = rows.lane;
    let v_start = stage_start + KEYS * stride;

    // Scores of the plane's 16 queries against the step's keys, scaled.
    let mut scores = Array::<Vector<f32, NC>>::new(comptime!(key_tiles * c_vectors));
    #[unroll]
    for n in 0..key_tiles {
        let mut acc = Array::<Vector<f32, NC>>::new(c_vectors);
        #[unroll]
        for i in 0..c_vectors {
            acc[i] = Vector::new(0.0f32);
        }
        #[unroll]
        for d in 0..d_steps {
            let mut a = Array::<Vector<F, NA>>::new(a_vectors);
            #[unroll]
            for i in 0..a_vectors {
                a[i] = q_regs[d * a_vectors + i];
            }
            // Lanes 0-7 point at the rows of dimensions `0..8`, lanes 8-15 at `8..16`.
            let row_at = stage_start + (n * 8 + lane % 8) * stride + d * 16 + ((lane / 8) % 2) * 8;
            let key_frag = def.load_matrix::<F, NB>(
                &tiles.slice(row_at, row_at + 8),
                cmma::MatrixIdent::B,
                b_vectors,
                false,
            );
            def.execute_inplace(&a, &key_frag, &mut acc);
        }
        #[unroll]
        for i in 0..c_vectors {
            scores[n * c_vectors + i] = acc[i] * Vector::new(scale);
        }
    }

    if masked {
        #[unroll]
        for n in 0..key_tiles {
            #[unroll]
            for e in 0..2usize {
                let col = at + n * 8 + rows.quad_col * 2 + e;
                let key = entry_keys[col];
                let part = entry_parts[col];
                #[unroll]
                for h in 0..2usize {
                    let row_in_tile = rows.row_in_tile + h * 8;
                    let mut s = scores[n * c_vectors + h];
                    s[e] = visible_logit(
                        s[e],
                        key,
                        part,
                        rows.first_pos + row_in_tile,
                        row_in_tile < rows.real_queries,
                        window,
                    );
                    scores[n * c_vectors + h] = s;
                }
            }
        }
    }

    // Online softmax per row, on the registers (a row lives in the 4 units of a quad).
    #[unroll]
    for h in 0..2usize {
        let mut step_max = no_logit();
        #[unroll]
        for n in 0..key_tiles {
            let s = scores[n * c_vectors + h];
            step_max = max(step_max, max(s[0], s[1]));
        }
        step_max = max(step_max, plane_shuffle_xor(step_max, 1u32));
        step_max = max(step_max, plane_shuffle_xor(step_max, 2u32));
        let new_max = max(running_max[h], step_max);
        let factor = rescale(running_max[h], new_max);
        let mut sum = running_sum[h] * factor;
        #[unroll]
        for n in 0..key_tiles {
            let mut s = scores[n * c_vectors + h];
            #[unroll]
            for e in 0..2usize {
                let p = weight(s[e], new_max);
                sum += p;
                s[e] = p;
            }
            scores[n * c_vectors + h] = s;
        }
        running_sum[h] = sum;
        running_max[h] = new_max;
        #[unroll]
        for n in 0..d_tiles {
            out[n * c_vectors + h] = out[n * c_vectors + h] * Vector::new(factor);
        }
    }

    // O += P V: the scores of two key tiles are the A operand of 16 keys.
    #[unroll]
    for kk in 0..KEYS / 16 {
        let mut p = Array::<Vector<F, NA>>::new(a_vectors);
        #[unroll]
        for i in 0..a_vectors {
            // A vectors: (row, keys 0..8), (row + 8, keys 0..8), (row, keys 8..16), ...
            let s = scores[(2 * kk + i / 2) * c_vectors + i % 2];
            let mut reg = Vector::empty();
            reg[0] = F::cast_from(s[0]);
            reg[1] = F::cast_from(s[1]);
            p[i] = reg;
        }
        #[unroll]
        for n in 0..d_tiles {
            // Lanes 0-15 point at the step's 16 V rows, at dimensions `n * 8..`.
            let row_at = v_start + (kk * 16 + lane % 16) * stride + n * 8;
            let value_frag = def.load_matrix::<F, NB>(
                &tiles.slice(row_at, row_at + 8),
                cmma::MatrixIdent::B,
                b_vectors,
                true,
            );
            let mut acc = Array::<Vector<f32, NC>>::new(c_vectors);
            #[unroll]
            for i in 0..c_vectors {
                acc[i] = out[n * c_vectors + i];
            }
            def.execute_inplace(&p, &value_frag, &mut acc);
            #[unroll]
            for i in 0..c_vectors {
                out[n * c_vectors + i] = acc[i];
            }
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn mma_attention_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    blocks: &Tensor<i32>,
    output: &mut Tensor<F>,
    lse: &mut Tensor<F>,
    geo: BlockGeometry,
    tile_count: usize,
    scale: f32,
    #[comptime] head_dim: usize,
    #[define(F)] _dtype: StorageType,
) {
    let tile = CUBE_POS;
    if tile >= tile_count {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let plane = UNIT_POS_Y as usize;
    let unit = plane * PLANE + lane;
    let d_steps = comptime!(head_dim / 16);
    let d_tiles = comptime!(head_dim / 8);

    // Tile order: the query heads of a KV head next to each other, the last query tiles first.
    let group = geo.query_heads / geo.kv_heads;
    let in_group = tile % group;
    let rest = tile / group;
    let query_tile = geo.tiles_per_head - 1 - rest % geo.tiles_per_head;
    let head_row = rest / geo.tiles_per_head;
    let kv_head = head_row % geo.kv_heads;
    let b = head_row / geo.kv_heads;
    let head = kv_head * group + in_group;

    let t0 = query_tile * QUERIES;
    let real_queries = min(QUERIES, geo.query_len - t0);
    let first_pos = geo.first_position + t0;
    let last_pos = first_pos + real_queries - 1;
    let list = tile_keys(geo, b, head, t0, first_pos, last_pos);
    let kv_base = (b * geo.kv_heads + kv_head) * geo.kv_len;
    let q_row = (b * geo.query_heads + head) * geo.query_len + t0;

    let def = cmma::MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);
    let size!(NA) = def.vector_size(cmma::MatrixIdent::A);
    let size!(NC) = def.vector_size(cmma::MatrixIdent::Accumulator);
    let a_vectors = def.vectors_per_lane(cmma::MatrixIdent::A);
    let c_vectors = def.vectors_per_lane(cmma::MatrixIdent::Accumulator);
    // The accumulator layout: this unit holds rows `lane / 4` and `lane / 4 + 8` of a tile,
    // columns `2 * (lane % 4)` and the next.
    let rows =
        PlaneRows { first_pos, real_queries, row_in_tile: plane * 16 + lane / 4, quad_col: lane % 4, lane };

    // The plane's 16 queries as A operands, one per 16 dimensions (zeros past the last query).
    let mut q_regs = Array::<Vector<F, NA>>::new(comptime!(d_steps * a_vectors));
    #[unroll]
    for d in 0..d_steps {
        #[unroll]
        for i in 0..a_vectors {
            let mut reg = Vector::empty();
            #[unroll]
            for e in 0..2usize {
                let (r, c) = def.position_of_nth(lane as u32, (i * 2 + e) as u32, cmma::MatrixIdent::A);
                let row = plane * 16 + r as usize;
                let mut x = F::new(0.0);
                if row < real_queries {
                    x = q[(q_row + row) * head_dim + d * 16 + c as usize];
                }
                reg[e] = x;
            }
            q_regs[d * a_vectors + i] = reg;
        }
    }

    let mut out = Array::<Vector<f32, NC>>::new(comptime!(d_tiles * c_vectors));
    #[unroll]
    for i in 0..d_tiles * c_vectors {
        out[i] = Vector::new(0.0f32);
    }
    let mut running_max = Array::<f32>::new(2usize);
    let mut running_sum = Array::<f32>::new(2usize);
    #[unroll]
    for h in 0..2usize {
        running_max[h] = no_logit();
        running_sum[h] = 0.0f32;
    }

    // Two stages, each K rows then V rows: the next step's rows are copied while the current
    // step is computed. Stage `s` has its entries at `s * KEYS` and its barrier `barriers[s]`.
    let stage_len = comptime!(2 * KEYS * (head_dim + PAD));
    let mut tiles = SharedMemory::<F>::new_aligned(comptime!(2 * stage_len), 16usize);
    let mut entry_keys = SharedMemory::<i32>::new(comptime!(2 * KEYS));
    let mut entry_parts = SharedMemory::<u32>::new(comptime!(2 * KEYS));
    let barrier_0 = Barrier::shared(CUBE_DIM, UNIT_POS == 0);
    let barrier_1 = Barrier::shared(CUBE_DIM, UNIT_POS == 0);

    resolve_keys(0usize, 0usize, list, blocks, geo, &mut entry_keys, &mut entry_parts, unit);
    sync_cube();
    copy_rows(k, v, &mut tiles, 0usize, &entry_keys, 0usize, kv_base, unit, head_dim);
    barrier_0.commit_copy_async();
    barrier_0.arrive();

    let mut step = 0usize;
    let mut stage = 0usize;
    let mut phase = 0u32;
    while step < list.entries {
        let next = step + KEYS;
        let next_stage = 1 - stage;
        resolve_keys(next, next_stage * KEYS, list, blocks, geo, &mut entry_keys, &mut entry_parts, unit);
        sync_cube();
        if next < list.entries {
            copy_rows(
                k,
                v,
                &mut tiles,
                next_stage * stage_len,
                &entry_keys,
                next_stage * KEYS,
                kv_base,
                unit,
                head_dim,
            );
        }
        if stage == 0 {
            barrier_1.commit_copy_async();
            barrier_1.arrive();
            barrier_0.wait_parity(phase);
        } else {
            barrier_0.commit_copy_async();
            barrier_0.arrive();
            barrier_1.wait_parity(phase);
            phase ^= 1u32;
        }
        let masked = !unmasked_step(step, list, first_pos, last_pos, geo.window, KEYS);
        attend_step::<F, NA, NC>(
            &q_regs,
            &mut out,
            &mut running_max,
            &mut running_sum,
            &tiles,
            stage * stage_len,
            &entry_keys,
            &entry_parts,
            stage * KEYS,
            masked,
            rows,
            geo.window,
            scale,
            head_dim,
        );
        sync_cube();
        step = next;
        stage = next_stage;
    }

    // Row sums over the quad, then the normalised outputs and the log-sum-exp.
    #[unroll]
    for h in 0..2usize {
        let mut sum = running_sum[h];
        sum += plane_shuffle_xor(sum, 1u32);
        sum += plane_shuffle_xor(sum, 2u32);
        let row_in_tile = rows.row_in_tile + h * 8;
        if row_in_tile < real_queries {
            let row = q_row + row_in_tile;
            #[unroll]
            for n in 0..d_tiles {
                let o = out[n * c_vectors + h];
                #[unroll]
                for e in 0..2usize {
                    output[row * head_dim + n * 8 + rows.quad_col * 2 + e] =
                        F::cast_from(normalized(o[e], sum));
                }
            }
            if rows.quad_col == 0 {
                lse[row] = F::cast_from(log_sum_exp(running_max[h], sum));
            }
        }
    }
}
