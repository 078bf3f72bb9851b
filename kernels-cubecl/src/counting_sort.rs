//! Stable sort of small integer keys per row by counting (HyperAttention's LSH buckets):
//! the order that sorts each row ascending, ties in their original order.
//!
//! One cube per row. Each unit owns a contiguous run of the row and counts its keys per
//! bucket in shared memory (its own column, no atomics); an exclusive scan over
//! (bucket, unit) gives every unit the first output slot of each bucket; each unit then
//! walks its run again and writes the indices. Units earlier in the row write first within
//! a bucket, so the order is stable.

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::prelude::*;

use crate::grid::cube_count;

/// Counters a cube keeps in shared memory (16 KiB, within every backend's limit: lavapipe
/// has 32 KiB in all and skips a launch that asks for more): `buckets * units` of them.
pub const MAX_COUNTERS: usize = 4096;

#[cube(launch)]
#[allow(clippy::manual_div_ceil)]
fn counting_sort_kernel(
    keys: &Tensor<i32>,
    order: &mut Tensor<i32>,
    rows: usize,
    len: usize,
    #[comptime] buckets: usize,
    #[comptime] units: usize,
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let unit = UNIT_POS as usize;
    let mut counts = SharedMemory::<u32>::new(buckets * units);
    let mut segment_sums = SharedMemory::<u32>::new(units);
    let run = (len + units - 1) / units;
    let start = min(unit * run, len);
    let end = min(start + run, len);
    let base = row * len;

    for bucket in 0..buckets {
        counts[bucket * units + unit] = 0u32;
    }
    for i in start..end {
        let bucket = usize::cast_from(max(min(keys[base + i], i32::cast_from(buckets - 1)), i32::new(0)));
        counts[bucket * units + unit] = counts[bucket * units + unit] + 1u32;
    }
    sync_cube();

    // Exclusive scan over the counters in (bucket, unit) order: a segment of `buckets`
    // counters per unit, then the segment sums.
    let mut sum = 0u32;
    for j in 0..buckets {
        sum += counts[unit * buckets + j];
    }
    segment_sums[unit] = sum;
    sync_cube();
    if unit == 0 {
        let mut running = 0u32;
        for u in 0..units {
            let s = segment_sums[u];
            segment_sums[u] = running;
            running += s;
        }
    }
    sync_cube();
    let mut running = segment_sums[unit];
    for j in 0..buckets {
        let c = counts[unit * buckets + j];
        counts[unit * buckets + j] = running;
        running += c;
    }
    sync_cube();

    for i in start..end {
        let bucket = usize::cast_from(max(min(keys[base + i], i32::cast_from(buckets - 1)), i32::new(0)));
        let slot = counts[bucket * units + unit];
        order[base + usize::cast_from(slot)] = i32::cast_from(i);
        counts[bucket * units + unit] = slot + 1u32;
    }
}

/// Whether [`counting_sort_order`] sorts keys in `0..buckets`: its counters live in shared
/// memory, [`MAX_COUNTERS`] at most.
pub fn supports(buckets: usize) -> bool {
    (1..=MAX_COUNTERS).contains(&buckets)
}

/// The stable ascending order of each row of `keys: [batch, heads, len]` (i32 in
/// `0..buckets`; values outside are clamped into it), i32 `[batch, heads, len]`.
///
/// `buckets` must be at most [`MAX_COUNTERS`] ([`supports`]).
pub fn counting_sort_order<R: CubeRuntime>(keys: CubeTensor<R>, buckets: usize) -> CubeTensor<R> {
    assert!((1..=MAX_COUNTERS).contains(&buckets), "buckets must be in 1..={MAX_COUNTERS}, got {buckets}");
    let keys = into_contiguous(keys);
    let [batch, heads, len] = keys.shape().dims::<3>();
    let order = empty_device_contiguous_dtype(
        keys.client.clone(),
        keys.device.clone(),
        Shape::new([batch, heads, len]),
        DType::I32,
    );
    let rows = batch * heads;
    if rows == 0 || len == 0 {
        return order;
    }
    let units = (MAX_COUNTERS / buckets).clamp(1, 256);
    let client = keys.client.clone();
    crate::launches::count();
    counting_sort_kernel::launch::<R>(
        &client,
        cube_count(rows),
        CubeDim::new_1d(units as u32),
        keys.into_tensor_arg(),
        order.clone().into_tensor_arg(),
        rows,
        len,
        buckets,
        units,
    );
    order
}
