//! Top-k keys per query without a full sort: a radix select finds the k-th largest score,
//! then one pass writes the keys above it and the first keys equal to it, in key order.
//!
//! One cube of [`UNITS`] units per selection row. Float scores are mapped to
//! order-preserving unsigned keys of as many bits as the dtype has (32 for f32; 19 for f16
//! and 16 for bf16, whose f32 images have trailing zero bits), taken [`DIGIT_BITS`] at a
//! time from the top: 3 rounds for f32, 2 for half precision. Each round's histogram reads
//! the row with the units interleaved (coalesced), and the bin holding the k-th key is found
//! by a prefix sum over the units, each owning a run of bins (no unit scans them all). Wide
//! digits spread even the first round's keys (sign and exponent, mostly equal) over many
//! bins, so that the histogram's atomics seldom collide.
//!
//! The write pass stages tiles of the row in shared memory, read coalesced; each unit then
//! walks a contiguous run of a tile, and a prefix sum over the units places its keys, so
//! that "the first ties" are the lowest key indices, deterministically. (Signature match
//! counts take few values and have their own kernels, [`crate::match_top_k`].)

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::prelude::*;

use crate::grid::cube_count;

/// Units per cube.
pub const UNITS: usize = 256;
/// Levels of a prefix sum over the units (`2^SCAN_LEVELS == UNITS`).
const SCAN_LEVELS: usize = 8;
/// Bits of a radix digit.
const DIGIT_BITS: u32 = 11;
/// Histogram bins (`2^DIGIT_BITS`).
const BINS: usize = 2048;
/// Bins each unit owns when the threshold's bin is looked for.
const BINS_PER_UNIT: usize = BINS / UNITS;
/// Keys of a unit's run in the write pass.
const RUN: usize = 8;
/// Keys of a tile of the write pass (staged in shared memory).
const TILE: usize = UNITS * RUN;
/// Order key of `-inf` in f32 (shifted like the keys for narrower dtypes); keys at or below
/// it are never selected (NaN maps to 0).
const FLOAT_FLOOR: u32 = 0x007F_FFFF;

/// Row geometry shared by the kernel and its launch.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct SelectRows {
    query_len: usize,
    kv_len: usize,
    /// Position of query 0 in the context.
    first_position: usize,
    sink: usize,
    window: usize,
    k: usize,
}

/// The order key of a float score: larger scores give larger keys; NaN gives 0. The f32
/// image's `low_bits` trailing bits, constant for a narrower dtype, are dropped.
#[cube]
#[allow(clippy::eq_op)]
fn order_key<F: Float>(scores: &Tensor<F>, rows: SelectRows, row: usize, key: usize, low_bits: u32) -> u32 {
    let x = f32::cast_from(scores[row * rows.kv_len + key]);
    let bits = u32::reinterpret(x);
    let mut order = 0u32;
    // NaN is the only value unequal to itself; it keeps order 0 (never selected).
    if x == x {
        order = select(bits >= 0x8000_0000u32, !bits, bits | 0x8000_0000u32) >> low_bits;
    }
    order
}

/// Where entry `i` of a staged tile sits: a word of padding every 32 entries, so that the
/// units' runs of [`RUN`] start on different banks.
#[cube]
fn padded(i: usize) -> usize {
    i + i / 32
}

