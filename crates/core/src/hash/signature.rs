//! Bit signatures: sign bits packed into 32-bit words, and their match counts.

use burn::tensor::{backend::Backend, ElementConversion, Int, Tensor};

use crate::error::{AttnError, AttnResult};
use crate::shape::{group_heads, ungroup_heads};

/// Bits per packed word.
pub const WORD_BITS: usize = 32;

/// Checks that `bits` is a positive multiple of 32 and returns the number of words.
pub fn words_for_bits(bits: usize) -> AttnResult<usize> {
    if bits == 0 || !bits.is_multiple_of(WORD_BITS) {
        return Err(AttnError::BitsNotMultipleOf32(bits));
    }
    Ok(bits / WORD_BITS)
}

/// Packs the signs of `codes: [batch, heads, len, bits]` into `[batch, heads, len, bits / 32]`
/// words: bit `i % 32` of word `i / 32` is 1 where `codes[.., i] >= 0`.
///
/// Each word holds its 32 bits in the low 32 bits of the backend's int element.
pub fn pack_signs<B: Backend>(codes: Tensor<B, 4>) -> AttnResult<Tensor<B, 4, Int>> {
    let [b, h, t, bits] = codes.dims();
    let words = words_for_bits(bits)?;
    if let Some(packed) = crate::kernels::pack_signs(&codes) {
        return Ok(packed);
    }
    let shifts = bit_positions::<B>(&codes.device());
    let packed = codes
        .greater_equal_elem(0.0)
        .int()
        .reshape([b, h, t, words, WORD_BITS])
        .bitwise_left_shift(shifts.expand([b, h, t, words, WORD_BITS]))
        .sum_dim(4)
        .reshape([b, h, t, words]);
    Ok(packed)
}

/// Unpacks `[batch, heads, len, words]` into `±1` values `[batch, heads, len, words * 32]`
/// (`+1` for a set bit), the inverse of [`pack_signs`] up to the magnitudes.
pub fn unpack_signs<B: Backend>(packed: Tensor<B, 4, Int>) -> Tensor<B, 4> {
    let [b, h, t, words] = packed.dims();
    let shifts = bit_positions::<B>(&packed.device());
    packed
        .reshape([b, h, t, words, 1])
        .expand([b, h, t, words, WORD_BITS])
        .bitwise_right_shift(shifts.expand([b, h, t, words, WORD_BITS]))
        .bitwise_and_scalar(1i64.elem())
        .float()
        .reshape([b, h, t, words * WORD_BITS])
        .mul_scalar(2.0)
        .sub_scalar(1.0)
}

/// Number of equal bits between every query and key signature,
/// `popcount(!(q ^ k))` summed over words, as floats.
///
/// - `query`: `[batch, query_heads, query_len, words]`
/// - `key`: `[batch, key_heads, kv_len, words]`, `key_heads` divides `query_heads`
/// - returns `[batch, query_heads, query_len, kv_len]`, integers in `0..=bits`
///
/// Computed as `(bits + <±1 query, ±1 key>) / 2`, which equals the popcount exactly.
pub fn matching_bits<B: Backend>(query: Tensor<B, 4, Int>, key: Tensor<B, 4, Int>) -> Tensor<B, 4> {
    let [_, query_heads, _, words] = query.dims();
    let key_heads = key.dims()[1];
    let bits = (words * WORD_BITS) as f64;
    let q = group_heads(unpack_signs(query), key_heads);
    let k = unpack_signs(key);
    let dot = ungroup_heads(q.matmul(k.swap_dims(2, 3)), query_heads);
    dot.add_scalar(bits).mul_scalar(0.5)
}

/// [`matching_bits`] as a ranking in which ties go to the earlier key, as in the kernels:
/// `matching * (kv_len + 1) - key`, exact in f32 while `(bits + 1) * (kv_len + 1) < 2^24`.
///
/// Shapes as in [`matching_bits`].
pub fn ranked_matching_bits<B: Backend>(query: Tensor<B, 4, Int>, key: Tensor<B, 4, Int>) -> Tensor<B, 4> {
    ranked_group_matching_bits(query, key, 1)
}

/// Matching bits summed over each `group` consecutive query heads (one ranking per group:
/// a selection shared by the query heads of a KV head), ranked as in
/// [`ranked_matching_bits`]; exact in f32 while `(group * bits + 1) * (kv_len + 1) < 2^24`.
///
/// - shapes of `query`, `key` as in [`matching_bits`]; `group` divides `query_heads`
/// - returns `[batch, query_heads / group, query_len, kv_len]`
pub fn ranked_group_matching_bits<B: Backend>(
    query: Tensor<B, 4, Int>,
    key: Tensor<B, 4, Int>,
    group: usize,
) -> Tensor<B, 4> {
    let [b, query_heads, query_len, _] = query.dims();
    let kv_len = key.dims()[2];
    let device = key.device();
    let mut counts = matching_bits(query, key);
    if group > 1 {
        let rows = query_heads / group;
        counts = counts
            .reshape([b, rows, group, query_len, kv_len])
            .sum_dim(2)
            .reshape([b, rows, query_len, kv_len]);
    }
    let order = Tensor::<B, 1, Int>::arange(0..kv_len as i64, &device).float().reshape([1, 1, 1, kv_len]);
    counts.mul_scalar((kv_len + 1) as f64).sub(order)
}

/// `[1, 1, 1, 1, 32]` tensor of `0..32`.
fn bit_positions<B: Backend>(device: &B::Device) -> Tensor<B, 5, Int> {
    Tensor::<B, 1, Int>::arange(0..WORD_BITS as i64, device).reshape([1, 1, 1, 1, WORD_BITS])
}
