//! HashAttention's signatures in one launch: each head's MLP (up to [`MAX_LAYERS`] linear
//! layers with an activation between them) and the packing of the output signs into
//! 32-bit words.
//!
//! Decoding hashes one query (and one key) per head and step; as Burn ops that is a matmul,
//! a bias add and an activation per layer and a packing kernel, each a launch that costs
//! more than its arithmetic. Here a cube takes [`ROWS`] rows of one head: the rows'
//! activations stay in shared memory from layer to layer, a unit per output feature reads
//! each weight once for all the rows (coalesced, as weights are `[d_input, d_output]` per
//! head), and the last layer's signs are packed in place. Arithmetic is in f32.

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime,
};
use cubecl::prelude::*;

use crate::grid::cube_count;

/// Units per cube.
const UNITS: usize = 128;
/// Rows (tokens of one head) per cube.
pub const ROWS: usize = 8;
/// Most linear layers of one MLP.
pub const MAX_LAYERS: usize = 4;
/// Widest layer input or output.
pub const MAX_WIDTH: usize = 256;

/// The non-linearity between layers (none after the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `x * sigmoid(x)`.
    Silu,
    /// `max(x, 0)`.
    Relu,
    /// `x * (1 + erf(x / sqrt 2)) / 2`.
    Gelu,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    fn code(self) -> u32 {
        match self {
            Activation::Silu => 0,
            Activation::Relu => 1,
            Activation::Gelu => 2,
            Activation::Tanh => 3,
        }
    }
}

/// One linear layer of every head: `weight` `[heads, d_input, d_output]`, `bias`
/// `[heads, d_output]`, in the dtype of the input.
#[derive(Debug, Clone)]
pub struct Linear<R: CubeRuntime> {
    /// `[heads, d_input, d_output]`.
    pub weight: CubeTensor<R>,
    /// `[heads, d_output]`.
    pub bias: CubeTensor<R>,
}

/// Sizes the kernel reads.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct MlpRows {
    heads: usize,
    input_heads: usize,
    len: usize,
    /// Rows per head (`batch * len`).
    rows: usize,
    /// Cubes per head.
    tiles: usize,
}

#[cube]
fn activate(x: f32, #[comptime] activation: u32) -> f32 {
    if comptime!(activation == 0) {
        x / (1.0f32 + (-x).exp())
    } else if comptime!(activation == 1) {
        max(x, 0.0f32)
    } else if comptime!(activation == 2) {
        x * 0.5f32 * (1.0f32 + Erf::erf(x * 0.70710677f32))
    } else {
        x.tanh()
    }
}

/// Packs the signs of the cube's rows of `codes` into the signatures.
#[cube]
fn pack(
    codes: &SharedMemory<f32>,
    signatures: &mut Tensor<i32>,
    geo: MlpRows,
    head: usize,
    first_row: usize,
    #[comptime] bits: usize,
) {
    let words = bits / 32;
    for slot in range_stepped(UNIT_POS as usize, ROWS * words, UNITS) {
        let r = slot / words;
        let w = slot % words;
        let row = first_row + r;
        if row < geo.rows {
            let mut word = 0u32;
            for i in 0..32usize {
                // NaN compares false: its bit stays unset.
                if codes[r * MAX_WIDTH + w * 32 + i] >= 0.0f32 {
                    word |= 1u32 << u32::cast_from(i);
                }
            }
            let (b, t) = (row / geo.len, row % geo.len);
            signatures[((b * geo.heads + head) * geo.len + t) * words + w] = i32::reinterpret(word);
        }
    }
}

