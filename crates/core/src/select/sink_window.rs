//! The fixed part of every sparse budget: the first `sink` keys and the last `window` keys.

use burn::tensor::{backend::Backend, Int, Tensor};

use super::key_selection::KeySelection;
use crate::positions::QueryPositions;

/// Last visible key of each query `0..query_len`, `[query_len, 1]`.
fn last_visible<B: Backend>(
    positions: &QueryPositions,
    query_len: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    crate::positions::last_visible_keys::<B>(positions, query_len, 1, device).reshape([query_len, 1])
}

/// The first `sink` keys (at most the context), each valid for the queries that may see it.
///
/// Returns indices and validity `[batch, heads, query_len, min(sink, kv_len)]`, or `None`
/// when `sink` is 0.
pub fn sink_selection<B: Backend>(
    positions: &QueryPositions,
    [batch, heads, query_len]: [usize; 3],
    sink: usize,
    device: &B::Device,
) -> Option<KeySelection<B>> {
    let width = sink.min(positions.kv_len);
    if width == 0 {
        return None;
    }
    let keys =
        Tensor::<B, 1, Int>::arange(0..width as i64, device).reshape([1, width]).expand([query_len, width]);
    let last = last_visible::<B>(positions, query_len, device).expand([query_len, width]);
    let valid = keys.clone().lower_equal(last);
    Some(expand_selection(keys, valid, [batch, heads]))
}

/// The last `window` keys up to each query's own position, skipping the first `sink` keys
/// (which [`sink_selection`] covers), so that the two never overlap.
///
/// Returns `[batch, heads, query_len, min(window, kv_len)]`, or `None` when `window` is 0.
pub fn window_selection<B: Backend>(
    positions: &QueryPositions,
    [batch, heads, query_len]: [usize; 3],
    sink: usize,
    window: usize,
    device: &B::Device,
) -> Option<KeySelection<B>> {
    let width = window.min(positions.kv_len);
    if width == 0 {
        return None;
    }
    let last = last_visible::<B>(positions, query_len, device).expand([query_len, width]);
    let steps =
        Tensor::<B, 1, Int>::arange(0..width as i64, device).reshape([1, width]).expand([query_len, width]);
    let keys = last.sub_scalar(width as i64 - 1).add(steps);
    let valid = keys.clone().greater_equal_elem(sink as i64);
    let keys = keys.clamp(0, positions.kv_len as i64 - 1);
    Some(expand_selection(keys, valid, [batch, heads]))
}

/// `[query_len, n]` -> `[batch, heads, query_len, n]` without copying per head.
fn expand_selection<B: Backend>(
    keys: Tensor<B, 2, Int>,
    valid: Tensor<B, 2, burn::tensor::Bool>,
    [batch, heads]: [usize; 2],
) -> KeySelection<B> {
    let [t, n] = keys.dims();
    KeySelection {
        indices: keys.reshape([1, 1, t, n]).expand([batch, heads, t, n]),
        valid: valid.reshape([1, 1, t, n]).expand([batch, heads, t, n]),
    }
}
