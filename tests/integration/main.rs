//! Integration tests of burn-sparse-attn, one module per concept, linked into one binary (one
//! link and one copy of the monomorphised backend code, instead of one per file).
//!
//! `kernels` runs the CubeCL kernels under wgpu (Mesa's lavapipe on a CPU; `./scripts/test.sh`
//! installs it) and, with `--features cuda`, on CUDA.

mod common;
mod decode_kernels;
mod dense_attention;
mod hash_attention;
mod hash_safetensors;
mod hip_attention;
mod hyper_attention;
mod kernels;
mod merge;
mod methods;
mod non_finite;
mod prefill_kernels;
mod quest;
mod selection;
