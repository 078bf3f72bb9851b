//! Any bytes given to the GGUF reader end in an `Err` or in a file whose metadata, tokenizer,
//! tensors and model load without a panic (the reader checks every count, length and offset
//! against the file before it allocates).
#![no_main]

use burn_sparse_attn_model::{AttentionPlan, GgufFile, GgufTokenizer, Llama};
use libfuzzer_sys::fuzz_target;

type B = burn::backend::NdArray<f32>;

fuzz_target!(|bytes: &[u8]| {
    let Ok(file) = GgufFile::parse(bytes.to_vec()) else { return };
    let _ = GgufTokenizer::from_gguf(&file);
    let _ = Llama::<B>::from_gguf(&file, &AttentionPlan::dense(), &Default::default());
});
