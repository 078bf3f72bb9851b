//! Top-k keys per query without a full sort: a radix select finds the k-th largest score,
//! then one pass writes the keys above it and the first keys equal to it, in key order.
//!
//! One cube of [`UNITS`] units per selection row. The radix rounds' histograms read the
//! row with the units interleaved (coalesced); the final passes give each unit a contiguous
//! run of the candidate keys, so that "the first ties" means the lowest key indices,
//! deterministically.
//! Float scores are mapped to order-preserving u32 keys. (Signature match counts take few
//! values and have their own kernels, [`crate::match_top_k`].)

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::prelude::*;

use crate::grid::cube_count;

/// Units per cube (and histogram bins: 8-bit digits).
pub const UNITS: usize = 256;
/// Order key of `-inf`; keys at or below it are never selected (NaN maps to 0).
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

/// The order key of a float score: larger scores give larger keys; NaN gives 0.
#[cube]
#[allow(clippy::eq_op)]
fn order_key<F: Float>(scores: &Tensor<F>, rows: SelectRows, row: usize, key: usize) -> u32 {
    let x = f32::cast_from(scores[row * rows.kv_len + key]);
    let bits = u32::reinterpret(x);
    let mut order = 0u32;
    // NaN is the only value unequal to itself; it keeps order 0 (never selected).
    if x == x {
        order = select(bits >= 0x8000_0000u32, !bits, bits | 0x8000_0000u32);
    }
    order
}

#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
fn top_k_kernel<F: Float>(
    scores: &Tensor<F>,
    selected: &mut Tensor<i32>,
    rows: SelectRows,
    row_count: usize,
    floor: u32,
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
    let candidates = end - rows.sink;
    let chunk = (candidates + UNITS - 1usize) / UNITS;
    let lo = min(rows.sink + unit * chunk, end);
    let hi = min(lo + chunk, end);

    let histogram = SharedMemory::<Atomic<u32>>::new(UNITS);
    let mut counts = SharedMemory::<u32>::new(2usize * UNITS);
    let mut state = SharedMemory::<u32>::new(4usize);

    let mut prefix = 0u32;
    let mut mask = 0u32;
    let mut remaining = u32::cast_from(rows.k);
    for round in 0..rounds {
        let shift = u32::cast_from(8usize * (rounds - 1usize - round));
        histogram[unit].store(0u32);
        sync_cube();
        // A histogram does not care which unit counts a key: units stride over the row
        // together, so that a plane's loads are contiguous (the runs below are not).
        let mut key = rows.sink + unit;
        while key < end {
            let order = order_key::<F>(scores, rows, row, key);
            if order > floor && (order & mask) == prefix {
                histogram[usize::cast_from((order >> shift) & 255u32)].fetch_add(1u32);
            }
            key += UNITS;
        }
        sync_cube();
        if unit == 0usize {
            let mut above = 0u32;
            let mut digit = 0u32;
            let mut found = false;
            for i in 0usize..UNITS {
                let d = UNITS - 1usize - i;
                let c = histogram[d].load();
                if !found {
                    if above + c >= remaining {
                        digit = u32::cast_from(d);
                        found = true;
                    } else {
                        above += c;
                    }
                }
            }
            state[0usize] = digit;
            state[1usize] = select(found, remaining - above, 0u32);
            if round == 0usize {
                // Fewer selectable keys than k: take them all.
                state[2usize] = select(found, 0u32, 1u32);
            }
        }
        sync_cube();
        prefix |= state[0usize] << shift;
        mask |= 255u32 << shift;
        remaining = state[1usize];
    }
    let take_all = state[2usize] == 1u32;
    let threshold = select(take_all, floor, prefix);
    let ties_wanted = select(take_all, 0u32, remaining);

    let mut above = 0u32;
    let mut ties = 0u32;
    for key in lo..hi {
        let order = order_key::<F>(scores, rows, row, key);
        if order > threshold {
            above += 1u32;
        } else if order == threshold && order > floor {
            ties += 1u32;
        }
    }
    counts[unit] = above;
    counts[UNITS + unit] = ties;
    sync_cube();
    if unit == 0usize {
        let mut written = 0u32;
        let mut ties_before = 0u32;
        for u in 0usize..UNITS {
            let unit_above = counts[u];
            let unit_ties = counts[UNITS + u];
            let mut taken = 0u32;
            if ties_wanted > ties_before {
                taken = min(ties_wanted - ties_before, unit_ties);
            }
            counts[u] = written;
            counts[UNITS + u] = ties_before;
            written += unit_above + taken;
            ties_before += unit_ties;
        }
        state[3usize] = written;
    }
    sync_cube();
    let mut position = usize::cast_from(counts[unit]);
    let mut ties_seen = counts[UNITS + unit];
    let out_base = row * rows.k;
    for key in lo..hi {
        let order = order_key::<F>(scores, rows, row, key);
        let mut chosen = order > threshold;
        if order == threshold && order > floor {
            chosen = ties_seen < ties_wanted;
            ties_seen += 1u32;
        }
        if chosen {
            selected[out_base + position] = i32::cast_from(key);
            position += 1usize;
        }
    }
    let written = usize::cast_from(state[3usize]);
    let mut pad = written + unit;
    while pad < rows.k {
        selected[out_base + pad] = i32::new(-1);
        pad += UNITS;
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
    crate::launches::count();
    top_k_kernel::launch::<R>(
        &client,
        cube_count(row_count),
        CubeDim::new_1d(UNITS as u32),
        into_contiguous(scores).into_tensor_arg(),
        selected.clone().into_tensor_arg(),
        rows,
        row_count,
        FLOAT_FLOOR,
        4,
        dtype.into(),
    );
    selected
}
