//! Angular LSH with buckets ordered along a Gray code (HyperAttention's sort key).

use burn::tensor::{backend::Backend, Int, Tensor};

/// Bucket ids of `x: [batch, heads, len, dim]` under `projections: [dim, bits]`: bit `i` is
/// set where `x . projections[:, i] > 0`. Returns `[batch, heads, len]`.
pub fn lsh_buckets<B: Backend>(x: Tensor<B, 4>, projections: Tensor<B, 2>) -> Tensor<B, 3, Int> {
    let [b, h, n, _] = x.dims();
    let bits = projections.dims()[1];
    let weights = Tensor::<B, 1, Int>::arange(0..bits as i64, &x.device())
        .reshape([1, 1, 1, bits])
        .expand([b, h, n, bits]);
    let signs = x.matmul(projections.unsqueeze::<4>()).greater_elem(0.0).int();
    signs.bitwise_left_shift(weights).sum_dim(3).reshape([b, h, n])
}

/// Position of each bucket in the Gray-code sequence `g(p) = p ^ (p >> 1)`, the inverse of
/// `g`, so that buckets at adjacent positions differ in exactly one bit. `bits` is the
/// number of projections (at most 31).
pub fn gray_positions<B: Backend, const D: usize>(
    buckets: Tensor<B, D, Int>,
    bits: usize,
) -> Tensor<B, D, Int> {
    // p = b ^ (b >> 1) ^ (b >> 2) ^ ...: xor-prefix by doubling shifts.
    let mut shift = 1;
    let mut position = buckets;
    while shift < bits {
        position = position.clone().bitwise_xor(position.bitwise_right_shift_scalar((shift as i64).elem()));
        shift *= 2;
    }
    position
}

/// Host version of [`gray_positions`] for one bucket.
pub fn gray_position(bucket: u32) -> u32 {
    let mut position = bucket;
    let mut shift = 1;
    while shift < 32 {
        position ^= position >> shift;
        shift *= 2;
    }
    position
}

/// The order that sorts each row of `keys: [batch, heads, len]` ascending, ties kept in
/// their original order (stable whatever the backend's sort): `[batch, heads, len]`.
pub fn stable_order<B: Backend>(keys: Tensor<B, 3, Int>) -> Tensor<B, 3, Int> {
    let [b, h, n] = keys.dims();
    let index = Tensor::<B, 1, Int>::arange(0..n as i64, &keys.device()).reshape([1, 1, n]).expand([b, h, n]);
    keys.mul_scalar(n as i64).add(index).argsort(2)
}

/// [`stable_order`] of keys known to lie in `0..buckets`: a counting sort kernel on a
/// CubeCL backend, the reference sort otherwise.
pub fn stable_order_below<B: Backend>(keys: Tensor<B, 3, Int>, buckets: usize) -> Tensor<B, 3, Int> {
    crate::kernels::counting_order(&keys, buckets).unwrap_or_else(|| stable_order(keys))
}

use burn::tensor::ElementConversion;
