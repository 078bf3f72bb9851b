//! The real model for the tests: SmolLM2-135M-Instruct at
//! `models/SmolLM2-135M-Instruct.Q4_1.gguf` (scripts/get_model.sh puts it there; the test
//! command runs it) or at the path in `SMOLLM2_GGUF`.

#![allow(dead_code)]

use std::path::PathBuf;

use burn::backend::NdArray;
use burn_sparse_attn_model::{AttentionPlan, GgufFile, GgufTokenizer, Llama};

pub type B = NdArray<f32>;

/// Where the model file is.
pub fn model_path() -> PathBuf {
    std::env::var_os("SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
    })
}

/// The GGUF file, with a clear failure when it is missing.
pub fn gguf() -> GgufFile {
    let path = model_path();
    assert!(path.exists(), "model not found at {}: run scripts/get_model.sh", path.display());
    GgufFile::open(&path).unwrap()
}

/// The dense model and its tokenizer.
pub fn dense_model() -> (Llama<B>, GgufTokenizer) {
    let file = gguf();
    let tokenizer = GgufTokenizer::from_gguf(&file).unwrap();
    (Llama::<B>::from_gguf(&file, &AttentionPlan::dense(), &Default::default()).unwrap(), tokenizer)
}

/// `count` tokens of a passage of Pride and Prejudice (public domain; a fixture, so that
/// the tests need nothing outside the repository).
pub fn book_tokens(tokenizer: &GgufTokenizer, count: usize) -> Vec<u32> {
    let tokens = tokenizer.encode(include_str!("../../fixtures/book_passage.txt")).unwrap();
    assert!(tokens.len() >= count, "the fixture has {} tokens, {count} asked for", tokens.len());
    tokens[..count].to_vec()
}
