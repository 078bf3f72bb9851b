//! Top-k keys per query by the number of signature bits they share with it (HashAttention),
//! spread over many cubes per query row and with no sort.
//!
//! A match count takes one of `group * bits + 1` values, so the k-th largest is found from a
//! histogram. Two launches, each with `chunks` cubes per row, every cube owning a contiguous
//! chunk of the row's candidate keys:
//! 1. [`histogram_kernel`]: each cube counts its chunk's match counts into its own histogram.
//! 2. [`select_kernel`]: each cube sums the row's histograms, finds the threshold count (the
//!    k-th largest) and how many keys at the threshold are wanted, counts what the earlier
//!    chunks take, and writes its chosen keys at their place in the row's list: keys above
//!    the threshold, and the first keys at it in key order (ties go to the lower key).
//!
//! Counts are computed from the packed signatures in both launches (an xor and a popcount
//! per word), never stored in global memory: the select kernel reads its chunk's signatures
//! once, coalesced, and keeps the counts in shared memory for its two passes over the chunk
//! (each unit walks a contiguous run of keys there, in key order; read from global memory
//! that pattern was uncoalesced and made the select kernel 5x slower than the histogram, by
//! Nsight Compute on an H200). The output lists keys in ascending order.

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::prelude::*;

use crate::grid::cube_count;

/// Units per cube.
const UNITS: usize = 256;
/// Levels of the prefix sum over the units (`2^SCAN_LEVELS == UNITS`).
const SCAN_LEVELS: usize = 8;
/// Units per team with its own histogram.
const TEAM: usize = 32;
/// Teams per cube.
const TEAMS: usize = UNITS / TEAM;
/// Cubes a launch aims at.
const TARGET_CUBES: usize = 4096;
/// Fewest candidate keys per unit of a chunk.
const MIN_KEYS_PER_UNIT: usize = 4;
/// Most candidate keys per cube: the select kernel keeps a chunk's counts in shared memory
/// (16.5 KiB of `u32` with the padding of [`padded`]).
const MAX_CHUNK: usize = 4096;
/// Most histogram bins (`group * bits + 1`): the per-team histograms take `8 * 4 * bins`
/// bytes of shared memory, within the 32 KiB every runtime offers.
pub const MAX_BINS: usize = 513;

/// Row geometry shared by the two kernels.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct MatchRows {
    /// Selection rows per batch element (query heads / group).
    heads: usize,
    query_len: usize,
    kv_len: usize,
    /// Position of query 0 in the context.
    first_position: usize,
    query_heads: usize,
    signature_heads: usize,
    sink: usize,
    window: usize,
    k: usize,
    /// Cubes per row.
    chunks: usize,
    /// Candidate keys per cube.
    chunk: usize,
}

/// The cube's row, its chunk, and the chunk's keys `start..end` (candidates are the keys
/// `sink..=last - window` of a query at position `last`).
#[cube]
fn chunk_of(rows: MatchRows) -> (usize, usize, usize, usize) {
    let row = CUBE_POS / rows.chunks;
    let chunk = CUBE_POS % rows.chunks;
    let last = rows.first_position + row % rows.query_len;
    let mut candidates_end = rows.sink;
    if last + 1 > rows.sink + rows.window {
        candidates_end = last + 1 - rows.window;
    }
    let start = min(rows.sink + chunk * rows.chunk, candidates_end);
    let end = min(start + rows.chunk, candidates_end);
    (row, chunk, start, end)
}

/// Loads the row's `group` query signatures into shared memory.
#[cube]
fn load_queries(
    query_sig: &Tensor<i32>,
    queries: &mut SharedMemory<u32>,
    rows: MatchRows,
    row: usize,
    #[comptime] group: usize,
    #[comptime] words: usize,
) {
    let unit = UNIT_POS as usize;
    let t = row % rows.query_len;
    let head = (row / rows.query_len) % rows.heads;
    let b = row / (rows.query_len * rows.heads);
    if unit < group * words {
        let g = unit / words;
        let w = unit % words;
        queries[unit] = u32::reinterpret(
            query_sig[((b * rows.query_heads + head * group + g) * rows.query_len + t) * words + w],
        );
    }
}

