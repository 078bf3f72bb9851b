//! The key list of a tile of queries in the prefill kernels, and the rule of which query
//! sees which of its keys: shared by the CUDA-core kernel ([`crate::block_attention`]) and the
//! tensor-core one ([`crate::tensor_core_attention`]).
//!
//! A tile's list is its sink, then the union of its queries' windows, then the key blocks
//! chosen for its query block. A query sees a key of the list when the key is not in its
//! future and, for window keys, lies inside its own window, for block keys outside it (so
//! that no key counts twice).

use cubecl::prelude::*;

use crate::block_attention::BlockGeometry;
use crate::softmax::no_logit;

/// Where the parts of a tile's list start and end.
#[derive(CubeType, Clone, Copy)]
pub(crate) struct TileKeys {
    /// Sink keys in the list (`0..sink_n`).
    pub(crate) sink_n: usize,
    /// First key of the union of the windows.
    pub(crate) window_start: usize,
    /// Keys of the union of the windows.
    pub(crate) window_n: usize,
    /// Offset of the tile's query block in the chosen blocks.
    pub(crate) block_row: usize,
    /// Entries of the whole list (block slots included, empty or not).
    pub(crate) entries: usize,
}

/// The list of the tile of queries `t0..` (positions `first_pos..=last_pos`) of `head` in
/// batch element `b`.
#[cube]
pub(crate) fn tile_keys(
    geo: BlockGeometry,
    b: usize,
    head: usize,
    t0: usize,
    first_pos: usize,
    last_pos: usize,
) -> TileKeys {
    let sink_n = min(geo.sink, min(last_pos + 1, geo.kv_len));
    let mut window_start = 0usize;
    if first_pos + 1 > geo.window {
        window_start = first_pos + 1 - geo.window;
    }
    window_start = max(window_start, geo.sink);
    // Window keys end at the tile's last query or at the context's end, whichever is first
    // (queries placed after the last key see no window keys past it).
    let window_end = min(last_pos + 1, geo.kv_len);
    let mut window_n = 0usize;
    if window_end > window_start {
        window_n = window_end - window_start;
    }
    let block_row =
        ((b * geo.query_heads + head) * geo.query_blocks + t0 / geo.query_block) * geo.blocks_per_query_block;
    let entries = sink_n + window_n + geo.blocks_per_query_block * geo.block_size_k;
    TileKeys { sink_n, window_start, window_n, block_row, entries }
}

/// The key of entry `e` of the list and its part (0 sink, 1 window, 2 block); `-1` past the
/// list's end, for an empty block slot, or for a block key past the context.
#[cube]
pub(crate) fn entry_key(e: usize, list: TileKeys, blocks: &Tensor<i32>, geo: BlockGeometry) -> (i32, u32) {
    let mut key = i32::new(-1);
    let mut part = u32::new(0);
    if e < list.entries {
        if e < list.sink_n {
            key = i32::cast_from(e);
        } else if e < list.sink_n + list.window_n {
            key = i32::cast_from(list.window_start + e - list.sink_n);
            part = u32::new(1);
        } else {
            let h = e - list.sink_n - list.window_n;
            let start = blocks[list.block_row + h / geo.block_size_k];
            if start >= 0 {
                let candidate = usize::cast_from(start) + h % geo.block_size_k;
                if candidate < geo.kv_len {
                    key = i32::cast_from(candidate);
                    part = u32::new(2);
                }
            }
        }
    }
    (key, part)
}

/// `logit` if the query at `pos` (a real query of the tile) sees `key` of list part `part`,
/// else [`no_logit`].
#[cube]
pub(crate) fn visible_logit(logit: f32, key: i32, part: u32, pos: usize, real: bool, window: usize) -> f32 {
    let mut out = no_logit();
    let key_pos = usize::cast_from(max(key, i32::new(0)));
    if key >= 0 && real && key_pos <= pos {
        let inside_window = key_pos + window > pos;
        if part == 0u32 || (part == 1u32 && inside_window) || (part == 2u32 && !inside_window) {
            out = logit;
        }
    }
    out
}
