//! Integration tests of the real model (SmolLM2-135M), linked into one binary, and of the
//! GGUF reader against corrupt files (a tiny generated model, no download).

mod alloc_limit;
mod common;
mod eval;
mod generate;
mod gguf_corruption;
mod golden_logits;
mod invalid_model;
mod passkey;
mod tiny_gguf;

#[global_allocator]
static ALLOCATOR: alloc_limit::Tracking = alloc_limit::Tracking;