/// Inclusive prefix sums of `values[0..UNITS]` in place, one value per unit.
#[cube]
fn prefix_sums(values: &mut SharedMemory<u32>) {
    let unit = UNIT_POS as usize;
    #[unroll]
    for level in 0..SCAN_LEVELS {
        let offset = 1usize << level;
        let mut add = 0u32;
        if unit >= offset {
            add = values[unit - offset];
        }
        sync_cube();
        values[unit] += add;
        sync_cube();
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
fn top_k_kernel<F: Float>(
    scores: &Tensor<F>,
    selected: &mut Tensor<i32>,
    rows: SelectRows,
    row_count: usize,
    floor: u32,
    low_bits: u32,
    #[comptime] rounds: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = CUBE_POS;
    if row >= row_count {
        terminate!();
    }
    let unit = usize::cast_from(UNIT_POS);
    let t = row % rows.query_len;
    let last = rows.first_position + t;
    // Candidates: keys in sink..end, outside the sink and the window.
    let mut end = rows.sink;
    if last + 1 > rows.sink + rows.window {
        end = last + 1 - rows.window;
    }

    let histogram = SharedMemory::<Atomic<u32>>::new(BINS);
    let mut scan = SharedMemory::<u32>::new(UNITS);
    let mut stage = SharedMemory::<u32>::new(TILE + TILE / 32);
    let mut state = SharedMemory::<u32>::new(3usize);
    if unit == 0usize {
        // Stays 1 when the row has fewer selectable keys than k: then all are taken.
        state[2usize] = 1u32;
    }

    let key_bits = 32u32 - low_bits;
    let mut prefix = 0u32;
    let mut mask = 0u32;
    let mut remaining = u32::cast_from(rows.k);
    for round in 0..rounds {
        let top = key_bits - DIGIT_BITS * u32::cast_from(round);
        let mut shift = 0u32;
        if top > DIGIT_BITS {
            shift = top - DIGIT_BITS;
        }
        let digits = (1u32 << (top - shift)) - 1u32;
        for bin in range_stepped(unit, BINS, UNITS) {
            histogram[bin].store(0u32);
        }
        sync_cube();
        // A histogram does not care which unit counts a key: units stride over the row
        // together, so that a plane's loads are contiguous.
        for key in range_stepped(rows.sink + unit, end, UNITS) {
            let order = order_key::<F>(scores, rows, row, key, low_bits);
            if order > floor && (order & mask) == prefix {
                histogram[usize::cast_from((order >> shift) & digits)].fetch_add(1u32);
            }
        }
        sync_cube();
        // Unit u owns the u-th run of bins from the top; a prefix sum gives the keys in and
        // above each run, and the unit whose run reaches `remaining` finds the digit in it.
        let first_bin = BINS - BINS_PER_UNIT * (unit + 1usize);
        let mut own = 0u32;
        #[unroll]
        for i in 0..BINS_PER_UNIT {
            own += histogram[first_bin + i].load();
        }
        scan[unit] = own;
        sync_cube();
        prefix_sums(&mut scan);
        let mut above = scan[unit] - own;
        if above < remaining && above + own >= remaining {
            let mut found = false;
            #[unroll]
            for i in 0..BINS_PER_UNIT {
                let bin = first_bin + BINS_PER_UNIT - 1usize - i;
                let c = histogram[bin].load();
                if !found {
                    if above + c >= remaining {
                        state[0usize] = u32::cast_from(bin);
                        state[1usize] = remaining - above;
                        found = true;
                    } else {
                        above += c;
                    }
                }
            }
            if round == 0usize {
                state[2usize] = 0u32;
            }
        }
        sync_cube();
        prefix |= state[0usize] << shift;
        mask |= digits << shift;
        remaining = state[1usize];
    }
    let take_all = state[2usize] == 1u32;
    let threshold = select(take_all, floor, prefix);
    let ties_wanted = select(take_all, 0u32, remaining);

    // The write pass, tile by tile: each unit counts the keys above the threshold and the
    // ties in its run (packed: above in the high half, ties in the low, a tile holds fewer
    // than 2^16 keys), a prefix sum places them after the earlier units' and tiles'.
    let out_base = row * rows.k;
    let mut base_above = 0u32;
    let mut base_ties = 0u32;
    let mut tile_start = rows.sink;
    while tile_start < end {
        #[unroll]
        for i in 0..RUN {
            let entry = i * UNITS + unit;
            let key = tile_start + entry;
            let mut order = 0u32;
            if key < end {
                order = order_key::<F>(scores, rows, row, key, low_bits);
            }
            stage[padded(entry)] = order;
        }
        sync_cube();
        let mut own = 0u32;
        #[unroll]
        for i in 0..RUN {
            let order = stage[padded(unit * RUN + i)];
            if order > threshold {
                own += 1u32 << 16u32;
            } else if order == threshold && order > floor {
                own += 1u32;
            }
        }
        scan[unit] = own;
        sync_cube();
        prefix_sums(&mut scan);
        let before = scan[unit] - own;
        let tie_rank = base_ties + (before & 0xFFFFu32);
        let mut position = usize::cast_from(base_above + (before >> 16u32) + min(tie_rank, ties_wanted));
        let mut ties_seen = tie_rank;
        #[unroll]
        for i in 0..RUN {
            let order = stage[padded(unit * RUN + i)];
            let mut chosen = order > threshold;
            if order == threshold && order > floor {
                chosen = ties_seen < ties_wanted;
                ties_seen += 1u32;
            }
            if chosen {
                selected[out_base + position] = i32::cast_from(tile_start + unit * RUN + i);
                position += 1usize;
            }
        }
        let tile = scan[UNITS - 1usize];
        base_above += tile >> 16u32;
        base_ties += tile & 0xFFFFu32;
        // The next tile overwrites the stage and the sums.
        sync_cube();
        tile_start += TILE;
    }
    let written = usize::cast_from(base_above + min(base_ties, ties_wanted));
    for slot in range_stepped(written + unit, rows.k, UNITS) {
        selected[out_base + slot] = i32::new(-1);
    }
}

/// The top `k` keys of each causal query among keys `sink..=last - window` (`last` the
/// query's own position, `first_position + query index`) by float `scores`
/// `[batch, heads, query_len, kv_len]`, higher is better (NaN and `-inf` never selected),
/// ties broken towards the lower key index.
///
/// Returns i32 key indices `[batch, heads, query_len, k]` in ascending key order; `-1` pads
/// rows with fewer than `k` candidates.
pub fn top_k<R: CubeRuntime>(
    scores: CubeTensor<R>,
    first_position: usize,
    sink: usize,
    window: usize,
    k: usize,
) -> CubeTensor<R> {
    let [batch, heads, query_len, kv_len] = scores.shape().dims::<4>();
    let client = scores.client.clone();
    let selected = empty_device_contiguous_dtype(
        client.clone(),
        scores.device.clone(),
        Shape::new([batch, heads, query_len, k]),
        DType::I32,
    );
    let row_count = batch * heads * query_len;
    if row_count == 0 || k == 0 {
        return selected;
    }
    assert!(first_position + query_len <= kv_len, "queries past the context");
    let rows = SelectRowsLaunch::new(query_len, kv_len, first_position, sink, window, k);
    let dtype = scores.dtype;
    // Trailing bits of the f32 image that a narrower float leaves at zero (their order
    // keys, one's complements for negative scores, are constant there too).
    let low_bits = match dtype {
        DType::F16 => 13,
        DType::BF16 => 16,
        _ => 0,
    };
    let rounds = (32 - low_bits).div_ceil(DIGIT_BITS) as usize;
    crate::launches::count();
    top_k_kernel::launch::<R>(
        &client,
        cube_count(row_count),
        CubeDim::new_1d(UNITS as u32),
        into_contiguous(scores).into_tensor_arg(),
        selected.clone().into_tensor_arg(),
        rows,
        row_count,
        FLOAT_FLOOR >> low_bits,
        low_bits,
        rounds,
        dtype.into(),
    );
    selected
}