/// Where the count of the chunk's `i`-th key sits in shared memory: a word of padding every
/// 32 keys, so that the units' contiguous runs start on different banks.
#[cube]
fn padded(i: usize) -> usize {
    i + i / 32
}

/// Equal bits of `key` against the row's query signatures, summed over the group.
#[cube]
fn match_count(
    key_sig: &Tensor<i32>,
    queries: &SharedMemory<u32>,
    rows: MatchRows,
    row: usize,
    key: usize,
    #[comptime] group: usize,
    #[comptime] words: usize,
) -> u32 {
    let head = (row / rows.query_len) % rows.heads;
    let b = row / (rows.query_len * rows.heads);
    let ratio = rows.query_heads / rows.signature_heads;
    let mut equal = 0u32;
    #[unroll]
    for g in 0..group {
        let k_base = ((b * rows.signature_heads + (head * group + g) / ratio) * rows.kv_len + key) * words;
        #[unroll]
        for w in 0..words {
            equal += (!(queries[g * words + w] ^ u32::reinterpret(key_sig[k_base + w]))).count_ones();
        }
    }
    equal
}

#[cube(launch)]
fn histogram_kernel(
    query_sig: &Tensor<i32>,
    key_sig: &Tensor<i32>,
    histograms: &mut Tensor<u32>,
    rows: MatchRows,
    row_count: usize,
    #[comptime] group: usize,
    #[comptime] words: usize,
    #[comptime] bins: usize,
) {
    let (row, chunk, start, end) = chunk_of(rows);
    if row >= row_count {
        terminate!();
    }
    let unit = UNIT_POS as usize;
    let mut queries = SharedMemory::<u32>::new(group * words);
    // One histogram per team of 32 units: counts cluster around half the bits, and one
    // shared histogram would serialise the whole cube's atomics on a few bins.
    let histogram = SharedMemory::<Atomic<u32>>::new(bins * TEAMS);
    load_queries(query_sig, &mut queries, rows, row, group, words);
    for bin in range_stepped(unit, bins * TEAMS, UNITS) {
        histogram[bin].store(0u32);
    }
    sync_cube();
    let team = (unit / TEAM) * bins;
    for key in range_stepped(start + unit, end, UNITS) {
        let count = match_count(key_sig, &queries, rows, row, key, group, words);
        histogram[team + usize::cast_from(count)].fetch_add(1u32);
    }
    sync_cube();
    for bin in range_stepped(unit, bins, UNITS) {
        let mut total = 0u32;
        #[unroll]
        for t in 0..TEAMS {
            total += histogram[t * bins + bin].load();
        }
        histograms[(row * rows.chunks + chunk) * bins + bin] = total;
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
fn select_kernel(
    query_sig: &Tensor<i32>,
    key_sig: &Tensor<i32>,
    histograms: &Tensor<u32>,
    selected: &mut Tensor<i32>,
    rows: MatchRows,
    row_count: usize,
    #[comptime] group: usize,
    #[comptime] words: usize,
    #[comptime] bins: usize,
) {
    let (row, chunk, start, end) = chunk_of(rows);
    if row >= row_count {
        terminate!();
    }
    let unit = UNIT_POS as usize;
    let mut queries = SharedMemory::<u32>::new(group * words);
    let totals = SharedMemory::<Atomic<u32>>::new(bins);
    let before = SharedMemory::<Atomic<u32>>::new(2usize);
    let mut state = SharedMemory::<u32>::new(3usize);
    let mut above_scan = SharedMemory::<u32>::new(UNITS);
    let mut ties_scan = SharedMemory::<u32>::new(UNITS);
    let mut counts = SharedMemory::<u32>::new(MAX_CHUNK + MAX_CHUNK / 32);
    load_queries(query_sig, &mut queries, rows, row, group, words);
    for bin in range_stepped(unit, bins, UNITS) {
        totals[bin].store(0u32);
    }
    if unit < 2 {
        before[unit].store(0u32);
    }
    sync_cube();

    // The chunk's counts, its signatures read once and coalesced.
    for i in range_stepped(unit, end - start, UNITS) {
        counts[padded(i)] = match_count(key_sig, &queries, rows, row, start + i, group, words);
    }

    // The row's histogram, then the threshold: the largest count whose keys and those
    // above it reach k (count 0 with every key when the row has fewer than k candidates).
    let row_base = row * rows.chunks * bins;
    for i in range_stepped(unit, rows.chunks * bins, UNITS) {
        let n = histograms[row_base + i];
        if n > 0 {
            totals[i % bins].fetch_add(n);
        }
    }
    sync_cube();
    if unit == 0 {
        let k = u32::cast_from(rows.k);
        let mut above = 0u32;
        let mut threshold = 0u32;
        let mut ties_wanted = totals[0usize].load();
        let mut found = false;
        for i in 0..bins {
            let bin = bins - 1 - i;
            let n = totals[bin].load();
            if !found {
                if above + n >= k {
                    threshold = u32::cast_from(bin);
                    ties_wanted = k - above;
                    found = true;
                } else {
                    above += n;
                }
            }
        }
        if !found {
            above -= ties_wanted;
        }
        state[0usize] = threshold;
        state[1usize] = ties_wanted;
        state[2usize] = above + ties_wanted;
    }
    sync_cube();
    let threshold = state[0usize];
    let ties_wanted = state[1usize];
    let total = usize::cast_from(state[2usize]);

    // What the earlier chunks of the row take.
    let mut earlier_above = 0u32;
    let mut earlier_ties = 0u32;
    for i in range_stepped(unit, chunk * bins, UNITS) {
        let bin = u32::cast_from(i % bins);
        let n = histograms[row_base + i];
        if bin > threshold {
            earlier_above += n;
        } else if bin == threshold {
            earlier_ties += n;
        }
    }
    if earlier_above > 0 {
        before[0usize].fetch_add(earlier_above);
    }
    if earlier_ties > 0 {
        before[1usize].fetch_add(earlier_ties);
    }

    // Each unit's contiguous run of the chunk, counted, then a prefix sum over the units.
    let per_unit = (end - start + UNITS - 1) / UNITS;
    let lo = min(start + unit * per_unit, end);
    let hi = min(lo + per_unit, end);
    let mut own_above = 0u32;
    let mut own_ties = 0u32;
    for key in lo..hi {
        let count = counts[padded(key - start)];
        if count > threshold {
            own_above += 1u32;
        } else if count == threshold {
            own_ties += 1u32;
        }
    }
    above_scan[unit] = own_above;
    ties_scan[unit] = own_ties;
    sync_cube();
    #[unroll]
    for level in 0..SCAN_LEVELS {
        let offset = 1usize << level;
        let mut add_above = 0u32;
        let mut add_ties = 0u32;
        if unit >= offset {
            add_above = above_scan[unit - offset];
            add_ties = ties_scan[unit - offset];
        }
        sync_cube();
        above_scan[unit] += add_above;
        ties_scan[unit] += add_ties;
        sync_cube();
    }
    let tie_rank = before[1usize].load() + ties_scan[unit] - own_ties;
    let mut position =
        usize::cast_from(before[0usize].load() + above_scan[unit] - own_above + min(tie_rank, ties_wanted));
    let mut ties_seen = tie_rank;
    let out_base = row * rows.k;
    for key in lo..hi {
        let count = counts[padded(key - start)];
        let mut chosen = count > threshold;
        if count == threshold {
            chosen = ties_seen < ties_wanted;
            ties_seen += 1u32;
        }
        if chosen {
            selected[out_base + position] = i32::cast_from(key);
            position += 1usize;
        }
    }
    if chunk == 0 {
        for slot in range_stepped(total + unit, rows.k, UNITS) {
            selected[out_base + slot] = i32::new(-1);
        }
    }
}

/// Whether [`match_top_k`] runs signatures of `words` words summed over `group` heads.
pub fn supports(group: usize, words: usize) -> bool {
    group * words * 32 < MAX_BINS && group * words <= UNITS
}

/// The top `k` keys of each causal query by equal signature bits, summed over `group`
/// consecutive query heads per row, among keys `sink..=last - window` (`last` the query's
/// position, `first_position + query index`); ties go to the lower key.
///
/// - `query`: i32 words `[batch, query_heads, query_len, words]`
/// - `key`: i32 words `[batch, signature_heads, kv_len, words]`; query head `h` uses key
///   head `h / (query_heads / signature_heads)`
/// - returns i32 key indices `[batch, query_heads / group, query_len, k]` in ascending key
///   order, `-1` padding rows with fewer than `k` candidates
///
/// Check [`supports`] first.
pub fn match_top_k<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    group: usize,
    first_position: usize,
    sink: usize,
    window: usize,
    k: usize,
) -> CubeTensor<R> {
    let [batch, query_heads, query_len, words] = query.shape().dims::<4>();
    let [key_batch, signature_heads, kv_len, key_words] = key.shape().dims::<4>();
    assert!(
        key_batch == batch
            && key_words == words
            && query_heads % signature_heads == 0
            && query_heads % group == 0,
        "signature shapes do not match"
    );
    assert!(supports(group, words), "match_top_k::supports was not checked");
    let heads = query_heads / group;
    let client = query.client.clone();
    let device = query.device.clone();
    let selected = empty_device_contiguous_dtype(
        client.clone(),
        device.clone(),
        Shape::new([batch, heads, query_len, k]),
        DType::I32,
    );
    let row_count = batch * heads * query_len;
    if row_count == 0 || k == 0 {
        return selected;
    }
    assert!(first_position + query_len <= kv_len, "queries past the context");
    let candidates = kv_len.saturating_sub(sink).max(1);
    let chunks = TARGET_CUBES
        .div_ceil(row_count)
        .clamp(1, candidates.div_ceil(UNITS * MIN_KEYS_PER_UNIT))
        .max(candidates.div_ceil(MAX_CHUNK));
    let chunk = candidates.div_ceil(chunks);
    let chunks = candidates.div_ceil(chunk);
    let bins = group * words * 32 + 1;
    let histograms = empty_device_contiguous_dtype(
        client.clone(),
        device.clone(),
        Shape::new([row_count, chunks, bins]),
        DType::U32,
    );
    let rows = || {
        MatchRowsLaunch::new(
            heads,
            query_len,
            kv_len,
            first_position,
            query_heads,
            signature_heads,
            sink,
            window,
            k,
            chunks,
            chunk,
        )
    };
    let (query, key) = (into_contiguous(query), into_contiguous(key));
    crate::launches::count();
    histogram_kernel::launch::<R>(
        &client,
        cube_count(row_count * chunks),
        CubeDim::new_1d(UNITS as u32),
        query.clone().into_tensor_arg(),
        key.clone().into_tensor_arg(),
        histograms.clone().into_tensor_arg(),
        rows(),
        row_count,
        group,
        words,
        bins,
    );
    crate::launches::count();
    select_kernel::launch::<R>(
        &client,
        cube_count(row_count * chunks),
        CubeDim::new_1d(UNITS as u32),
        query.into_tensor_arg(),
        key.into_tensor_arg(),
        histograms.into_tensor_arg(),
        selected.clone().into_tensor_arg(),
        rows(),
        row_count,
        group,
        words,
        bins,
    );
    selected
}
