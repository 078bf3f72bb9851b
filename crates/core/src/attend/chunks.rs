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
}
