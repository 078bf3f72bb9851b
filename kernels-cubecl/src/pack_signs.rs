//! Sign bits of hash codes packed into 32-bit words.

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

/// One unit per word: bit `i` of the word is set where code `32 * word + i` is `>= 0`
/// (NaN gives 0, as in the reference).
#[cube(launch)]
fn pack_signs_kernel<F: Float>(
    codes: &Tensor<F>,
    packed: &mut Tensor<i32>,
    #[define(F)] _dtype: StorageType,
) {
    if ABSOLUTE_POS >= packed.len() {
        terminate!();
    }
    let base = ABSOLUTE_POS * 32;
    let mut word = 0u32;
    for bit in 0..32usize {
        if codes[base + bit] >= F::new(0.0) {
            word |= 1u32 << u32::cast_from(bit);
        }
    }
    packed[ABSOLUTE_POS] = i32::reinterpret(word);
}

/// Packs `codes: [.., bits]` (`bits` a multiple of 32) into i32 words `[.., bits / 32]`:
/// bit `i % 32` of word `i / 32` is 1 where `codes[.., i] >= 0`.
pub fn pack_signs<R: CubeRuntime>(codes: CubeTensor<R>) -> CubeTensor<R> {
    let codes = into_contiguous(codes);
    let mut dims = codes.shape().dims::<4>().to_vec();
    let bits = *dims.last().expect("codes have at least one dimension");
    assert!(bits % 32 == 0, "bits must be a multiple of 32, got {bits}");
    *dims.last_mut().unwrap() = bits / 32;
    let packed = empty_device_contiguous_dtype(
        codes.client.clone(),
        codes.device.clone(),
        Shape::from(dims),
        DType::I32,
    );
    let words = packed.shape().num_elements();
    if words == 0 {
        return packed;
    }
    let client = packed.client.clone();
    let cube_dim = CubeDim::new(&client, words);
    let cube_count = calculate_cube_count_elemwise(&client, words, cube_dim);
    let dtype = codes.dtype;
    crate::launches::count();
    pack_signs_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        codes.into_tensor_arg(),
        packed.clone().into_tensor_arg(),
        dtype.into(),
    );
    packed
}
