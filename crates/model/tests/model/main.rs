//! Integration tests of the real model (SmolLM2-135M), linked into one binary.

mod common;
mod eval;
mod golden_logits;
mod passkey;
