//! Launch grids: one cube per row, spread over x and y (CUDA allows 65535 cubes in y and z).

use cubecl::prelude::CubeCount;

/// Most cubes along one grid axis used here.
const MAX_AXIS: usize = 65_535;

/// A grid of at least `cubes` cubes; kernels read their row as `CUBE_POS` and skip the
/// rows past `cubes`.
pub fn cube_count(cubes: usize) -> CubeCount {
    let x = cubes.clamp(1, MAX_AXIS);
    let y = cubes.div_ceil(x).max(1);
    assert!(y <= MAX_AXIS, "too many cubes for one launch: {cubes}");
    CubeCount::Static(x as u32, y as u32, 1)
}
