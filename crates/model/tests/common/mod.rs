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

/// `count` tokens of Pride and Prejudice (from ../shared/data/books), past its header.
pub fn book_tokens(tokenizer: &GgufTokenizer, count: usize) -> Vec<u32> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/books/pg1342.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tokens = tokenizer.encode(&text[text.len() / 20..]).unwrap();
    tokens[..count].to_vec()
}