/// `output[r] = input[r] W[head] + b[head]` for the cube's rows, activated unless last.
#[cube]
#[allow(clippy::too_many_arguments)]
fn linear<F: Float>(
    input: &SharedMemory<f32>,
    output: &mut SharedMemory<f32>,
    weight: &Tensor<F>,
    bias: &Tensor<F>,
    head: usize,
    #[comptime] d_input: usize,
    #[comptime] d_output: usize,
    #[comptime] activated: bool,
    #[comptime] activation: u32,
) {
    let unit = UNIT_POS as usize;
    let w_base = head * d_input * d_output;
    for o in range_stepped(unit, d_output, UNITS) {
        let mut acc = Array::<f32>::new(ROWS);
        let b = f32::cast_from(bias[head * d_output + o]);
        #[unroll]
        for r in 0..ROWS {
            acc[r] = b;
        }
        // Unrolled, so that the weight loads of a row are in flight together.
        #[unroll]
        for i in 0..d_input {
            let w = f32::cast_from(weight[w_base + i * d_output + o]);
            #[unroll]
            for r in 0..ROWS {
                acc[r] += w * input[r * MAX_WIDTH + i];
            }
        }
        #[unroll]
        for r in 0..ROWS {
            let mut y = acc[r];
            if comptime!(activated) {
                y = activate(y, activation);
            }
            output[r * MAX_WIDTH + o] = y;
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn hash_signatures_kernel<F: Float>(
    x: &Tensor<F>,
    w0: &Tensor<F>,
    b0: &Tensor<F>,
    w1: &Tensor<F>,
    b1: &Tensor<F>,
    w2: &Tensor<F>,
    b2: &Tensor<F>,
    w3: &Tensor<F>,
    b3: &Tensor<F>,
    signatures: &mut Tensor<i32>,
    geo: MlpRows,
    #[comptime] layers: usize,
    #[comptime] d_input: usize,
    #[comptime] hidden: usize,
    #[comptime] bits: usize,
    #[comptime] activation: u32,
    #[define(F)] _dtype: StorageType,
) {
    let head = CUBE_POS / geo.tiles;
    let tile = CUBE_POS % geo.tiles;
    if head >= geo.heads {
        terminate!();
    }
    let unit = UNIT_POS as usize;
    let first_row = tile * ROWS;
    let input_head = head / (geo.heads / geo.input_heads);
    let mut even = SharedMemory::<f32>::new(ROWS * MAX_WIDTH);
    let mut odd = SharedMemory::<f32>::new(ROWS * MAX_WIDTH);

    #[unroll]
    for r in 0..ROWS {
        let row = first_row + r;
        for i in range_stepped(unit, d_input, UNITS) {
            let mut value = 0.0f32;
            if row < geo.rows {
                let (b, t) = (row / geo.len, row % geo.len);
                value = f32::cast_from(x[((b * geo.input_heads + input_head) * geo.len + t) * d_input + i]);
            }
            even[r * MAX_WIDTH + i] = value;
        }
    }
    sync_cube();
    // Layer l reads `even` when l is even and writes the other buffer.
    let first_out = comptime!(if layers == 1 { bits } else { hidden });
    linear::<F>(&even, &mut odd, w0, b0, head, d_input, first_out, layers > 1, activation);
    sync_cube();
    if comptime!(layers > 1) {
        let out = comptime!(if layers == 2 { bits } else { hidden });
        linear::<F>(&odd, &mut even, w1, b1, head, hidden, out, layers > 2, activation);
        sync_cube();
    }
    if comptime!(layers > 2) {
        let out = comptime!(if layers == 3 { bits } else { hidden });
        linear::<F>(&even, &mut odd, w2, b2, head, hidden, out, layers > 3, activation);
        sync_cube();
    }
    if comptime!(layers > 3) {
        linear::<F>(&odd, &mut even, w3, b3, head, hidden, bits, false, activation);
        sync_cube();
    }

    // Bit i of word w is set where code 32 w + i is >= 0.
    if comptime!(layers % 2 == 1) {
        pack(&odd, signatures, geo, head, first_row, bits);
    } else {
        pack(&even, signatures, geo, head, first_row, bits);
    }
}

/// Whether [`hash_signatures`] runs an MLP of these sizes: 1 to [`MAX_LAYERS`] layers,
/// widths up to [`MAX_WIDTH`], `bits` a multiple of 32.
pub fn supports(layers: usize, d_input: usize, hidden: usize, bits: usize) -> bool {
    (1..=MAX_LAYERS).contains(&layers)
        && d_input <= MAX_WIDTH
        && (layers == 1 || hidden <= MAX_WIDTH)
        && bits <= MAX_WIDTH
        && bits > 0
        && bits.is_multiple_of(32)
}

/// Packed signatures `[batch, heads, len, bits / 32]` (i32 words) of the MLPs `layers` of
/// `heads` heads applied to `x: [batch, input_heads, len, d_input]` (`input_heads` divides
/// `heads`; head `h` reads input head `h / (heads / input_heads)`). Check [`supports`]
/// first.
pub fn hash_signatures<R: CubeRuntime>(
    x: CubeTensor<R>,
    layers: &[Linear<R>],
    activation: Activation,
) -> CubeTensor<R> {
    let [batch, input_heads, len, d_input] = x.shape().dims::<4>();
    let [heads, _, first_out] = layers[0].weight.shape().dims::<3>();
    let bits = layers[layers.len() - 1].weight.shape().dims::<3>()[2];
    let hidden = if layers.len() == 1 { bits } else { first_out };
    assert!(supports(layers.len(), d_input, hidden, bits), "hash_signatures::supports was not checked");
    assert!(input_heads > 0 && heads.is_multiple_of(input_heads), "input heads must divide MLP heads");
    let client = x.client.clone();
    let words = bits / 32;
    let signatures = empty_device_contiguous_dtype(
        client.clone(),
        x.device.clone(),
        Shape::new([batch, heads, len, words]),
        DType::I32,
    );
    let rows = batch * len;
    if rows == 0 {
        return signatures;
    }
    let tiles = rows.div_ceil(ROWS);
    let dtype = x.dtype;
    let weight = |i: usize| into_contiguous(layers[i.min(layers.len() - 1)].weight.clone()).into_tensor_arg();
    let bias = |i: usize| into_contiguous(layers[i.min(layers.len() - 1)].bias.clone()).into_tensor_arg();
    crate::launches::count();
    hash_signatures_kernel::launch::<R>(
        &client,
        cube_count(heads * tiles),
        CubeDim::new_1d(UNITS as u32),
        into_contiguous(x).into_tensor_arg(),
        weight(0),
        bias(0),
        weight(1),
        bias(1),
        weight(2),
        bias(2),
        weight(3),
        bias(3),
        signatures.clone().into_tensor_arg(),
        MlpRowsLaunch::new(heads, input_heads, len, rows, tiles),
        layers.len(),
        d_input,
        hidden,
        bits,
        activation.code(),
        dtype.into(),
    );
    signatures
}
