//! Splitting the queries of a call so that the reference path's memory stays bounded.

/// Elements one chunk of intermediate scores may hold (64 MiB of f32).
const MAX_CHUNK_ELEMENTS: usize = 1 << 24;

/// The bound on a GPU, where the kernels leave fewer intermediates and each chunk costs
/// kernel launches (1 GiB of f32).
pub(crate) const MAX_GPU_CHUNK_ELEMENTS: usize = 1 << 28;

/// Consecutive `(start, len)` query ranges covering `0..query_len`, each small enough that
/// `len * elements_per_query` stays under a fixed memory bound.
pub(crate) fn query_chunks(query_len: usize, elements_per_query: usize) -> Vec<(usize, usize)> {
    query_chunks_within(query_len, elements_per_query, MAX_CHUNK_ELEMENTS)
}

/// [`query_chunks`] under a bound of `max_elements`.
pub(crate) fn query_chunks_within(
    query_len: usize,
    elements_per_query: usize,
    max_elements: usize,
) -> Vec<(usize, usize)> {
    let per_chunk = (max_elements / elements_per_query.max(1)).clamp(1, query_len.max(1));
    (0..query_len).step_by(per_chunk).map(|start| (start, per_chunk.min(query_len - start))).collect()
}

/// A range of causal queries and the keys they can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CausalChunk {
    /// First query of the range (an index into the call's queries).
    pub start: usize,
    /// Queries in the range.
    pub len: usize,
    /// Keys `0..keys` that the range's last query can see: no query of the range sees more.
    pub keys: usize,
}

/// Queries per chunk are rounded down to a multiple of this (unless fewer remain): whole
/// tensor-core tiles for the scoring matmuls.
const CHUNK_ALIGN: usize = 16;

/// Consecutive ranges covering the causal queries `0..query_len`, the first at position
/// `first_position`, over `kv_len` keys, each with `len * elements_per_query(keys)` within
/// `max_elements` where it can (one query per chunk at least). A range only needs the keys
/// its last query sees, so early ranges hold more queries: a prefill's chunks cover half the
/// query-key square instead of all of it.
pub(crate) fn causal_query_chunks(
    query_len: usize,
    first_position: usize,
    kv_len: usize,
    elements_per_query: impl Fn(usize) -> usize,
    max_elements: usize,
) -> Vec<CausalChunk> {
    let keys_at = |start: usize, len: usize| (first_position + start + len).min(kv_len);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < query_len {
        let remaining = query_len - start;
        let fits = |len: usize| len.saturating_mul(elements_per_query(keys_at(start, len))) <= max_elements;
        // The longest range that fits (one query at least): a range's elements grow with its
        // length, so bisect.
        let (mut len, mut over) = (1, remaining + 1);
        while over - len > 1 {
            let mid = len + (over - len) / 2;
            if fits(mid) {
                len = mid;
            } else {
                over = mid;
            }
        }
        if len < remaining && len > CHUNK_ALIGN {
            len -= len % CHUNK_ALIGN;
        }
        chunks.push(CausalChunk { start, len, keys: keys_at(start, len) });
        start += len;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_query_once() {
        for (len, per) in [(1, 1), (7, 1 << 23), (1000, 1 << 16), (5, usize::MAX / 2)] {
            let chunks = query_chunks(len, per);
            let covered: Vec<usize> = chunks.iter().flat_map(|&(s, l)| s..s + l).collect();
            assert_eq!(covered, (0..len).collect::<Vec<_>>());
        }
        assert_eq!(query_chunks(1000, 1 << 16).len(), 4);
    }

    #[test]
    fn causal_chunks_cover_every_query_once_within_the_bound_and_their_keys() {
        for (len, first, kv_len, per_key, max) in [
            (8192, 0, 8192, 225, 1 << 24),
            (1000, 0, 1000, 7, 5000),
            (37, 963, 1000, 3, 100),
            (5, 10, 15, 1 << 20, 1 << 10),
            (300, 0, 300, 1, 1 << 30),
        ] {
            let per_query = |keys: usize| keys * per_key;
            let chunks = causal_query_chunks(len, first, kv_len, per_query, max);
            let covered: Vec<usize> = chunks.iter().flat_map(|c| c.start..c.start + c.len).collect();
            assert_eq!(covered, (0..len).collect::<Vec<_>>());
            for c in &chunks {
                assert_eq!(c.keys, (first + c.start + c.len).min(kv_len), "{c:?}");
                assert!(c.len == 1 || c.len * per_query(c.keys) <= max, "{c:?} over {max}");
            }
        }
        // A prefill covers about half the query-key square, in fewer chunks than square ones.
        let chunks = causal_query_chunks(8192, 0, 8192, |keys| keys * 225, 1 << 28);
        let square: usize = chunks.iter().map(|c| c.len * c.keys).sum();
        assert!(square < 8192 * 8192 * 6 / 10, "{square}");
        assert!(chunks.len() < query_chunks_within(8192, 8192 * 225, 1 << 28).len());
        assert!(chunks.iter().rev().skip(1).all(|c| c.len % CHUNK_ALIGN == 0));
    }
}
