//! The tiled prefill attention of [`crate::block_attention`] on tensor cores (`cmma`,
//! 16x16x16, f16 or bf16 in, f32 accumulation), for runtimes that have them: CUDA, and
//! wgpu compiled to SPIR-V where the Vulkan driver has cooperative matrices (feature
//! `vulkan`; measured on NVIDIA's, f16).
//!
//! One cube of [`PLANES`] planes of 32 units per tile of [`QUERIES`] queries of one head;
//! each plane owns 16 queries. The tile's key list (sink, the union of its queries'
//! windows, the chosen key blocks: the same list and the same per-query rules as the
//! CUDA-core kernel) is walked [`KEYS`] keys at a time:
//! - every unit loads its share of the step's K and V rows into registers, all loads in
//!   flight together, then stores them into shared memory (rows padded against bank
//!   conflicts);
//! - each plane computes its 16 x [`KEYS`] scores `Q K^T` on tensor cores;
//! - two units per query row mask them and keep the running max and sum (the online softmax
//!   of [`crate::softmax`]), and write the probabilities back in the input dtype;
//! - `P V` accumulates on tensor cores into f32 fragments that stay in registers. When a
//!   row's maximum grows, the plane's output fragments take a round trip through shared
//!   memory to be rescaled; after the first steps that is rare.
//!
//! Logits are scaled in f32.

use burn::tensor::DType;
use burn_cubecl::CubeRuntime;
use cubecl::features::MmaConfig;
use cubecl::ir::{ElemType, FloatKind};
use cubecl::{cmma, prelude::*};

use crate::block_attention::BlockGeometry;
use crate::key_lists::{entry_key, tile_keys, visible_logit, TileKeys};
use crate::softmax::{log_sum_exp, no_logit, normalized, rescale, weight};

/// Planes (of 32 units) per cube.
pub const PLANES: usize = 4;
/// Queries per cube: 16 per plane.
pub const QUERIES: usize = PLANES * 16;
/// Keys per step of the key list (64 measured no faster on an H200).
pub const KEYS: usize = 32;
/// Units per plane the kernel is written for.
pub(crate) const PLANE: usize = 32;
/// Largest head dimension (the shared tiles take about 32 KB at 128).
const MAX_HEAD_DIM: usize = 128;
/// Padding of shared rows (elements): rows 256 bytes apart would put every row of a
/// fragment on the same memory banks.
const PAD: usize = 8;

/// Whether the runtime of `client` multiplies 16x16x16 tiles of `dtype` (f16 or bf16) into
/// f32 with 32-unit planes.
pub fn available<R: CubeRuntime>(client: &ComputeClient<R>, dtype: DType) -> bool {
    half_config(dtype, 16).is_some_and(|config| client.properties().features.matmul.cmma.contains(&config))
        && planes_of_32(client)
}

/// The tensor-core shape `16 x n x 16` with `dtype` in (f16 or bf16, else `None`) and f32
/// accumulation.
pub(crate) fn half_config(dtype: DType, n: u32) -> Option<MmaConfig> {
    let kind = match dtype {
        DType::F16 => FloatKind::F16,
        DType::BF16 => FloatKind::BF16,
        _ => return None,
    };
    Some(MmaConfig {
        a_type: ElemType::Float(kind).into(),
        b_type: ElemType::Float(kind).into(),
        cd_type: ElemType::Float(FloatKind::F32).into(),
        m: 16,
        n,
        k: 16,
    })
}

/// Whether every plane of the runtime has the [`PLANE`] units the tensor-core kernels are
/// written for.
pub(crate) fn planes_of_32<R: CubeRuntime>(client: &ComputeClient<R>) -> bool {
    let hardware = &client.properties().hardware;
    hardware.plane_size_min as usize == PLANE && hardware.plane_size_max as usize == PLANE
}

/// Whether the tensor-core kernels (this one and [`crate::mma_attention`], with the same
/// query tiles) take these sizes: equal head and value dimensions, a multiple of 16 up to
/// 128, and query blocks (when keys are chosen per block) of whole query tiles.
pub fn supports(head_dim: usize, value_dim: usize, query_block: Option<usize>) -> bool {
    head_dim == value_dim
        && head_dim.is_multiple_of(16)
        && head_dim > 0
        && head_dim <= MAX_HEAD_DIM
        && query_block.is_none_or(|b| b.is_multiple_of(QUERIES))
}

