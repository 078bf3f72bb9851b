//! Vectorised reads of key rows.

use burn::tensor::DType;

/// Elements per vector when a unit reads a row of `row_len` elements of `dtype`: the
/// widest of 8, 4, 2, 1 that divides the row and fits 16 bytes.
pub fn row_vector_width(row_len: usize, dtype: DType) -> usize {
    let element = dtype.size();
    [8usize, 4, 2, 1].into_iter().find(|w| row_len.is_multiple_of(*w) && w * element <= 16).unwrap_or(1)
}
