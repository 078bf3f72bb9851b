//! The backend the CLI runs on, chosen by cargo feature: `cuda`, else `wgpu` (`vulkan`: wgpu
//! compiled to SPIR-V), else ndarray.

#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Backend = burn::backend::Wgpu;

#[cfg(all(feature = "ndarray", not(any(feature = "wgpu", feature = "cuda"))))]
pub type Backend = burn::backend::NdArray<f32>;

/// Name of the backend, for reports.
pub fn name() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "vulkan") {
        "wgpu (SPIR-V on Vulkan)"
    } else if cfg!(feature = "wgpu") {
        "wgpu"
    } else {
        "ndarray (CPU)"
    }
}