/// A 16x16x16 operand fragment (`A` or `B`) loaded from `slice`, whose rows (or columns,
/// for a column-major `B`) lie `stride` elements apart.
#[cube]
pub(crate) fn operand<F: Float, V: CubePrimitive>(
    slice: &Slice<V>,
    stride: u32,
    #[comptime] ident: cmma::MatrixIdent,
    #[comptime] layout: cmma::MatrixLayout,
) -> cmma::Matrix<F> {
    let fragment = unsafe { cmma::Matrix::<F>::uninitialized(ident, 16usize, 16usize, 16usize, layout) };
    cmma::load(&fragment, slice, stride);
    fragment
}

/// A 16x16 f32 accumulator fragment of zeros.
#[cube]
pub(crate) fn zero_accumulator() -> cmma::Matrix<f32> {
    cmma::Matrix::<f32>::from_value(
        cmma::MatrixIdent::Accumulator,
        16usize,
        16usize,
        16usize,
        cmma::MatrixLayout::Undefined,
        0.0f32,
    )
}

/// This unit's share of the K and V rows of the list entries `first..first + keys`
/// (zeros for a missing key), into registers.
#[cube]
#[allow(clippy::too_many_arguments)]
fn gather<F: Float, N: Size>(
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    rows_k: &mut Array<Vector<F, N>>,
    rows_v: &mut Array<Vector<F, N>>,
    unit: usize,
    first: usize,
    list: TileKeys,
    blocks: &Tensor<i32>,
    kv_base: usize,
    geo: BlockGeometry,
    #[comptime] row_vectors: usize,
    #[comptime] loads: usize,
    #[comptime] keys: usize,
) {
    #[unroll]
    for l in 0..loads {
        let i = unit + l * PLANES * PLANE;
        let mut kx = Vector::new(F::new(0.0));
        let mut vx = Vector::new(F::new(0.0));
        if i < keys * row_vectors {
            let (key, _part) = entry_key(first + i / row_vectors, list, blocks, geo);
            if key >= 0 {
                let at = (kv_base + usize::cast_from(key)) * row_vectors + i % row_vectors;
                kx = k[at];
                vx = v[at];
            }
        }
        rows_k[l] = kx;
        rows_v[l] = vx;
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tensor_core_attention_kernel<F: Float, N: Size>(
    q: &Tensor<Vector<F, N>>,
    k: &Tensor<Vector<F, N>>,
    v: &Tensor<Vector<F, N>>,
    blocks: &Tensor<i32>,
    output: &mut Tensor<F>,
    lse: &mut Tensor<F>,
    geo: BlockGeometry,
    tile_count: usize,
    scale: f32,
    #[comptime] head_dim: usize,
    #[comptime] width: usize,
    #[comptime] keys: usize,
    #[define(F)] _dtype: StorageType,
) {
    let score_stride = comptime!(keys + 4);
    let prob_stride = comptime!(keys + PAD);
    let tile_rows = comptime!(if QUERIES > 2 * keys { QUERIES } else { 2 * keys });
    let tile = CUBE_POS;
    if tile >= tile_count {
        terminate!();
    }
    let lane = UNIT_POS_X as usize;
    let plane = UNIT_POS_Y as usize;
    let unit = plane * PLANE + lane;
    let row_vectors = comptime!(head_dim / width);

    let query_tile = tile % geo.tiles_per_head;
    let head = (tile / geo.tiles_per_head) % geo.query_heads;
    let b = tile / (geo.tiles_per_head * geo.query_heads);
    let t0 = query_tile * QUERIES;
    let real_queries = min(QUERIES, geo.query_len - t0);
    let first_pos = geo.first_position + t0;
    let last_pos = first_pos + real_queries - 1;

    let list = tile_keys(geo, b, head, t0, first_pos, last_pos);
    let entries = list.entries;
    let kv_head = head / (geo.query_heads / geo.kv_heads);
    let kv_base = (b * geo.kv_heads + kv_head) * geo.kv_len;
    let q_row = (b * geo.query_heads + head) * geo.query_len + t0;

    // Shared rows of `stride` elements, held as vectors of `width`: the query tile first,
    // then the K rows (`0..keys`) and the V rows (`keys..2 keys`) of each step.
    let vstride = comptime!((head_dim + PAD) / width);
    let mut tiles = SharedMemory::<Vector<F, N>>::new_aligned(tile_rows * (head_dim + PAD) / width, 32usize);
    let mut scores = SharedMemory::<f32>::new_aligned(PLANES * 16 * score_stride, 32usize);
    let mut probs = SharedMemory::<F>::new_aligned(PLANES * 16 * prob_stride, 32usize);
    let v_start = comptime!(keys * vstride);
    let tiles_len = comptime!(tile_rows * vstride);
    let scores_len = PLANES * 16 * score_stride;
    let probs_len = PLANES * 16 * prob_stride;
    let mut entry_keys = SharedMemory::<i32>::new(keys);
    let mut entry_parts = SharedMemory::<u32>::new(keys);

    // The queries, zero past the last one.
    for i in range_stepped(unit, QUERIES * row_vectors, PLANES * PLANE) {
        let r = i / row_vectors;
        let mut x = Vector::new(F::new(0.0));
        if r < real_queries {
            x = q[(q_row + r) * row_vectors + i % row_vectors];
        }
        tiles[r * vstride + i % row_vectors] = x;
    }
    sync_cube();
    let plane_q = plane * 16 * vstride;
    let mut q_frags = Sequence::<cmma::Matrix<F>>::new();
    let mut out_frags = Sequence::<cmma::Matrix<f32>>::new();
    #[unroll]
    for d in 0..head_dim / 16 {
        let fragment = operand::<F, Vector<F, N>>(
            &tiles.slice(plane_q + d * 16 / width, tiles_len),
            comptime!((head_dim + PAD) as u32),
            cmma::MatrixIdent::A,
            cmma::MatrixLayout::RowMajor,
        );
        q_frags.push(fragment);
        out_frags.push(zero_accumulator());
    }

    // Two units per query row: row `lane / 2`, columns of half `lane % 2`.
    let row = lane / 2;
    let half = lane % 2;
    let row_in_tile = plane * 16 + row;
    let pos = first_pos + row_in_tile;
    let real = row_in_tile < real_queries;
    let plane_scores = plane * 16 * score_stride;
    let plane_probs = plane * 16 * prob_stride;
    let mut running_max = no_logit();
    let mut running_sum = 0.0f32;

    // Each unit gathers `loads` vectors of K and of V per step, all loads issued before the
    // first store. (Loading the next step's rows during the current step's products was
    // measured 1.4x slower on an H200: the registers it holds cost occupancy.)
    let loads = comptime!((keys * (head_dim / width)).div_ceil(PLANES * PLANE));
    let mut rows_k = Array::<Vector<F, N>>::new(loads);
    let mut rows_v = Array::<Vector<F, N>>::new(loads);

    // Every plane has its query fragments before the tiles are overwritten.
    sync_cube();
    let mut tile_start = 0usize;
    while tile_start < entries {
        gather(
            k,
            v,
            &mut rows_k,
            &mut rows_v,
            unit,
            tile_start,
            list,
            blocks,
            kv_base,
            geo,
            row_vectors,
            loads,
            keys,
        );
        #[unroll]
        for l in 0..loads {
            let i = unit + l * PLANES * PLANE;
            if i < keys * row_vectors {
                let at = (i / row_vectors) * vstride + i % row_vectors;
                tiles[at] = rows_k[l];
                tiles[v_start + at] = rows_v[l];
            }
        }
        if unit < keys {
            let (key, part) = entry_key(tile_start + unit, list, blocks, geo);
            entry_keys[unit] = key;
            entry_parts[unit] = part;
        }
        sync_cube();

        // Scores of the plane's 16 queries against the tile's keys.
        #[unroll]
        for n in 0..keys / 16 {
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
                &mut scores.slice_mut(plane_scores + n * 16, scores_len),
                &s,
                comptime!(score_stride as u32),
                cmma::MatrixLayout::RowMajor,
            );
        }
        sync_plane();

        // Mask, running max and sum, probabilities.
        let row_base = plane_scores + row * score_stride + half * (keys / 2);
        let prob_base = plane_probs + row * prob_stride + half * (keys / 2);
        let mut tile_max = no_logit();
        #[unroll]
        for c in 0..keys / 2 {
            let j = half * (keys / 2) + c;
            let logit = visible_logit(
                scores[row_base + c] * scale,
                entry_keys[j],
                entry_parts[j],
                pos,
                real,
                geo.window,
            );
            scores[row_base + c] = logit;
            tile_max = max(tile_max, logit);
        }
        tile_max = max(tile_max, plane_shuffle_xor(tile_max, 1u32));
        let new_max = max(running_max, tile_max);
        let factor = rescale(running_max, new_max);
        let mut tile_sum = 0.0f32;
        #[unroll]
        for c in 0..keys / 2 {
            let p = weight(scores[row_base + c], new_max);
            tile_sum += p;
            probs[prob_base + c] = F::cast_from(p);
        }
        tile_sum += plane_shuffle_xor(tile_sum, 1u32);
        running_sum = running_sum * factor + tile_sum;
        running_max = new_max;
        sync_plane();

        // Output rows whose maximum grew are rescaled, through shared memory.
        if plane_any(factor < 1.0f32) {
            #[unroll]
            for n in 0..head_dim / 16 {
                cmma::store(
                    &mut scores.slice_mut(plane_scores, scores_len),
                    out_frags.index(n),
                    comptime!(score_stride as u32),
                    cmma::MatrixLayout::RowMajor,
                );
                sync_plane();
                #[unroll]
                for c in 0..8 {
                    let at = plane_scores + row * score_stride + half * 8 + c;
                    scores[at] = scores[at] * factor;
                }
                sync_plane();
                cmma::load_with_layout(
                    out_frags.index(n),
                    &scores.slice(plane_scores, scores_len),
                    comptime!(score_stride as u32),
                    cmma::MatrixLayout::RowMajor,
                );
                sync_plane();
            }
        }

        // O += P V.
        #[unroll]
        for kk in 0..keys / 16 {
            let p_frag = cmma::Matrix::<F>::from_slice(
                cmma::MatrixIdent::A,
                16usize,
                16usize,
                16usize,
                cmma::MatrixLayout::RowMajor,
                &probs.slice(plane_probs + kk * 16, probs_len),
                comptime!(prob_stride as u32),
            );
            #[unroll]
            for n in 0..head_dim / 16 {
                let value_frag = operand::<F, Vector<F, N>>(
                    &tiles.slice(v_start + kk * 16 * vstride + n * 16 / width, tiles_len),
                    comptime!((head_dim + PAD) as u32),
                    cmma::MatrixIdent::B,
                    cmma::MatrixLayout::RowMajor,
                );
                cmma::execute::<F, F, f32, f32>(&p_frag, &value_frag, out_frags.index(n), out_frags.index(n));
            }
        }
        sync_cube();
        tile_start += keys;
    }

    // Normalised outputs, a 16 x 16 fragment at a time through the plane's scratch.
    #[unroll]
    for n in 0..head_dim / 16 {
        cmma::store(
            &mut scores.slice_mut(plane_scores, scores_len),
            out_frags.index(n),
            comptime!(score_stride as u32),
            cmma::MatrixLayout::RowMajor,
        );
        sync_plane();
        if real {
            #[unroll]
            for c in 0..8 {
                let col = half * 8 + c;
                output[(q_row + row_in_tile) * head_dim + n * 16 + col] =
                    F::cast_from(normalized(scores[plane_scores + row * score_stride + col], running_sum));
            }
        }
        sync_plane();
    }
    if real && half == 0 {
        lse[q_row + row_in_tile] = F::cast_from(log_sum_exp(running_max, running_sum));
    }
}
